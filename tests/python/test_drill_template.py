"""Restore drills over the parsed template: off without a scratch secret; with one, a weekly
schedule in UTC sending the drill event, the role reading that secret and nothing else new,
an alarm counting failed drills and one mailing when no drill passed for a week."""

from __future__ import annotations

from typing import Any

import pytest

from cfn_eval import ACCOUNT, REGION, REQUIRED_PARAMS, Stack, load_template

BASE = REQUIRED_PARAMS
SCRATCH = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:nightdump/scratch-XyZ789"
DRILL_RESOURCES = ("DrillScheduleRule", "DrillFailureAlarm", "DrillStalenessAlarm")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def statements(stack: Stack) -> dict[str, dict[str, Any]]:
    role = stack.resource("FunctionRole")
    return {st["Sid"]: st for p in role["Policies"] for st in p["PolicyDocument"]["Statement"]}


def test_drills_are_off_without_a_scratch_secret(template: dict[str, Any]) -> None:
    off = Stack(template, **BASE)
    for logical_id in DRILL_RESOURCES:
        assert not off.exists(logical_id), logical_id
    assert "ReadDrillConnectionString" not in statements(off)
    assert off.resource("Function")["Environment"]["Variables"]["NIGHTDUMP_DRILL_SECRET_ARN"] == ""


def test_a_scratch_secret_schedules_weekly_drills_in_utc(template: dict[str, Any]) -> None:
    on = Stack(template, **BASE, DrillSecretArn=SCRATCH)
    for logical_id in DRILL_RESOURCES:
        assert on.exists(logical_id), logical_id
    schedule = on.resource("DrillScheduleRule")
    assert schedule["ScheduleExpression"] == "cron(0 5 ? * SUN *)"
    # UTC, so that every week is the 168 hours the staleness alarm watches.
    assert "ScheduleExpressionTimezone" not in schedule
    assert schedule["Target"]["Input"] == '{"action": "drill"}'
    assert schedule["Target"]["Arn"] == "Arn:Function"
    assert on.resource("Function")["Environment"]["Variables"]["NIGHTDUMP_DRILL_SECRET_ARN"] == SCRATCH


def test_the_role_reads_the_scratch_secret_and_nothing_else_new(template: dict[str, Any]) -> None:
    off, on = statements(Stack(template, **BASE)), statements(Stack(template, **BASE, DrillSecretArn=SCRATCH))
    assert set(on) - set(off) == {"ReadDrillConnectionString"}
    grant = on["ReadDrillConnectionString"]
    assert (grant["Effect"], grant["Action"], grant["Resource"]) == ("Allow", "secretsmanager:GetSecretValue", SCRATCH)


def test_a_failed_drill_is_counted_and_a_week_without_a_passing_one_mails(template: dict[str, Any]) -> None:
    on = Stack(template, **BASE, DrillSecretArn=SCRATCH)
    failed = on.resource("DrillFailureAlarm")
    assert (failed["MetricName"], failed["Statistic"], failed["Threshold"]) == ("DrillSuccess", "Minimum", 1)
    assert failed["ComparisonOperator"] == "LessThanThreshold"
    # One mail per failed drill comes from its failure record, which carries the result.
    assert "AlarmActions" not in failed
    stale = on.resource("DrillStalenessAlarm")
    assert (stale["MetricName"], stale["Statistic"], stale["Period"]) == ("DrillSuccess", "Maximum", 3600)
    assert str(stale["EvaluationPeriods"]) == str(stale["DatapointsToAlarm"]) == "168"
    assert stale["TreatMissingData"] == "breaching"
    assert stale["AlarmActions"] == ["ref:AlertTopic"]
    # CloudWatch evaluates a week at most.
    assert int(template["Parameters"]["DrillStaleAfterHours"]["MaxValue"]) * 3600 <= 7 * 24 * 3600


def test_the_task_gets_the_same_drill_setting(template: dict[str, Any]) -> None:
    on = Stack(
        template, **BASE, DrillSecretArn=SCRATCH, Engine="fargate",
        TaskImage=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/nightdump@sha256:{'ab' * 32}",
        Subnets="subnet-0a1b2c3d", SecurityGroups="sg-0123456789abcdef0",
    )
    (container,) = on.resource("TaskDefinition")["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["NIGHTDUMP_DRILL_SECRET_ARN"] == SCRATCH
