"""What cfn-lint and checkov do not check in template.yml: that the pieces are wired together.

The template is parsed with PyYAML and evaluated (tests/python/cfn_eval.py) for several
parameter sets, so each assertion is about the values a stack would really get.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cfn_eval import ACCOUNT, REGION, ROOT, STACK, Stack, load_template

BUCKET = "acme-backups"
PREFIX = "prod/mongo"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:nightdump/mongo-AbC123"
GIVEN_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
SECRET_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/66666666-2222-3333-4444-555555555555"
ENVELOPE_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/77777777-2222-3333-4444-555555555555"

REQUIRED = {
    "BucketName": BUCKET,
    "Prefix": PREFIX,
    "MongoDbSecretArn": SECRET,
    "AlertEmail": "ops@example.com",
    "CodeBucket": BUCKET,
    "CodeKey": "_deploy/prod/mongo/nightdump-arm64-abc.zip",
}

# Parameter sets covering both sides of every condition in the template.
CONFIGS = {
    "defaults": {},
    "given-key": {"KmsKeyArn": GIVEN_KEY},
    "all-optional-on": {
        "KmsKeyArn": GIVEN_KEY,
        "SecretKmsKeyArn": SECRET_KEY,
        "EncryptKmsKeyArn": ENVELOPE_KEY,
        "Prune": "keep-daily=7,keep-weekly=5,keep-monthly=12",
        "ObjectLock": "compliance",
        "RetainFor": "35d",
        "AllowInconsistent": "true",
        "ReservedConcurrency": "0",
        "Architecture": "x86_64",
        "OperationsKmsKey": "create",
        "Dashboard": "true",
    },
    "fargate": {
        "Engine": "fargate",
        "TaskImage": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/nightdump@sha256:{'ab' * 32}",
        "Subnets": "subnet-0a1b2c3d,subnet-4e5f6a7b",
        "SecurityGroups": "sg-0123456789abcdef0",
        "Prune": "keep-daily=7",
    },
}

CONTRACT_ENV = {
    "NIGHTDUMP_TO",
    "NIGHTDUMP_MONGODB_SECRET_ARN",
    "NIGHTDUMP_SSE",
    "NIGHTDUMP_KMS_KEY_ID",
    "NIGHTDUMP_PARALLEL",
    "NIGHTDUMP_ALLOW_INCONSISTENT",
    "NIGHTDUMP_INCLUDE",
    "NIGHTDUMP_EXCLUDE",
    "NIGHTDUMP_MAX_AGE",
    "NIGHTDUMP_STORAGE_CLASS",
    "NIGHTDUMP_ENCRYPT",
    "NIGHTDUMP_PRUNE",
    "NIGHTDUMP_OBJECT_LOCK",
    "NIGHTDUMP_RETAIN_FOR",
    "NIGHTDUMP_DRILL_SECRET_ARN",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(params=sorted(CONFIGS), scope="module")
def stack(request: pytest.FixtureRequest, template: dict[str, Any]) -> Stack:
    return Stack(template, **REQUIRED, **CONFIGS[request.param])


def single(resources: dict[str, dict[str, Any]], what: str) -> tuple[str, dict[str, Any]]:
    assert len(resources) == 1, f"expected exactly one {what}, found {sorted(resources)}"
    return next(iter(resources.items()))


def function_id(stack: Stack) -> str:
    return single(stack.resources_of_type("AWS::Lambda::Function"), "function")[0]


def topic_id(stack: Stack) -> str:
    return single(stack.resources_of_type("AWS::SNS::Topic"), "topic")[0]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def backup_key(stack: Stack) -> str:
    """The key the backups are encrypted with: the given one or the one the stack creates."""
    if stack.params["KmsKeyArn"]:
        return stack.params["KmsKeyArn"]
    created = [
        logical_id
        for logical_id, res in stack.template["Resources"].items()
        if res["Type"] == "AWS::KMS::Key" and res.get("Condition") and stack.exists(logical_id)
    ]
    assert len(created) == 1, f"with no KmsKeyArn the stack must create one backup key, found {created}"
    return f"Arn:{created[0]}"


# --- the schedule ---------------------------------------------------------------------------


def test_schedule_invokes_the_function_through_a_role_scoped_to_it(stack: Stack) -> None:
    fn = function_id(stack)
    schedules = stack.resources_of_type("AWS::Scheduler::Schedule")
    rules = stack.resources_of_type("AWS::Events::Rule")
    assert schedules or rules, "nothing schedules the backup"

    fargate = stack.params["Engine"] == "fargate"
    for name, schedule in schedules.items():
        target = schedule["Target"]
        # Engine fargate: the nightly backup starts the state machine; captures stay on the function.
        expected = "ref:StateMachine" if fargate and not is_capture(schedule) else f"Arn:{fn}"
        assert target["Arn"] == expected, f"{name} does not target {expected}"
        assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}, "a flexible window shifts the backup time"
        if is_capture(schedule):
            assert schedule["ScheduleExpression"] == stack.params["OplogEvery"]
        else:
            assert schedule["ScheduleExpressionTimezone"] == stack.params["ScheduleTimezone"]
            assert schedule["ScheduleExpression"] == stack.params["ScheduleExpression"]
        assert schedule.get("State", "ENABLED") == "ENABLED"

        role_id = target["RoleArn"].removeprefix("Arn:")
        role = stack.resource(role_id)
        trust = role["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]
        assert role.get("ManagedPolicyArns", []) == []
        statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
        grants = {(a, r) for s in statements if s["Effect"] == "Allow" for a in as_list(s["Action"]) for r in as_list(s["Resource"])}
        allowed = {("lambda:InvokeFunction", f"Arn:{fn}")}
        if fargate:
            allowed.add(("states:StartExecution", "ref:StateMachine"))
        assert grants == allowed, "the scheduler role must only start this function (and state machine)"

    # An Events rule would need a resource policy on the function limited to that rule.
    permissions = stack.resources_of_type("AWS::Lambda::Permission").values()
    for name in rules:
        assert any(
            p["FunctionName"] in (f"ref:{fn}", f"Arn:{fn}") and p["SourceArn"] == f"Arn:{name}" and p["Principal"] == "events.amazonaws.com"
            for p in permissions
        ), f"rule {name} has no Permission with its SourceArn"


def is_capture(schedule: dict[str, Any]) -> bool:
    return json.loads(schedule["Target"]["Input"]) == {"action": "oplog"}


def test_schedule_delivers_a_scheduled_event_with_the_scheduled_time(stack: Stack) -> None:
    backups = [s for s in stack.resources_of_type("AWS::Scheduler::Schedule").values() if not is_capture(s)]
    assert len(backups) == 1, "one nightly backup schedule"
    for schedule in backups:
        event = json.loads(schedule["Target"]["Input"])
        assert event["detail-type"] == "Scheduled Event"
        # Scheduler replaces this placeholder with the scheduled (not the delivery) time.
        assert event["time"] == "<aws.scheduler.scheduled-time>"
        assert event["account"] == ACCOUNT and event["region"] == REGION


# The interval of each OplogEvery value, in seconds.
OPLOG_INTERVALS = {
    "rate(5 minutes)": 300,
    "rate(10 minutes)": 600,
    "rate(15 minutes)": 900,
    "rate(30 minutes)": 1800,
    "rate(1 hour)": 3600,
}


def test_every_oplog_interval_the_template_allows_has_its_alarm_thresholds(template: dict[str, Any]) -> None:
    allowed = set(template["Parameters"]["OplogEvery"]["AllowedValues"])
    assert allowed == set(OPLOG_INTERVALS) | {"OFF"}
    assert template["Parameters"]["OplogEvery"]["Default"] == "rate(15 minutes)"


@pytest.mark.parametrize("every", sorted(OPLOG_INTERVALS))
def test_captures_are_scheduled_and_alarmed_after_three_intervals(template: dict[str, Any], every: str) -> None:
    stack = Stack(template, **REQUIRED, OplogEvery=every)
    fn = function_id(stack)
    captures = [s for s in stack.resources_of_type("AWS::Scheduler::Schedule").values() if is_capture(s)]
    assert len(captures) == 1, "one capture schedule"
    capture = captures[0]
    assert capture["ScheduleExpression"] == every
    assert capture["Target"]["Arn"] == f"Arn:{fn}"
    interval = OPLOG_INTERVALS[every]

    # No successful capture for three intervals (missing data included) is an alarm.
    (stale,) = alarms_on(stack, "Nightdump", "OplogCaptureSuccess")
    assert stale["TreatMissingData"] == "breaching"
    assert stale["Statistic"] == "Maximum"
    assert stale["ComparisonOperator"] == "LessThanThreshold" and stale["Threshold"] == 1
    assert stale["Period"] * stale["EvaluationPeriods"] == 3 * interval
    assert stale["DatapointsToAlarm"] == stale["EvaluationPeriods"]
    assert stale["Period"] * stale["EvaluationPeriods"] <= 86400
    assert stale["Dimensions"] == [{"Name": "FunctionName", "Value": f"ref:{fn}"}]
    assert f"ref:{topic_id(stack)}" in stale["AlarmActions"]

    # A capture reporting a lag over three intervals is an alarm too.
    (lag,) = alarms_on(stack, "Nightdump", "OplogLagSeconds")
    assert lag["Threshold"] == 3 * interval
    assert lag["ComparisonOperator"] == "GreaterThanThreshold"
    assert f"ref:{topic_id(stack)}" in lag["AlarmActions"]


def test_oplog_off_schedules_and_alarms_no_capture(template: dict[str, Any]) -> None:
    stack = Stack(template, **REQUIRED, OplogEvery="OFF")
    assert not [s for s in stack.resources_of_type("AWS::Scheduler::Schedule").values() if is_capture(s)]
    assert not alarms_on(stack, "Nightdump", "OplogCaptureSuccess")
    assert not alarms_on(stack, "Nightdump", "OplogLagSeconds")


# --- the function ---------------------------------------------------------------------------


def test_function_runtime_architecture_and_timeout(stack: Stack, template: dict[str, Any]) -> None:
    fn = stack.resource(function_id(stack))
    assert fn["Runtime"] == "provided.al2023"
    assert fn["Handler"] == "bootstrap"
    assert fn["Architectures"] == [stack.params["Architecture"]]
    assert fn["Code"] == {"S3Bucket": stack.params["CodeBucket"], "S3Key": stack.params["CodeKey"]}
    assert int(fn["Timeout"]) <= 900

    arch = template["Parameters"]["Architecture"]
    assert arch["Default"] == "arm64"
    assert set(arch["AllowedValues"]) == {"arm64", "x86_64"}
    timeout = template["Parameters"]["Timeout"]
    assert timeout["MaxValue"] <= 900 and timeout["Default"] <= timeout["MaxValue"]


def test_default_memory_is_the_one_the_estimate_reasons_from(template: dict[str, Any]) -> None:
    # src/estimate.rs holds the reasoning (a whole vCPU at the same price per GiB) and its test.
    source = (ROOT / "src" / "estimate.rs").read_text()
    chosen = re.search(r"pub const TEMPLATE_MEMORY_MB: u32 = (\d+);", source)
    assert chosen, "TEMPLATE_MEMORY_MB not found in src/estimate.rs"
    assert template["Parameters"]["MemorySize"]["Default"] == int(chosen.group(1))
    assert template["Parameters"]["Timeout"]["Default"] == 900


def test_function_logs_json_to_its_own_encrypted_log_group_with_retention(stack: Stack) -> None:
    fn = stack.resource(function_id(stack))
    assert fn["LoggingConfig"]["LogFormat"] == "JSON"
    log_group_id, log_group = single(stack.resources_of_type("AWS::Logs::LogGroup"), "log group")
    assert fn["LoggingConfig"].get("LogGroup") in (None, f"ref:{log_group_id}")
    assert log_group["LogGroupName"] == f"/aws/lambda/{STACK}"
    assert fn["FunctionName"] == STACK, "the log group name assumes the function is named after the stack"
    assert int(log_group["RetentionInDays"]) == int(stack.params["LogRetentionDays"])
    if stack.params["OperationsKmsKey"] == "create":
        assert log_group.get("KmsKeyId") == "Arn:OperationsKey", "the log group is not encrypted with the operations key"
    else:
        assert "KmsKeyId" not in log_group


def test_every_contract_variable_is_set_from_its_parameter(stack: Stack) -> None:
    env = stack.resource(function_id(stack))["Environment"]["Variables"]
    assert set(env) == CONTRACT_ENV
    p = stack.params
    assert env["NIGHTDUMP_TO"] == f"s3://{BUCKET}/{PREFIX}"
    assert env["NIGHTDUMP_MONGODB_SECRET_ARN"] == SECRET
    assert env["NIGHTDUMP_SSE"] == "kms"
    assert env["NIGHTDUMP_KMS_KEY_ID"] == backup_key(stack)
    assert str(env["NIGHTDUMP_PARALLEL"]) == p["Parallelism"]
    assert env["NIGHTDUMP_ALLOW_INCONSISTENT"] == p["AllowInconsistent"]
    assert env["NIGHTDUMP_INCLUDE"] == p["Include"]
    assert env["NIGHTDUMP_EXCLUDE"] == p["Exclude"]
    assert env["NIGHTDUMP_MAX_AGE"] == p["MaxAge"]
    assert env["NIGHTDUMP_STORAGE_CLASS"] == p["StorageClass"]
    assert env["NIGHTDUMP_ENCRYPT"] == (f"kms:{p['EncryptKmsKeyArn']}" if p["EncryptKmsKeyArn"] else "")
    assert env["NIGHTDUMP_PRUNE"] == p["Prune"]
    assert env["NIGHTDUMP_OBJECT_LOCK"] == p["ObjectLock"]
    assert env["NIGHTDUMP_RETAIN_FOR"] == p["RetainFor"]
    assert env["NIGHTDUMP_DRILL_SECRET_ARN"] == p["DrillSecretArn"]


def test_contract_defaults(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert str(params["Parallelism"]["Default"]) == "4"
    assert params["StorageClass"]["Default"] == "STANDARD"
    assert params["MaxAge"]["Default"] == "26h"
    # Strict: a source that cannot be backed up consistently is refused unless asked for.
    assert params["AllowInconsistent"]["Default"] == "false"
    for later in ("EncryptKmsKeyArn", "Prune", "ObjectLock", "RetainFor", "Include", "Exclude"):
        assert params[later]["Default"] == "", f"{later} must be off by default"


# --- the role -------------------------------------------------------------------------------


def role_grants(stack: Stack) -> tuple[dict[str, set[str]], list[dict[str, Any]]]:
    fn = stack.resource(function_id(stack))
    role_id = fn["Role"].removeprefix("Arn:")
    role = stack.resource(role_id)
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    # With Engine fargate the task runs with the function's role, so both engines hold the
    # same grants (and the test below covers both).
    services = ["lambda.amazonaws.com"] + (["ecs-tasks.amazonaws.com"] if stack.params["Engine"] == "fargate" else [])
    assert [s["Principal"] for s in trust] == [{"Service": services}]
    assert role.get("ManagedPolicyArns", []) == [], "managed policies are broader than this function needs"
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Effect"] != "Deny"]
    grants: dict[str, set[str]] = {}
    for s in statements:
        assert s["Effect"] == "Allow"
        assert "NotAction" not in s and "NotResource" not in s
        for action in as_list(s["Action"]):
            grants.setdefault(action, set()).update(as_list(s["Resource"]))
    return grants, statements


def test_role_grants_exactly_the_prefix_the_keys_the_secret_the_topic_and_the_log_group(stack: Stack) -> None:
    grants, _ = role_grants(stack)
    p = stack.params
    objects = f"arn:aws:s3:::{BUCKET}/{PREFIX}/*"
    topic = f"ref:{topic_id(stack)}"
    sns_key = stack.resource(topic_id(stack)).get("KmsMasterKeyId")
    log_group_id, _ = single(stack.resources_of_type("AWS::Logs::LogGroup"), "log group")

    expected: dict[str, set[str]] = {
        "s3:PutObject": {objects},
        "s3:GetObject": {objects},
        "s3:AbortMultipartUpload": {objects},
        "s3:ListMultipartUploadParts": {objects},
        "s3:ListBucket": {f"arn:aws:s3:::{BUCKET}"},
        # Finding killed runs' unfinished uploads; aborting them stays limited to the prefix.
        "s3:ListBucketMultipartUploads": {f"arn:aws:s3:::{BUCKET}"},
        # Multipart SSE-KMS needs both; publishing to the encrypted topic needs both too.
        "kms:GenerateDataKey": {backup_key(stack)} | ({sns_key} if sns_key else set()),
        "kms:Decrypt": {backup_key(stack)} | ({sns_key} if sns_key else set()),
        "secretsmanager:GetSecretValue": {SECRET},
        "sns:Publish": {topic},
        # GetAtt LogGroup.Arn ends in ":*", which covers exactly this group's streams.
        "logs:CreateLogStream": {f"Arn:{log_group_id}"},
        "logs:PutLogEvents": {f"Arn:{log_group_id}"},
    }
    if p["Prune"]:
        expected["s3:DeleteObject"] = {objects}
    if p["ObjectLock"]:
        expected["s3:PutObjectRetention"] = {objects}
        expected["s3:GetObjectRetention"] = {objects}
        expected["s3:GetBucketObjectLockConfiguration"] = {f"arn:aws:s3:::{BUCKET}"}
    if p["SecretKmsKeyArn"]:
        expected["kms:Decrypt"].add(p["SecretKmsKeyArn"])
    if p["EncryptKmsKeyArn"]:
        expected["kms:GenerateDataKey"].add(p["EncryptKmsKeyArn"])
        expected["kms:Decrypt"].add(p["EncryptKmsKeyArn"])
    if p["Engine"] == "fargate":
        # PutMetricData takes no resource; a namespace condition narrows it (checked below).
        expected["cloudwatch:PutMetricData"] = {"*"}
    assert grants == expected
    assert all("*" not in a for a in grants), "wildcard actions"


def test_role_conditions_narrow_listing_and_indirect_key_use(stack: Stack) -> None:
    _, statements = role_grants(stack)
    p = stack.params
    listing = [s for s in statements if "s3:ListBucket" in as_list(s["Action"])]
    assert len(listing) == 1
    assert listing[0]["Condition"] == {"StringLike": {"s3:prefix": f"{PREFIX}/*"}}

    sns_key = stack.resource(topic_id(stack)).get("KmsMasterKeyId")
    for s in statements:
        resources = as_list(s["Resource"])
        if sns_key in resources:
            assert s["Condition"] == {"StringEquals": {"kms:ViaService": f"sns.{REGION}.amazonaws.com"}}
        if p["SecretKmsKeyArn"] and p["SecretKmsKeyArn"] in resources:
            assert as_list(s["Action"]) == ["kms:Decrypt"]
            assert s["Condition"] == {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}}


def test_wildcard_resources_appear_only_in_key_policies(template: dict[str, Any]) -> None:
    # In a KMS key policy, Resource "*" means "this key" and is what AWS requires; anywhere
    # else a "*" resource would be a real wildcard.
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "Resource" and "*" in as_list(v):
                    found.append(f"{path}#{node.get('Sid', '')}")
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    for logical_id, res in template["Resources"].items():
        walk(res.get("Properties", {}), f"{logical_id}({res['Type']})")
    assert found, "the key policies are expected to use Resource '*'"
    # Two IAM actions take no resource at all; each is checked where it is granted.
    resourceless = {
        "TaskPublishesItsMetrics": "cloudwatch:PutMetricData",
        "RegistryLogin": "ecr:GetAuthorizationToken",
        "ReadBackupMetrics": "cloudwatch:GetMetricData",
    }
    for where in found:
        if "(AWS::KMS::Key).KeyPolicy" in where:
            continue
        if "(AWS::IAM::ManagedPolicy).PolicyDocument" in where and "ReadBackupMetrics" in where:
            continue
        sid = next((sid for sid in resourceless if sid in where), None)
        assert sid, f"wildcard resource outside a key policy: {where}"


def test_resourceless_grants_are_only_what_they_name(template: dict[str, Any]) -> None:
    statements = [
        st
        for res in template["Resources"].values()
        if res["Type"] == "AWS::IAM::Role"
        for p in res["Properties"].get("Policies", [])
        for st in p["PolicyDocument"]["Statement"]
    ]
    flat = []
    for st in statements:
        if "Fn::If" in st:
            flat.extend(x for x in st["Fn::If"][1:] if isinstance(x, dict) and "Sid" in x)
        else:
            flat.append(st)
    by_sid = {st["Sid"]: st for st in flat if "Sid" in st}
    assert by_sid["TaskPublishesItsMetrics"]["Action"] == "cloudwatch:PutMetricData"
    assert by_sid["TaskPublishesItsMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Nightdump"}}
    assert by_sid["RegistryLogin"]["Action"] == "ecr:GetAuthorizationToken"


# --- failures and alerts --------------------------------------------------------------------


def test_async_retries_twice_then_sends_the_failure_to_the_topic(stack: Stack) -> None:
    fn = function_id(stack)
    _, config = single(stack.resources_of_type("AWS::Lambda::EventInvokeConfig"), "EventInvokeConfig")
    assert config["FunctionName"] == f"ref:{fn}"
    assert config["Qualifier"] == "$LATEST"
    assert config["MaximumRetryAttempts"] == 2
    assert 60 <= config["MaximumEventAgeInSeconds"] <= 21600
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == f"ref:{topic_id(stack)}"


def test_topic_is_encrypted_with_a_key_cloudwatch_may_use_and_emails_the_alert_address(stack: Stack) -> None:
    topic = stack.resource(topic_id(stack))
    key = topic.get("KmsMasterKeyId")
    subs = stack.resources_of_type("AWS::SNS::Subscription").values()
    assert [(s["Protocol"], s["Endpoint"], s["TopicArn"]) for s in subs] == [
        ("email", "ops@example.com", f"ref:{topic_id(stack)}")
    ]
    if stack.params["OperationsKmsKey"] == "none":
        # No customer key (about $1 a month saved): no KMS encryption at all rather than
        # aws/sns, under which CloudWatch alarms could not publish.
        assert key is None and not stack.exists("OperationsKey")
        return
    assert key, "the alert topic is not encrypted"
    # CloudWatch alarms cannot publish to a topic under the AWS managed key aws/sns.
    assert key.startswith("Arn:") or key.startswith("ref:"), key
    key_id = key.split(":", 1)[1]
    policy = stack.resource(key_id)["KeyPolicy"]["Statement"]
    assert any(
        s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(as_list(s["Action"]))
        for s in policy
    ), "the topic's key does not let CloudWatch alarms publish"

    subs = stack.resources_of_type("AWS::SNS::Subscription").values()
    assert [(s["Protocol"], s["Endpoint"], s["TopicArn"]) for s in subs] == [
        ("email", "ops@example.com", f"ref:{topic_id(stack)}")
    ]


def alarms_on(stack: Stack, namespace: str, metric: str) -> list[dict[str, Any]]:
    return [
        a
        for a in stack.resources_of_type("AWS::CloudWatch::Alarm").values()
        if a.get("Namespace") == namespace and a.get("MetricName") == metric
    ]


def test_errors_alarm_counts_each_attempt_and_mails_no_one(stack: Stack) -> None:
    fn = function_id(stack)
    alarms = alarms_on(stack, "AWS/Lambda", "Errors")
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": f"ref:{fn}"}]
    assert alarm["Statistic"] == "Sum"
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["Threshold"] == 1
    # Mailing each attempt would make one failed night three mails (or one for a night whose
    # retry succeeded). The night's one mail is its failure record.
    assert "AlarmActions" not in alarm and "OKActions" not in alarm


def test_one_failed_night_is_one_mail(stack: Stack) -> None:
    [sub] = stack.resources_of_type("AWS::SNS::Subscription").values()
    assert sub["Protocol"] == "email"
    # Nothing filters what reaches the address: every alarm and failure record is mailed.
    assert "FilterPolicy" not in sub
    invoke = stack.resource(single(stack.resources_of_type("AWS::Lambda::EventInvokeConfig"), "invoke config")[0])
    assert invoke["DestinationConfig"]["OnFailure"]["Destination"] == f"ref:{topic_id(stack)}"
    mailing = [
        name for name, a in stack.resources_of_type("AWS::CloudWatch::Alarm").items()
        if a.get("Namespace") == "AWS/Lambda" and a.get("MetricName") == "Errors" and a.get("AlarmActions")
    ]
    assert mailing == []


def test_staleness_alarm_fires_after_26_hours_without_a_success(stack: Stack) -> None:
    fn = function_id(stack)
    alarms = alarms_on(stack, "Nightdump", "BackupSuccess")
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": f"ref:{fn}"}]
    # A run that never happened leaves no data: that must count as "no success".
    assert alarm["TreatMissingData"] == "breaching"
    # Each period breaches unless it holds a 1 (a success).
    assert alarm["Statistic"] == "Maximum"
    assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["Threshold"] == 1
    period, periods = alarm["Period"], int(alarm["EvaluationPeriods"])
    assert int(alarm.get("DatapointsToAlarm", periods)) == periods, "every period of the window must lack a success"
    # The window follows the schedule: StaleAfterHours (26 for the default daily schedule).
    assert period * periods == int(stack.params["StaleAfterHours"]) * 3600
    assert period * periods >= 26 * 3600 or stack.params["StaleAfterHours"] != "26"
    # CloudWatch limits: 7 days in all, and 1 day when the period is under an hour.
    assert period * periods <= 7 * 86400
    assert period >= 3600 or period * periods <= 86400
    assert f"ref:{topic_id(stack)}" in alarm["AlarmActions"]


def test_deadline_alarm_fires_when_a_run_used_more_than_70_percent_of_its_time(stack: Stack) -> None:
    fn = function_id(stack)
    (alarm,) = alarms_on(stack, "Nightdump", "DeadlineUsedPercent")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": f"ref:{fn}"}]
    assert alarm["Statistic"] == "Maximum"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 70
    assert alarm["EvaluationPeriods"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"
    assert f"ref:{topic_id(stack)}" in alarm["AlarmActions"]


def test_the_role_can_never_write_with_a_customer_provided_key(stack: Stack) -> None:
    fn = stack.resource(function_id(stack))
    role = stack.resource(fn["Role"].removeprefix("Arn:"))
    denies = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    objects = f"arn:aws:s3:::{BUCKET}/{PREFIX}/*"
    sse_c = [
        d
        for d in denies
        if "s3:PutObject" in as_list(d["Action"])
        and objects in as_list(d.get("Resource", []))
        and d.get("Condition", {}).get("Null", {}).get("s3:x-amz-server-side-encryption-customer-algorithm") == "false"
    ]
    assert len(sse_c) == 1, "a write carrying an SSE-C key must be denied under the prefix"


@pytest.mark.parametrize("metric", ["PruneFailure", "LatestUpdateFailure"])
def test_failures_that_only_logged_are_alarmed(template: dict[str, Any], metric: str) -> None:
    stack = Stack(template, **REQUIRED, Prune="keep-daily=7")
    fn = function_id(stack)
    (alarm,) = alarms_on(stack, "Nightdump", metric)
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": f"ref:{fn}"}]
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["Threshold"] == 1
    assert f"ref:{topic_id(stack)}" in alarm["AlarmActions"]



# --- outputs and metadata -------------------------------------------------------------------


def test_outputs_name_the_function_topic_log_group_and_status_object(stack: Stack) -> None:
    outputs = {
        k: stack.resolve(v["Value"])
        for k, v in stack.template["Outputs"].items()
        if "Condition" not in v or stack.condition(v["Condition"])
    }
    fn = function_id(stack)
    fargate = stack.params["Engine"] == "fargate"
    assert outputs["Engine"] == stack.params["Engine"]
    assert ("StateMachineArn" in outputs) == fargate and ("TaskDefinitionArn" in outputs) == fargate
    log_group_id, _ = single(stack.resources_of_type("AWS::Logs::LogGroup"), "log group")
    assert outputs["FunctionName"] == f"ref:{fn}"
    assert outputs["FunctionArn"] == f"Arn:{fn}"
    assert outputs["AlertTopicArn"] == f"ref:{topic_id(stack)}"
    assert outputs["LogGroupName"] == f"ref:{log_group_id}"
    assert outputs["StatusObject"] == f"s3://{BUCKET}/{PREFIX}/latest.json"
    assert outputs["BackupKmsKeyArn"] == backup_key(stack)


def test_created_backup_key_survives_stack_deletion(template: dict[str, Any]) -> None:
    stack = Stack(template, **REQUIRED)
    key_id = backup_key(stack).removeprefix("Arn:")
    res = template["Resources"][key_id]
    assert res["DeletionPolicy"] == "Retain" and res["UpdateReplacePolicy"] == "Retain"
    assert stack.resource(key_id)["EnableKeyRotation"] is True


def test_checkov_skips_carry_a_reason(template: dict[str, Any]) -> None:
    skips = [
        (logical_id, skip)
        for logical_id, res in template["Resources"].items()
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for logical_id, skip in skips:
        assert skip["id"].startswith("CKV_"), (logical_id, skip)
        assert len(skip.get("comment", "").split()) >= 8, f"{logical_id} skips {skip['id']} without a reason"


# --- lifecycle settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lock", "retain", "accepted"),
    [("", "", True), ("governance", "35d", True), ("compliance", "", False), ("", "35d", False)],
)
def test_object_lock_and_retention_are_set_together(
    template: dict[str, Any], lock: str, retain: str, accepted: bool
) -> None:
    stack = Stack(template, **REQUIRED, ObjectLock=lock, RetainFor=retain)
    passes = all(
        not stack._cond(rule["RuleCondition"]) or all(stack._cond(a["Assert"]) for a in rule["Assertions"])
        for rule in template["Rules"].values()
    )
    assert passes == accepted


def test_retention_is_given_in_units_the_function_reads_as_days_or_more(template: dict[str, Any]) -> None:
    import re

    pattern = re.compile(template["Parameters"]["RetainFor"]["AllowedPattern"])
    for good in ["", "35d", "5w", "1y"]:
        assert pattern.fullmatch(good), good
    # "m" would be minutes to the function, and hours are shorter than Object Lock counts.
    for bad in ["35m", "12h", "d", "35 d"]:
        assert not pattern.fullmatch(bad), bad


def test_without_prune_the_role_can_write_but_never_delete(template: dict[str, Any]) -> None:
    stack = Stack(template, **REQUIRED, **CONFIGS["given-key"])
    grants, _ = role_grants(stack)
    assert "s3:PutObject" in grants
    assert not any("Delete" in action for action in grants), sorted(grants)
    assert not any("Retention" in action or "ObjectLock" in action for action in grants)


def test_a_failure_record_that_cannot_be_delivered_is_alarmed(stack: Stack) -> None:
    [alarm] = alarms_on(stack, "AWS/Lambda", "DestinationDeliveryFailures")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": f"ref:{function_id(stack)}"}]
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["Threshold"] == 1
    assert alarm["AlarmActions"] == [f"ref:{topic_id(stack)}"]


def test_the_portal_reads_the_last_success_without_the_backups_or_their_key(stack: Stack) -> None:
    policy = stack.resource("PortalReadPolicy")["PolicyDocument"]
    actions = {a for st in policy["Statement"] for a in as_list(st["Action"])}
    assert all(st["Effect"] == "Allow" for st in policy["Statement"])
    # Reads of metric values only: no S3, no KMS, no Secrets Manager, no write of any kind.
    assert actions == {"cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics"}
    outputs = stack.template["Outputs"]
    assert stack.resolve(outputs["PortalReadPolicyArn"]["Value"]) == "ref:PortalReadPolicy"


def test_the_dashboard_graphs_what_the_portal_needs(template: dict[str, Any]) -> None:
    assert not Stack(template, **REQUIRED).exists("OperationsDashboard"), "the dashboard is optional"
    stack = Stack(template, **REQUIRED, Dashboard="true")
    body = json.loads(stack.resource("OperationsDashboard")["DashboardBody"])
    graphed = {
        (m[0], m[1]): m[3]
        for w in body["widgets"]
        for m in w["properties"]["metrics"]
    }
    for metric in [("Nightdump", "BackupSuccess"), ("Nightdump", "DeadlineUsedPercent"), ("Nightdump", "BackupBytes"),
                   ("Nightdump", "BackupDocuments"), ("AWS/Lambda", "Errors")]:
        assert graphed.get(metric) == f"ref:{function_id(stack)}", metric
    [deadline] = [w for w in body["widgets"] if w["properties"]["metrics"][0][1] == "DeadlineUsedPercent"]
    [alarm] = alarms_on(stack, "Nightdump", "DeadlineUsedPercent")
    assert deadline["properties"]["annotations"]["horizontal"][0]["value"] == alarm["Threshold"]


@pytest.mark.parametrize("hours", ["2", "26", "168"])
def test_the_staleness_window_follows_the_schedule_within_cloudwatchs_seven_days(template: dict[str, Any], hours: str) -> None:
    spec = template["Parameters"]["StaleAfterHours"]
    stack = Stack(template, **REQUIRED, StaleAfterHours=hours)
    [alarm] = alarms_on(stack, "Nightdump", "BackupSuccess")
    assert alarm["Period"] * int(alarm["EvaluationPeriods"]) == int(hours) * 3600 <= 7 * 86400
    assert spec["Default"] == 26 and spec["MaxValue"] * 3600 <= 7 * 86400


def test_the_role_cannot_replace_a_stored_backup(stack: Stack) -> None:
    role = stack.resource("FunctionRole")
    denies = {
        st["Sid"]: st
        for p in role["Policies"]
        for st in p["PolicyDocument"]["Statement"]
        if st["Effect"] == "Deny"
    }
    latest = f"arn:aws:s3:::{BUCKET}/{PREFIX}/latest.json"
    # Everything but latest.json: only create-only writes (If-None-Match) make an object.
    objects = denies["DenyOverwritingBackups"]
    assert objects["Action"] == "s3:PutObject" and objects["NotResource"] == latest
    assert objects["Condition"] == {
        "Bool": {"s3:ObjectCreationOperation": "true"},
        "Null": {"s3:if-none-match": "true"},
    }
    # latest.json: only a conditional update (If-Match) or a first write (If-None-Match).
    pointer = denies["DenyUnconditionalLatestUpdate"]
    assert pointer["Resource"] == latest
    assert pointer["Condition"]["Null"] == {"s3:if-none-match": "true", "s3:if-match": "true"}
    assert pointer["Condition"]["Bool"] == {"s3:ObjectCreationOperation": "true"}


def test_nightdump_writes_only_create_only_objects_and_updates_only_latest_json() -> None:
    """The code half of the promise above: every PUT the library makes is create-only, and the
    one read-decide-write update is of latest.json."""
    import subprocess as sp

    src = str(ROOT / "src")
    puts = sp.run(["grep", "-rnE", r"PutOptions::[a-z_]+\(", src], capture_output=True, text=True).stdout.splitlines()
    callers = [line for line in puts if not line.startswith(f"{src}/store/")]
    assert callers and all("PutOptions::create()" in line for line in callers), callers
    # Store updates name their key: only latest.json's constant is ever passed.
    updates = sp.run(["grep", "-rnE", r"\.update\([A-Za-z_:]*KEY\b", src], capture_output=True, text=True).stdout.splitlines()
    assert len(updates) >= 2, updates
    assert all(re.search(r"\.update\((crate::layout::)?LATEST_KEY\b", line) for line in updates), updates
