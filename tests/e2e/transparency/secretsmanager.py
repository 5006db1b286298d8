"""Secrets Manager scenarios: versions and staging labels, deletion and restore, tags and policies, rotation."""

from __future__ import annotations

import json
from typing import Any

from transparency.core import Context, Observations, Scenario, answer_or_error, error_of


def versions(secrets: Any, secret: str) -> list[dict[str, Any]]:
    """A secret's versions, sorted by id.  moto fills CreatedDate and LastAccessedDate of this listing with the
    time of the listing itself: not state, so left out."""
    listed = secrets.list_secret_version_ids(SecretId=secret, IncludeDeprecated=True)["Versions"]
    return sorted(
        ({k: v for k, v in version.items() if k not in ("CreatedDate", "LastAccessedDate")} for version in listed),
        key=lambda version: (sorted(version.get("VersionStages", [])), version["VersionId"]),
    )


def secret_state(secrets: Any, secret: str) -> dict[str, Any]:
    """A secret's description, its versions and the value of each."""
    listed = versions(secrets, secret)
    return {
        "describe": secrets.describe_secret(SecretId=secret),
        "versions": listed,
        "values": {
            v["VersionId"]: answer_or_error(secrets.get_secret_value, SecretId=secret, VersionId=v["VersionId"])
            for v in listed
        },
    }


class VersionsAndStages(Scenario):
    """A database password's history: created with a client token, new values put (string and binary), a
    custom staging label added and moved, values read by stage and by version, and a stale token refused."""

    name = "secrets-versions-stages"
    service = "secretsmanager"

    def run(self, ctx: Context) -> Observations:
        secrets = ctx.client("secretsmanager")
        obs: Observations = {}
        obs["create"] = secrets.create_secret(
            Name="tp-secrets-db-password",
            Description="primary database",
            SecretString=json.dumps({"user": "app", "password": "hunter2"}),
            ClientRequestToken="tp-secrets-token-000000000000000000001",
        )
        obs["second"] = secrets.put_secret_value(
            SecretId="tp-secrets-db-password",
            SecretString=json.dumps({"user": "app", "password": "correct horse"}),
            VersionStages=["AWSCURRENT", "BLUE"],
        )
        obs["binary"] = secrets.put_secret_value(
            SecretId="tp-secrets-db-password", SecretBinary=b"\x00\x01binary", VersionStages=["GREEN"]
        )
        obs["move label"] = secrets.update_secret_version_stage(
            SecretId="tp-secrets-db-password",
            VersionStage="BLUE",
            MoveToVersionId=obs["binary"]["VersionId"],
            RemoveFromVersionId=obs["second"]["VersionId"],
        )
        obs["current"] = secrets.get_secret_value(SecretId="tp-secrets-db-password")
        obs["previous"] = secrets.get_secret_value(SecretId="tp-secrets-db-password", VersionStage="AWSPREVIOUS")
        obs["blue"] = secrets.get_secret_value(SecretId="tp-secrets-db-password", VersionStage="BLUE")
        obs["reused token"] = error_of(
            secrets.put_secret_value,
            SecretId="tp-secrets-db-password",
            SecretString="different",
            ClientRequestToken="tp-secrets-token-000000000000000000001",
        )
        obs["describe"] = secrets.describe_secret(SecretId="tp-secrets-db-password")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return secret_state(ctx.client("secretsmanager"), "tp-secrets-db-password")


