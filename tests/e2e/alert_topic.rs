//! The template's alert topic on moto, with a queue standing in for the email subscriber.

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

pub struct AlertTopic {
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    pub topic_arn: String,
    queue_url: String,
}

impl AlertTopic {
    /// A topic and a subscribed queue named after `label`. Without raw delivery the queue
    /// receives the SNS envelope around each message, as a mail body would.
    pub async fn new(sdk: &aws_config::SdkConfig, label: &str) -> AlertTopic {
        let sns = aws_sdk_sns::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let topic_arn = sns
            .create_topic()
            .name(format!("{label}-alerts"))
            .send()
            .await
            .unwrap()
            .topic_arn()
            .unwrap()
            .to_string();
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("{label}-subscriber"))
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .unwrap()
            .clone();
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}
            }]
        });
        sqs.set_queue_attributes()
            .queue_url(&queue_url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .unwrap();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .attributes("RawMessageDelivery", "false")
            .send()
            .await
            .unwrap();
        AlertTopic {
            sns,
            sqs,
            topic_arn,
            queue_url,
        }
    }

    pub async fn publish(&self, message: &str) {
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .message(message)
            .send()
            .await
            .unwrap();
    }

    /// Long-polls until `n` messages have arrived (or 20 s pass without one).
    pub async fn receive(&self, n: usize) -> Vec<String> {
        let mut bodies = Vec::new();
        while bodies.len() < n {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(20)
                .send()
                .await
                .unwrap();
            if out.messages().is_empty() {
                break;
            }
            bodies.extend(
                out.messages()
                    .iter()
                    .filter_map(|m| m.body().map(str::to_string)),
            );
        }
        bodies
    }
}
