"""STS scenarios: assuming a role in another account and working there, assuming a role of this account,
session and federation tokens."""

from __future__ import annotations

import json
from typing import Any

from transparency.core import ACCOUNT, OTHER_ACCOUNT, Context, Observations, Scenario

DEPLOYER = f"arn:aws:iam::{OTHER_ACCOUNT}:role/tp-sts-deployer"


def assume(ctx: Context, role: str, session: str) -> dict[str, Any]:
    answer: dict[str, Any] = ctx.client("sts").assume_role(RoleArn=role, RoleSessionName=session, DurationSeconds=3600)
    return answer


class CrossAccountQueue(Scenario):
    """A deployment into another account: AssumeRole of a role ARN in account 222222222222, the caller identity
    under those credentials, and an SQS queue created with them, which must live in 222222222222 (its URL and
    ARN say so) and not in the default account."""

    name = "sts-cross-account-queue"
    service = "sts"

    def run(self, ctx: Context) -> Observations:
        obs: Observations = {}
        obs["assume"] = assume(ctx, DEPLOYER, "tp-sts-deploy")
        credentials = obs["assume"]["Credentials"]
        obs["identity"] = ctx.client_as("sts", credentials).get_caller_identity()
        sqs = ctx.client_as("sqs", credentials)
        obs["create"] = sqs.create_queue(QueueName="tp-sts-cross-account", tags={"deployed-by": "tp-sts"})
        obs["attributes"] = sqs.get_queue_attributes(QueueUrl=obs["create"]["QueueUrl"], AttributeNames=["QueueArn"])
        obs["in the default account"] = (
            ctx.client("sqs").list_queues(QueueNamePrefix="tp-sts-cross").get("QueueUrls", [])
        )
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        # AssumeRole is a read: assuming the role again to look into the other account changes no state
        credentials = assume(ctx, DEPLOYER, "tp-sts-inspect")["Credentials"]
        other = ctx.client_as("sqs", credentials)
        urls = other.list_queues(QueueNamePrefix="tp-sts-cross").get("QueueUrls", [])
        return {
            "in the default account": ctx.client("sqs")
            .list_queues(QueueNamePrefix="tp-sts-cross")
            .get("QueueUrls", []),
            "in 222222222222": {
                url: other.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"] for url in urls
            },
        }


class SameAccountRole(Scenario):
    """A role of this account assumed by an application: the role created with a trust policy, assumed with
    session tags and an inline session policy, the caller identity, and an SSM parameter written with the
    assumed credentials."""

    name = "sts-same-account-role"
    service = "sts"

    def run(self, ctx: Context) -> Observations:
        iam = ctx.client("iam")
        obs: Observations = {}
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
            ],
        }
        obs["role"] = iam.create_role(RoleName="tp-sts-app", AssumeRolePolicyDocument=json.dumps(trust))
        session_policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}],
        }
        obs["assume"] = ctx.client("sts").assume_role(
            RoleArn=obs["role"]["Role"]["Arn"],
            RoleSessionName="tp-sts-app-session",
            Tags=[{"Key": "project", "Value": "tp"}],
            Policy=json.dumps(session_policy),
            DurationSeconds=900,
        )
        credentials = obs["assume"]["Credentials"]
        obs["identity"] = ctx.client_as("sts", credentials).get_caller_identity()
        ssm = ctx.client_as("ssm", credentials)
        obs["put"] = ssm.put_parameter(Name="/tp-sts/written-by-role", Value="hello", Type="String")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return {
            "role": ctx.client("iam").get_role(RoleName="tp-sts-app")["Role"],
            "parameter": ctx.client("ssm").get_parameter(Name="/tp-sts/written-by-role")["Parameter"],
        }


class TokensAndIdentities(Scenario):
    """Temporary credentials of every kind: the caller identity of the default credentials, a session token,
    a federation token with a policy, and a web-identity role session, each with its identity where it has
    one (all reads: nothing is stored)."""

    name = "sts-tokens"
    service = "sts"

    def run(self, ctx: Context) -> Observations:
        sts = ctx.client("sts")
        obs: Observations = {}
        obs["me"] = sts.get_caller_identity()
        obs["session"] = sts.get_session_token(DurationSeconds=1800)
        obs["session identity"] = ctx.client_as("sts", obs["session"]["Credentials"]).get_caller_identity()
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
        }
        obs["federation"] = sts.get_federation_token(
            Name="tp-sts-partner", Policy=json.dumps(policy), DurationSeconds=1800
        )
        obs["web identity"] = sts.assume_role_with_web_identity(
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/tp-sts-mobile",
            RoleSessionName="tp-sts-phone",
            WebIdentityToken="tp-sts-token-from-an-identity-provider",
        )
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return ctx.client("sts").get_caller_identity()
