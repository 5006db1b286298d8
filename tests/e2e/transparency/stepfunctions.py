"""Step Functions scenarios: state machines (definitions, updates, tags, versions and aliases), executions
started, described and stopped, activities."""

from __future__ import annotations

import json
from typing import Any

from transparency.core import ACCOUNT, Context, Observations, Scenario, error_of

ROLE = f"arn:aws:iam::{ACCOUNT}:role/tp-sfn-role"


def definition(*states: str) -> str:
    """A chain of Pass states (the last one ends), as Amazon States Language."""
    body = {
        name: {
            "Type": "Pass",
            "Result": {"step": name},
            **({"Next": states[i + 1]} if i + 1 < len(states) else {"End": True}),
        }
        for i, name in enumerate(states)
    }
    return json.dumps({"Comment": "tp", "StartAt": states[0], "States": body})


def machine_arn(name: str) -> str:
    return f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:{name}"


def machine_state(sfn: Any, name: str) -> dict[str, Any]:
    arn = machine_arn(name)
    return {
        "machine": sfn.describe_state_machine(stateMachineArn=arn),
        "tags": sfn.list_tags_for_resource(resourceArn=arn)["tags"],
    }


class StateMachineDefinitions(Scenario):
    """An order workflow's definition: created with tags, updated to a longer chain, retagged, listed; an
    invalid name refused, and a second machine deleted."""

    name = "sfn-state-machines"
    service = "stepfunctions"

    def run(self, ctx: Context) -> Observations:
        sfn = ctx.client("stepfunctions")
        obs: Observations = {}
        obs["create"] = sfn.create_state_machine(
            name="tp-sfn-orders",
            definition=definition("Validate", "Charge"),
            roleArn=ROLE,
            tags=[{"key": "team", "value": "orders"}, {"key": "tmp", "value": "1"}],
        )
        arn = obs["create"]["stateMachineArn"]
        obs["update"] = sfn.update_state_machine(
            stateMachineArn=arn, definition=definition("Validate", "Charge", "Ship")
        )
        obs["tag"] = sfn.tag_resource(resourceArn=arn, tags=[{"key": "tier", "value": "gold"}])
        obs["untag"] = sfn.untag_resource(resourceArn=arn, tagKeys=["tmp"])
        obs["invalid"] = error_of(
            sfn.create_state_machine, name="tp sfn bad name!", definition=definition("A"), roleArn=ROLE
        )
        other = sfn.create_state_machine(name="tp-sfn-temporary", definition=definition("Only"), roleArn=ROLE)
        obs["delete"] = sfn.delete_state_machine(stateMachineArn=other["stateMachineArn"])
        obs["listed"] = sorted(
            m["name"] for m in sfn.list_state_machines()["stateMachines"] if m["name"].startswith("tp-sfn-orders")
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return machine_state(ctx.client("stepfunctions"), "tp-sfn-orders")


class Executions(Scenario):
    """Running a workflow: a named execution with input started (starting it again with the same input is
    idempotent), one with a generated name, one stopped with an error and cause; each described and listed."""

    name = "sfn-executions"
    service = "stepfunctions"

    def run(self, ctx: Context) -> Observations:
        sfn = ctx.client("stepfunctions")
        obs: Observations = {}
        arn = sfn.create_state_machine(name="tp-sfn-billing", definition=definition("Bill"), roleArn=ROLE)[
            "stateMachineArn"
        ]
        payload = json.dumps({"invoice": 42})
        obs["named"] = sfn.start_execution(stateMachineArn=arn, name="tp-sfn-invoice-42", input=payload)
        obs["again"] = sfn.start_execution(stateMachineArn=arn, name="tp-sfn-invoice-42", input=payload)
        obs["unnamed"] = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"invoice": 43}))
        obs["doomed"] = sfn.start_execution(stateMachineArn=arn, name="tp-sfn-invoice-44", input="{}")
        obs["stop"] = sfn.stop_execution(
            executionArn=obs["doomed"]["executionArn"], error="Cancelled", cause="customer asked"
        )
        obs["describe"] = [
            sfn.describe_execution(executionArn=obs[step]["executionArn"]) for step in ("named", "unnamed", "doomed")
        ]
        obs["machine of execution"] = sfn.describe_state_machine_for_execution(
            executionArn=obs["named"]["executionArn"]
        )
        obs["listed"] = sorted(sfn.list_executions(stateMachineArn=arn)["executions"], key=lambda e: e["startDate"])
        ctx.kept["executions"] = [obs[step]["executionArn"] for step in ("named", "unnamed", "doomed")]
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        sfn = ctx.client("stepfunctions")
        executions = sfn.list_executions(stateMachineArn=machine_arn("tp-sfn-billing"))["executions"]
        return {
            "machine": machine_state(sfn, "tp-sfn-billing"),
            "executions": sorted(executions, key=lambda e: e["executionArn"]),
            "described": [sfn.describe_execution(executionArn=arn) for arn in ctx.kept["executions"]],
        }


