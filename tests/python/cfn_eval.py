"""Just enough of CloudFormation's intrinsic functions to read template.yml as deployed.

Resolves Ref, Fn::Sub, Fn::GetAtt, Fn::If, Fn::Join, Fn::Split, Fn::FindInMap, Fn::Equals/Not/And/Or and AWS::NoValue for one set
of parameter values, so tests can compare the policies and variables a stack would really
get. Resources resolve to symbolic strings: ``Ref`` to ``ref:<LogicalId>`` and ``Fn::GetAtt``
to ``<attr>:<LogicalId>`` (e.g. ``Arn:Function``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yml"

ACCOUNT = "123456789012"
REGION = "eu-west-1"
STACK = "nightdump"

# The parameters a stack cannot be deployed without, with plausible values.
REQUIRED_PARAMS = {
    "BucketName": "acme-backups",
    "Prefix": "prod/mongo",
    "MongoDbSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:nightdump/mongo-AbC123",
    "AlertEmail": "ops@example.com",
    "CodeBucket": "acme-artifacts",
    "CodeKey": "nightdump/fn.zip",
}

_NO_VALUE = object()


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


class Stack:
    """The template evaluated with given parameter values (defaults fill the rest)."""

    def __init__(self, template: dict[str, Any], **params: str):
        self.template = template
        declared = template["Parameters"]
        unknown = set(params) - set(declared)
        if unknown:
            raise KeyError(f"template has no parameters {sorted(unknown)}")
        self.params: dict[str, str] = {}
        for name, spec in declared.items():
            if name in params:
                self.params[name] = str(params[name])
            elif "Default" in spec:
                self.params[name] = str(spec["Default"])
            else:
                raise KeyError(f"parameter {name} has no default: pass it")
        self.conditions: dict[str, bool] = {}
        for name in template.get("Conditions", {}):
            self.condition(name)

    # --- conditions -------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = self._cond(self.template["Conditions"][name])
        return self.conditions[name]

    def _cond(self, node: Any) -> bool:
        (fn, args), = node.items()
        if fn == "Fn::Equals":
            a, b = (self.resolve(x) for x in args)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not self._cond(args[0])
        if fn == "Fn::And":
            return all(self._cond(x) for x in args)
        if fn == "Fn::Or":
            return any(self._cond(x) for x in args)
        if fn == "Condition":
            return self.condition(args)
        raise ValueError(f"unsupported condition function {fn}")

    def exists(self, logical_id: str) -> bool:
        cond = self.template["Resources"][logical_id].get("Condition")
        return cond is None or self.condition(cond)

    # --- values -----------------------------------------------------------------------------

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": STACK,
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            if self.template["Parameters"][name]["Type"] == "CommaDelimitedList":
                return self.params[name].split(",") if self.params[name] else [""]
            return self.params[name]
        if name in self.template["Resources"]:
            if not self.exists(name):
                raise ValueError(f"Ref to {name}, which this configuration does not create")
            return f"ref:{name}"
        raise KeyError(f"Ref to unknown name {name}")

    def getatt(self, logical_id: str, attr: str) -> str:
        if logical_id not in self.template["Resources"]:
            raise KeyError(f"GetAtt of unknown resource {logical_id}")
        if not self.exists(logical_id):
            raise ValueError(f"GetAtt of {logical_id}, which this configuration does not create")
        return f"{attr}:{logical_id}"

    def sub(self, text: str, extra: dict[str, Any] | None = None) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if extra and name in extra:
                return str(self.resolve(extra[name]))
            if "." in name and not name.startswith("AWS::"):
                logical_id, attr = name.split(".", 1)
                return self.getatt(logical_id, attr)
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            out = [self.resolve(x) for x in node]
            return [x for x in out if x is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::GetAtt":
                logical_id, attr = value if isinstance(value, list) else value.split(".", 1)
                return self.getatt(logical_id, attr)
            if key == "Fn::Sub":
                if isinstance(value, list):
                    return self.sub(value[0], value[1])
                return self.sub(value)
            if key == "Fn::If":
                cond, yes, no = value
                return self.resolve(yes if self.condition(cond) else no)
            if key == "Fn::FindInMap":
                table, first, second = (self.resolve(x) for x in value)
                return self.template["Mappings"][table][first][second]
            if key == "Fn::Join":
                sep, parts = value
                return sep.join(str(p) for p in self.resolve(parts))
            if key == "Fn::Split":
                sep, text = value
                return str(self.resolve(text)).split(sep)
            if key.startswith("Fn::"):
                raise ValueError(f"unsupported intrinsic {key}")
        out = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not _NO_VALUE}

    # --- convenience ------------------------------------------------------------------------

    def resource(self, logical_id: str) -> dict[str, Any]:
        """The resource's Properties, resolved."""
        if not self.exists(logical_id):
            raise ValueError(f"{logical_id} is not created with these parameters")
        return self.resolve(self.template["Resources"][logical_id].get("Properties", {}))

    def resources_of_type(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: self.resource(logical_id)
            for logical_id, res in self.template["Resources"].items()
            if res["Type"] == type_name and self.exists(logical_id)
        }
