"""A function in a VPC (FunctionInVpc) over the parsed template: the function gets exactly the
network asked for, its role the ENI permissions Lambda needs and nothing more, and a stack
that asks for a VPC without saying which subnets and groups is refused."""

from __future__ import annotations

from typing import Any

import pytest

from cfn_eval import REQUIRED_PARAMS, Stack, load_template

BASE = REQUIRED_PARAMS
NETWORK = {"Subnets": "subnet-0a1b2c3d,subnet-4e5f6a7b", "SecurityGroups": "sg-0123456789abcdef0"}
ENI_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaENIManagementAccess"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_the_function_is_in_the_vpc_only_when_asked(template: dict[str, Any]) -> None:
    public = Stack(template, **BASE)
    assert "VpcConfig" not in public.resource("Function")
    assert public.resource("FunctionRole").get("ManagedPolicyArns", []) == []
    # Subnets given for the task alone do not move the function.
    assert "VpcConfig" not in Stack(template, **BASE, **NETWORK).resource("Function")

    private = Stack(template, **BASE, **NETWORK, FunctionInVpc="true")
    assert private.resource("Function")["VpcConfig"] == {
        "SubnetIds": NETWORK["Subnets"].split(","),
        "SecurityGroupIds": [NETWORK["SecurityGroups"]],
    }
    # AWS's managed policy holding only the network-interface actions Lambda needs.
    assert private.resource("FunctionRole")["ManagedPolicyArns"] == [ENI_POLICY]


@pytest.mark.parametrize("missing", ["Subnets", "SecurityGroups"])
def test_a_vpc_without_subnets_or_groups_is_refused(template: dict[str, Any], missing: str) -> None:
    rule = template["Rules"]["FunctionInVpcNeedsNetwork"]
    given = {k: v for k, v in NETWORK.items() if k != missing}
    incomplete = Stack(template, **BASE, **given, FunctionInVpc="true")
    assert incomplete._cond(rule["RuleCondition"])
    failed = [a["AssertDescription"] for a in rule["Assertions"] if not incomplete._cond(a["Assert"])]
    assert failed == [f"FunctionInVpc needs {missing}" + (" (private subnets with endpoints or NAT)." if missing == "Subnets" else ".")]
    complete = Stack(template, **BASE, **NETWORK, FunctionInVpc="true")
    assert all(complete._cond(a["Assert"]) for a in rule["Assertions"])
    assert not Stack(template, **BASE)._cond(rule["RuleCondition"])