class VersionsAndAliases(Scenario):
    """Releasing a workflow: published at creation, updated and published again with a description, an alias
    routing between the two versions, then moved wholly to the second."""

    name = "sfn-versions-aliases"
    service = "stepfunctions"

    def run(self, ctx: Context) -> Observations:
        sfn = ctx.client("stepfunctions")
        obs: Observations = {}
        obs["create"] = sfn.create_state_machine(
            name="tp-sfn-shipping", definition=definition("Pack"), roleArn=ROLE, publish=True, versionDescription="v1"
        )
        arn = obs["create"]["stateMachineArn"]
        obs["update"] = sfn.update_state_machine(
            stateMachineArn=arn, definition=definition("Pack", "Label"), publish=True, versionDescription="v2"
        )
        first, second = obs["create"]["stateMachineVersionArn"], obs["update"]["stateMachineVersionArn"]
        obs["alias"] = sfn.create_state_machine_alias(
            name="live",
            description="production traffic",
            routingConfiguration=[
                {"stateMachineVersionArn": first, "weight": 90},
                {"stateMachineVersionArn": second, "weight": 10},
            ],
        )
        obs["move"] = sfn.update_state_machine_alias(
            stateMachineAliasArn=obs["alias"]["stateMachineAliasArn"],
            routingConfiguration=[{"stateMachineVersionArn": second, "weight": 100}],
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        sfn = ctx.client("stepfunctions")
        arn = machine_arn("tp-sfn-shipping")
        aliases = sfn.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]
        return {
            "machine": machine_state(sfn, "tp-sfn-shipping"),
            "versions": [sfn.describe_state_machine(stateMachineArn=f"{arn}:{n}") for n in (1, 2)],
            "aliases": [
                sfn.describe_state_machine_alias(stateMachineAliasArn=a["stateMachineAliasArn"]) for a in aliases
            ],
        }


class Activities(Scenario):
    """Activity workers' endpoints: activities created with tags, described and listed, one deleted; an
    unknown activity's error."""

    name = "sfn-activities"
    service = "stepfunctions"

    def run(self, ctx: Context) -> Observations:
        sfn = ctx.client("stepfunctions")
        obs: Observations = {}
        obs["approve"] = sfn.create_activity(name="tp-sfn-approve", tags=[{"key": "queue", "value": "humans"}])
        obs["review"] = sfn.create_activity(name="tp-sfn-review")
        obs["describe"] = sfn.describe_activity(activityArn=obs["approve"]["activityArn"])
        obs["delete"] = sfn.delete_activity(activityArn=obs["review"]["activityArn"])
        obs["unknown"] = error_of(
            sfn.describe_activity, activityArn=f"arn:aws:states:us-east-1:{ACCOUNT}:activity:tp-sfn-none"
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        sfn = ctx.client("stepfunctions")
        return sorted(
            (a for a in sfn.list_activities()["activities"] if a["name"].startswith("tp-sfn-")), key=lambda a: a["name"]
        )
