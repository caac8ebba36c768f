"""Engine fargate over the parsed template: what cannot run here (ECS, Step Functions,
alarms) is checked as the stack would get it, and the state machine's definition is checked
by a States Language validator (asl-validator from npm) as well as by its promises."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cfn_eval import ACCOUNT, REGION, REQUIRED_PARAMS, ROOT, STACK, Stack, load_template

IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/nightdump@sha256:{'ab' * 32}"
FARGATE = {
    **REQUIRED_PARAMS,
    "Engine": "fargate",
    "TaskImage": IMAGE,
    "Subnets": "subnet-0a1b2c3d,subnet-4e5f6a7b",
    "SecurityGroups": "sg-0123456789abcdef0",
    "Prune": "keep-daily=7",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def stack(template: dict[str, Any]) -> Stack:
    return Stack(template, **FARGATE)


def definition(stack: Stack) -> dict[str, Any]:
    return json.loads(stack.resource("StateMachine")["DefinitionString"])


def test_lambda_engine_creates_nothing_of_the_task(template: dict[str, Any]) -> None:
    lam = Stack(template, **{k: v for k, v in FARGATE.items() if k not in ("Engine", "TaskImage", "Subnets", "SecurityGroups")})
    for logical_id in ("TaskCluster", "TaskExecutionRole", "TaskDefinition", "StateMachineRole", "StateMachine", "TaskFailureAlarm"):
        assert not lam.exists(logical_id), logical_id
        assert Stack(template, **FARGATE).exists(logical_id), logical_id


def test_fargate_needs_an_image_and_a_network(template: dict[str, Any]) -> None:
    rule = template["Rules"]["FargateNeedsImageAndNetwork"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "Engine"}, "fargate"]}
    asserted = json.dumps(rule["Assertions"])
    for name in ("TaskImage", "Subnets", "SecurityGroups"):
        assert f'"Ref": "{name}"' in asserted, name


def test_the_state_machine_runs_the_task_to_its_end_and_retries_it_twice(stack: Stack) -> None:
    d = definition(stack)
    run = d["States"][d["StartAt"]]
    assert run["Type"] == "Task"
    assert run["Resource"] == "arn:aws:states:::ecs:runTask.sync", "only .sync waits for the task's exit code"
    params = run["Parameters"]
    assert params["TaskDefinition"] == "ref:TaskDefinition"
    assert params["Cluster"] == "Arn:TaskCluster"
    assert params["LaunchType"] == "FARGATE"
    network = params["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["Subnets"] == FARGATE["Subnets"].split(",")
    assert network["SecurityGroups"] == [FARGATE["SecurityGroups"]]
    overrides = params["Overrides"]["ContainerOverrides"]
    assert [o["Name"] for o in overrides] == ["nightdump"]
    env = {e["Name"]: e for e in overrides[0]["Environment"]}
    # The scheduler's event (its scheduled time names the backup) reaches the task whole.
    assert env["NIGHTDUMP_EVENT"]["Value.$"] == "States.JsonToString($)"
    assert run["Retry"] == [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 60, "MaxAttempts": 2, "BackoffRate": 2.0}]
    # The state's limit leaves the task time to stop itself first (NIGHTDUMP_TASK_TIMEOUT).
    assert run["TimeoutSeconds"] >= 4 * 3600 + 600


def test_after_the_last_failure_one_alert_of_lambdas_shape_goes_to_the_topic(stack: Stack) -> None:
    d = definition(stack)
    run = d["States"][d["StartAt"]]
    [catch] = run["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"]
    alert = d["States"][catch["Next"]]
    assert alert["Resource"] == "arn:aws:states:::sns:publish"
    assert alert["Parameters"]["TopicArn"] == "ref:AlertTopic"
    message = alert["Parameters"]["Message"]
    assert message["requestPayload.$"] == "$$.Execution.Input"
    assert message["responsePayload"] == {"errorType.$": f"{catch['ResultPath']}.Error", "errorMessage.$": f"{catch['ResultPath']}.Cause"}
    assert message["requestContext"]["condition"] == "RetriesExhausted"
    # The execution still ends failed, so the ExecutionsFailed alarm counts the night once.
    assert d["States"][alert["Next"]]["Type"] == "Fail"
    assert "Retry" not in alert or alert["Retry"], "an alert that fails must not be silent"


def test_the_state_machine_role_runs_only_this_task_and_publishes_only_to_the_topic(stack: Stack) -> None:
    role = stack.resource("StateMachineRole")
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    grants = {(a, r) for s in statements for a in [s["Action"]] if isinstance(a, str) for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])}
    grants |= {(a, r) for s in statements if isinstance(s["Action"], list) for a in s["Action"] for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])}
    actions = {a for a, _ in grants}
    assert ("ecs:RunTask", "ref:TaskDefinition") in grants
    assert ("sns:Publish", "ref:AlertTopic") in grants
    assert {r for a, r in grants if a == "iam:PassRole"} == {"Arn:FunctionRole", "Arn:TaskExecutionRole"}
    assert all(r != "*" for _, r in grants), grants
    assert actions <= {
        "ecs:RunTask", "ecs:DescribeTasks", "ecs:StopTask", "iam:PassRole", "events:PutTargets",
        "events:PutRule", "events:DescribeRule", "sns:Publish", "kms:GenerateDataKey", "kms:Decrypt",
    }, actions


def test_the_task_is_the_same_binary_with_the_functions_settings_on_arm64(stack: Stack) -> None:
    task = stack.resource("TaskDefinition")
    fn = stack.resource("Function")
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert task["TaskRoleArn"] == "Arn:FunctionRole", "one role, one set of grants for both engines"
    [container] = task["ContainerDefinitions"]
    assert container["Image"] == IMAGE
    assert container["Command"][0] == "task"
    assert container["ReadonlyRootFilesystem"] is True
    assert container["StopTimeout"] == 120, "Fargate's longest: time to abort the upload after SIGTERM"
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    function_env = fn["Environment"]["Variables"]
    for name, value in function_env.items():
        assert env.get(name) == value, f"the task's {name} differs from the function's"
    extra = set(env) - set(function_env)
    assert extra == {"NIGHTDUMP_METRICS_NAME", "NIGHTDUMP_TASK_TIMEOUT", "TMPDIR"}, extra
    # Metrics under the function's name: the staleness and deadline alarms watch both engines.
    assert env["NIGHTDUMP_METRICS_NAME"] == STACK and fn["FunctionName"] == STACK
    assert env["NIGHTDUMP_TASK_TIMEOUT"] == "4h"
    # The connection string never appears in the task definition, only the secret's ARN.
    assert not any("mongodb" in str(v).lower() and "://" in str(v) for v in env.values())
    assert "Secrets" not in container and "MONGODB_URI" not in env
    logs = container["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs" and logs["Options"]["awslogs-group"] == "ref:LogGroup"


def test_the_same_staleness_and_deadline_alarms_hold_and_a_failed_night_is_alarmed(stack: Stack) -> None:
    alarms = stack.resources_of_type("AWS::CloudWatch::Alarm")
    for metric in ("BackupSuccess", "DeadlineUsedPercent", "PruneFailure", "LatestUpdateFailure"):
        [alarm] = [a for a in alarms.values() if a["MetricName"] == metric]
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": "ref:Function"}]
    failed = alarms["TaskFailureAlarm"]
    assert (failed["Namespace"], failed["MetricName"]) == ("AWS/States", "ExecutionsFailed")
    assert failed["Dimensions"] == [{"Name": "StateMachineArn", "Value": "ref:StateMachine"}]
    assert failed["AlarmActions"] == ["ref:AlertTopic"]


def asl_validator() -> str | None:
    local = ROOT / ".node" / "node_modules" / ".bin" / "asl-validator"
    if local.exists():
        return str(local)
    return shutil.which("asl-validator")


def test_the_definition_is_valid_states_language(stack: Stack, tmp_path: Path) -> None:
    tool = asl_validator()
    if tool is None:
        if os.environ.get("NIGHTDUMP_REQUIRE_ASL_VALIDATOR") == "1":
            pytest.fail("asl-validator is required: npm install --prefix .node asl-validator")
        pytest.skip("asl-validator not installed (scripts/test installs it with npm)")
    path = tmp_path / "definition.json"
    path.write_text(stack.resource("StateMachine")["DefinitionString"])
    ok = subprocess.run([tool, "--json-path", str(path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The validator can fail: a definition without its StartAt state is refused.
    broken = definition(stack)
    del broken["States"][broken["StartAt"]]
    path.write_text(json.dumps(broken))
    bad = subprocess.run([tool, "--json-path", str(path)], capture_output=True, text=True)
    assert bad.returncode != 0, "asl-validator accepted a definition without its start state"
