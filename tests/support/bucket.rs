//! A bucket read behind the store's back: what a test checks the store really left there.

use aws_sdk_s3::Client;

/// Every key in the bucket, sorted.
pub async fn keys(s3: &Client, bucket: &str) -> Vec<String> {
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

/// One object's bytes.
pub async fn object(s3: &Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .to_vec()
}

/// One object's metadata.
pub async fn head(
    s3: &Client,
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    s3.head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
}

/// The keys of the multipart uploads started and neither completed nor aborted.
pub async fn unfinished_uploads(s3: &Client, bucket: &str) -> Vec<String> {
    s3.list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .uploads()
        .iter()
        .filter_map(|u| u.key().map(str::to_string))
        .collect()
}