class DeleteAndRestore(Scenario):
    """Deletion with a recovery window: a deleted secret cannot be read, is restored and readable again;
    another is force-deleted without recovery and is gone; a third is left scheduled for deletion."""

    name = "secrets-delete-restore"
    service = "secretsmanager"

    def run(self, ctx: Context) -> Observations:
        secrets = ctx.client("secretsmanager")
        obs: Observations = {}
        for name in ("tp-secrets-api-key", "tp-secrets-legacy", "tp-secrets-retired"):
            secrets.create_secret(Name=name, SecretString=f"value of {name}")
        obs["delete"] = secrets.delete_secret(SecretId="tp-secrets-api-key", RecoveryWindowInDays=7)
        obs["read deleted"] = error_of(secrets.get_secret_value, SecretId="tp-secrets-api-key")
        obs["restore"] = secrets.restore_secret(SecretId="tp-secrets-api-key")
        obs["read restored"] = secrets.get_secret_value(SecretId="tp-secrets-api-key")
        obs["force"] = secrets.delete_secret(SecretId="tp-secrets-legacy", ForceDeleteWithoutRecovery=True)
        obs["gone"] = error_of(secrets.describe_secret, SecretId="tp-secrets-legacy")
        obs["schedule"] = secrets.delete_secret(SecretId="tp-secrets-retired", RecoveryWindowInDays=30)
        obs["listed"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        secrets = ctx.client("secretsmanager")
        listed = secrets.list_secrets(
            IncludePlannedDeletion=True, Filters=[{"Key": "name", "Values": ["tp-secrets-"]}]
        )["SecretList"]
        return sorted(
            (s for s in listed if s["Name"] in ("tp-secrets-api-key", "tp-secrets-legacy", "tp-secrets-retired")),
            key=lambda s: s["Name"],
        )


class TagsAndPolicy(Scenario):
    """A shared secret's metadata: tags added and removed, the description and KMS key changed, a resource
    policy put, read and validated, and a policy deleted from another secret."""

    name = "secrets-tags-policy"
    service = "secretsmanager"

    def run(self, ctx: Context) -> Observations:
        secrets = ctx.client("secretsmanager")
        obs: Observations = {}
        obs["create"] = secrets.create_secret(
            Name="tp-secrets/shared/token", SecretString="s3cr3t", Tags=[{"Key": "team", "Value": "platform"}]
        )
        obs["other"] = secrets.create_secret(Name="tp-secrets/shared/other", SecretString="x")
        obs["tag"] = secrets.tag_resource(
            SecretId="tp-secrets/shared/token", Tags=[{"Key": "env", "Value": "prod"}, {"Key": "tmp", "Value": "1"}]
        )
        obs["untag"] = secrets.untag_resource(SecretId="tp-secrets/shared/token", TagKeys=["tmp"])
        obs["update"] = secrets.update_secret(
            SecretId="tp-secrets/shared/token", Description="shared token", KmsKeyId="alias/aws/secretsmanager"
        )
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": "*",
                }
            ],
        }
        obs["policy"] = secrets.put_resource_policy(
            SecretId="tp-secrets/shared/token", ResourcePolicy=json.dumps(policy)
        )
        secrets.put_resource_policy(SecretId="tp-secrets/shared/other", ResourcePolicy=json.dumps(policy))
        obs["delete policy"] = secrets.delete_resource_policy(SecretId="tp-secrets/shared/other")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        secrets = ctx.client("secretsmanager")
        return {
            "token": secrets.describe_secret(SecretId="tp-secrets/shared/token"),
            "token policy": secrets.get_resource_policy(SecretId="tp-secrets/shared/token"),
            "other policy": secrets.get_resource_policy(SecretId="tp-secrets/shared/other"),
        }


class RotationWithoutLambda(Scenario):
    """Rotation bookkeeping without a rotation function: rotate_secret with rules and a client token (moto
    moves the labels itself, whatever it makes of them is compared), a new value put after it, the versions
    and their labels; a generated password (a read) has the length and character classes asked for."""

    name = "secrets-rotation"
    service = "secretsmanager"

    def run(self, ctx: Context) -> Observations:
        secrets = ctx.client("secretsmanager")
        obs: Observations = {}
        obs["create"] = secrets.create_secret(Name="tp-secrets-rotating", SecretString="v1")
        password = secrets.get_random_password(PasswordLength=24, ExcludePunctuation=True, RequireEachIncludedType=True)
        value = password.pop("RandomPassword")
        obs["random password"] = {
            **password,
            "length": len(value),
            "alphanumeric": value.isalnum(),
            "has digit": any(c.isdigit() for c in value),
        }
        obs["rotate"] = secrets.rotate_secret(
            SecretId="tp-secrets-rotating",
            ClientRequestToken="tp-secrets-rotation-00000000000000000002",
            RotationRules={"AutomaticallyAfterDays": 30},
        )
        obs["after rotation"] = answer_or_error(secrets.get_secret_value, SecretId="tp-secrets-rotating")
        obs["versions after rotation"] = versions(secrets, "tp-secrets-rotating")
        obs["put"] = secrets.put_secret_value(SecretId="tp-secrets-rotating", SecretString="v2")
        obs["current"] = secrets.get_secret_value(SecretId="tp-secrets-rotating")
        obs["previous"] = answer_or_error(
            secrets.get_secret_value, SecretId="tp-secrets-rotating", VersionStage="AWSPREVIOUS"
        )
        obs["describe"] = secrets.describe_secret(SecretId="tp-secrets-rotating")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return secret_state(ctx.client("secretsmanager"), "tp-secrets-rotating")
