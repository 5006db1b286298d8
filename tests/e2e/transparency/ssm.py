"""SSM scenarios: parameters (versions, labels, hierarchies, secure strings, tiers and tags), documents,
maintenance windows and patch baselines."""

from __future__ import annotations

import json
from typing import Any

from transparency.core import Context, Observations, Scenario, error_of


def parameters_under(ssm: Any, path: str) -> list[dict[str, Any]]:
    """Every parameter under ``path`` (recursively, decrypted), sorted by name, all pages."""
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Path": path, "Recursive": True, "WithDecryption": True}
    while True:
        page = ssm.get_parameters_by_path(**kwargs)
        found.extend(page["Parameters"])
        if not page.get("NextToken"):
            return sorted(found, key=lambda p: p["Name"])
        kwargs["NextToken"] = page["NextToken"]


def described(ssm: Any, prefix: str) -> list[dict[str, Any]]:
    """describe_parameters for names beginning with ``prefix``, sorted by name, all pages."""
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ParameterFilters": [{"Key": "Name", "Option": "BeginsWith", "Values": [prefix]}]}
    while True:
        page = ssm.describe_parameters(**kwargs)
        found.extend(page["Parameters"])
        if not page.get("NextToken"):
            return sorted(found, key=lambda p: p["Name"])
        kwargs["NextToken"] = page["NextToken"]


class ParameterVersions(Scenario):
    """A feature flag's history: a parameter overwritten twice, labels attached to versions and one moved,
    a label removed, reads by version and by label, the history, and a put without Overwrite refused."""

    name = "ssm-parameter-versions"
    service = "ssm"

    def run(self, ctx: Context) -> Observations:
        ssm = ctx.client("ssm")
        obs: Observations = {}
        obs["put"] = ssm.put_parameter(Name="/tp-ssm/flags/checkout", Value="off", Type="String", Description="flag")
        obs["overwrite"] = ssm.put_parameter(Name="/tp-ssm/flags/checkout", Value="beta", Type="String", Overwrite=True)
        obs["again"] = ssm.put_parameter(Name="/tp-ssm/flags/checkout", Value="on", Type="String", Overwrite=True)
        obs["refused"] = error_of(ssm.put_parameter, Name="/tp-ssm/flags/checkout", Value="x", Type="String")
        obs["label"] = ssm.label_parameter_version(
            Name="/tp-ssm/flags/checkout", ParameterVersion=1, Labels=["stable", "old"]
        )
        obs["move label"] = ssm.label_parameter_version(
            Name="/tp-ssm/flags/checkout", ParameterVersion=3, Labels=["stable"]
        )
        obs["unlabel"] = ssm.unlabel_parameter_version(
            Name="/tp-ssm/flags/checkout", ParameterVersion=1, Labels=["old"]
        )
        obs["by version"] = ssm.get_parameter(Name="/tp-ssm/flags/checkout:2")
        obs["by label"] = ssm.get_parameter(Name="/tp-ssm/flags/checkout:stable")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ssm = ctx.client("ssm")
        return {
            "history": ssm.get_parameter_history(Name="/tp-ssm/flags/checkout")["Parameters"],
            "current": ssm.get_parameter(Name="/tp-ssm/flags/checkout")["Parameter"],
        }


class ParameterHierarchy(Scenario):
    """An application's configuration tree: parameters at several depths, a recursive and a one-level read by
    path, a read with a type filter, a multi-get naming a missing parameter, and a batch delete."""

    name = "ssm-parameter-hierarchy"
    service = "ssm"

    def run(self, ctx: Context) -> Observations:
        ssm = ctx.client("ssm")
        obs: Observations = {}
        tree = {
            "/tp-ssm/shop/db/host": ("db.internal", "String"),
            "/tp-ssm/shop/db/port": ("5432", "String"),
            "/tp-ssm/shop/db/replicas": ("db-1,db-2", "StringList"),
            "/tp-ssm/shop/cache/host": ("cache.internal", "String"),
            "/tp-ssm/shop/name": ("shop", "String"),
            "/tp-ssm/shop/old/one": ("1", "String"),
            "/tp-ssm/shop/old/two": ("2", "String"),
        }
        for name, (value, kind) in tree.items():
            ssm.put_parameter(Name=name, Value=value, Type=kind)
        obs["recursive"] = parameters_under(ssm, "/tp-ssm/shop")
        obs["one level"] = ssm.get_parameters_by_path(Path="/tp-ssm/shop/db")
        obs["lists only"] = ssm.get_parameters_by_path(
            Path="/tp-ssm/shop", Recursive=True, ParameterFilters=[{"Key": "Type", "Values": ["StringList"]}]
        )
        multi = ssm.get_parameters(Names=["/tp-ssm/shop/name", "/tp-ssm/shop/db/port", "/tp-ssm/shop/none"])
        obs["multi"] = {**multi, "Parameters": sorted(multi["Parameters"], key=lambda p: p["Name"])}
        obs["delete"] = ssm.delete_parameters(
            Names=["/tp-ssm/shop/old/one", "/tp-ssm/shop/old/two", "/tp-ssm/shop/old/three"]
        )
        obs["delete missing"] = error_of(ssm.delete_parameter, Name="/tp-ssm/shop/old/one")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ssm = ctx.client("ssm")
        return {"parameters": parameters_under(ssm, "/tp-ssm/shop"), "described": described(ssm, "/tp-ssm/shop")}


class SecureStrings(Scenario):
    """Secrets kept as SecureString: one with the default key, one with a customer managed KMS key named by
    alias; reads with and without decryption, and an overwrite changing the key."""

    name = "ssm-secure-strings"
    service = "ssm"

    def run(self, ctx: Context) -> Observations:
        ssm, kms = ctx.client("ssm"), ctx.client("kms")
        obs: Observations = {}
        key = kms.create_key(Description="tp-ssm-params")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/tp-ssm-params", TargetKeyId=key)
        obs["default key"] = ssm.put_parameter(Name="/tp-ssm/secure/api-token", Value="tok-123", Type="SecureString")
        obs["own key"] = ssm.put_parameter(
            Name="/tp-ssm/secure/db-password", Value="pa55word", Type="SecureString", KeyId="alias/tp-ssm-params"
        )
        obs["encrypted"] = ssm.get_parameter(Name="/tp-ssm/secure/db-password")
        obs["decrypted"] = ssm.get_parameter(Name="/tp-ssm/secure/db-password", WithDecryption=True)
        obs["rekey"] = ssm.put_parameter(
            Name="/tp-ssm/secure/api-token",
            Value="tok-456",
            Type="SecureString",
            KeyId="alias/tp-ssm-params",
            Overwrite=True,
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ssm = ctx.client("ssm")
        return {
            "decrypted": parameters_under(ssm, "/tp-ssm/secure"),
            "raw": sorted(
                ssm.get_parameters(Names=["/tp-ssm/secure/api-token", "/tp-ssm/secure/db-password"])["Parameters"],
                key=lambda p: p["Name"],
            ),
            "described": described(ssm, "/tp-ssm/secure"),
        }


class TiersTagsAndPatterns(Scenario):
    """Parameter metadata: an Advanced-tier parameter with an expiration policy, one with an allowed pattern
    and tags, tags added and removed, an overwrite that passes tags and a reserved name refused, and the
    descriptions of all of them."""

    name = "ssm-tiers-tags"
    service = "ssm"

    def run(self, ctx: Context) -> Observations:
        ssm = ctx.client("ssm")
        obs: Observations = {}
        policies = [{"Type": "Expiration", "Version": "1.0", "Attributes": {"Timestamp": "2099-01-01T00:00:00.000Z"}}]
        obs["advanced"] = ssm.put_parameter(
            Name="/tp-ssm/meta/big", Value="x" * 5000, Type="String", Tier="Advanced", Policies=json.dumps(policies)
        )
        obs["patterned"] = ssm.put_parameter(
            Name="/tp-ssm/meta/port",
            Value="8080",
            Type="String",
            AllowedPattern=r"^\d+$",
            Tags=[{"Key": "owner", "Value": "net"}],
        )
        obs["overwrite with tags"] = error_of(
            ssm.put_parameter,
            Name="/tp-ssm/meta/port",
            Value="8081",
            Type="String",
            Overwrite=True,
            Tags=[{"Key": "owner", "Value": "web"}],
        )
        obs["reserved prefix"] = error_of(ssm.put_parameter, Name="/aws/tp-ssm/meta", Value="1", Type="String")
        obs["tag"] = ssm.add_tags_to_resource(
            ResourceType="Parameter",
            ResourceId="/tp-ssm/meta/port",
            Tags=[{"Key": "env", "Value": "prod"}, {"Key": "tmp", "Value": "1"}],
        )
        obs["untag"] = ssm.remove_tags_from_resource(
            ResourceType="Parameter", ResourceId="/tp-ssm/meta/port", TagKeys=["tmp"]
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ssm = ctx.client("ssm")
        return {
            "described": described(ssm, "/tp-ssm/meta"),
            "tags": ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/tp-ssm/meta/port")["TagList"],
            "big": ssm.get_parameter(Name="/tp-ssm/meta/big")["Parameter"],
        }


class Documents(Scenario):
    """A Command document: created, updated to a second version, the default version moved to it, shared with
    another account, described and read by version; a duplicate name refused."""

    name = "ssm-documents"
    service = "ssm"

    def run(self, ctx: Context) -> Observations:
        ssm = ctx.client("ssm")
        obs: Observations = {}

        def content(command: str) -> str:
            return json.dumps(
                {
                    "schemaVersion": "2.2",
                    "description": "restart the app",
                    "mainSteps": [
                        {"action": "aws:runShellScript", "name": "restart", "inputs": {"runCommand": [command]}}
                    ],
                }
            )

        obs["create"] = ssm.create_document(
            Name="tp-ssm-restart",
            Content=content("systemctl restart app"),
            DocumentType="Command",
            DocumentFormat="JSON",
            Tags=[{"Key": "team", "Value": "ops"}],
        )
        obs["duplicate"] = error_of(
            ssm.create_document, Name="tp-ssm-restart", Content=content("x"), DocumentType="Command"
        )
        obs["update"] = ssm.update_document(
            Name="tp-ssm-restart", Content=content("systemctl restart app --now"), DocumentVersion="$LATEST"
        )
        obs["default"] = ssm.update_document_default_version(Name="tp-ssm-restart", DocumentVersion="2")
        obs["share"] = ssm.modify_document_permission(
            Name="tp-ssm-restart", PermissionType="Share", AccountIdsToAdd=["111122223333"]
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ssm = ctx.client("ssm")
        return {
            "describe": ssm.describe_document(Name="tp-ssm-restart")["Document"],
            "v1": ssm.get_document(Name="tp-ssm-restart", DocumentVersion="1"),
            "default": ssm.get_document(Name="tp-ssm-restart"),
            "permission": ssm.describe_document_permission(Name="tp-ssm-restart", PermissionType="Share"),
        }


class MaintenanceAndPatching(Scenario):
    """Patch management: a maintenance window with a target and a run-command task, a second window deleted,
    a patch baseline with an approval rule registered for a patch group."""

    name = "ssm-maintenance-patching"
    service = "ssm"

    def run(self, ctx: Context) -> Observations:
        ssm = ctx.client("ssm")
        obs: Observations = {}
        obs["window"] = ssm.create_maintenance_window(
            Name="tp-ssm-sunday",
            Schedule="cron(0 3 ? * SUN *)",
            Duration=3,
            Cutoff=1,
            AllowUnassociatedTargets=False,
            Tags=[{"Key": "tp", "Value": "ssm"}],
        )
        window = obs["window"]["WindowId"]
        obs["target"] = ssm.register_target_with_maintenance_window(
            WindowId=window,
            ResourceType="INSTANCE",
            Targets=[{"Key": "tag:Role", "Values": ["web"]}],
            Name="web-servers",
        )
        obs["task"] = ssm.register_task_with_maintenance_window(
            WindowId=window,
            Targets=[{"Key": "WindowTargetIds", "Values": [obs["target"]["WindowTargetId"]]}],
            TaskArn="AWS-RunPatchBaseline",
            TaskType="RUN_COMMAND",
            MaxConcurrency="1",
            MaxErrors="1",
            Name="patch",
        )
        spare = ssm.create_maintenance_window(
            Name="tp-ssm-spare", Schedule="rate(7 days)", Duration=1, Cutoff=0, AllowUnassociatedTargets=True
        )
        obs["delete"] = ssm.delete_maintenance_window(WindowId=spare["WindowId"])
        obs["baseline"] = ssm.create_patch_baseline(
            Name="tp-ssm-baseline",
            OperatingSystem="AMAZON_LINUX_2",
            ApprovalRules={
                "PatchRules": [
                    {
                        "PatchFilterGroup": {"PatchFilters": [{"Key": "CLASSIFICATION", "Values": ["Security"]}]},
                        "ApproveAfterDays": 7,
                    }
                ]
            },
            Description="security patches after a week",
        )
        obs["group"] = ssm.register_patch_baseline_for_patch_group(
            BaselineId=obs["baseline"]["BaselineId"], PatchGroup="tp-ssm-web"
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ssm = ctx.client("ssm")
        windows = ssm.describe_maintenance_windows(
            Filters=[{"Key": "Name", "Values": ["tp-ssm-sunday", "tp-ssm-spare"]}]
        )
        [window] = windows["WindowIdentities"]
        return {
            "windows": windows["WindowIdentities"],
            "window": ssm.get_maintenance_window(WindowId=window["WindowId"]),
            "targets": ssm.describe_maintenance_window_targets(WindowId=window["WindowId"])["Targets"],
            "tasks": ssm.describe_maintenance_window_tasks(WindowId=window["WindowId"])["Tasks"],
            "baselines": ssm.describe_patch_baselines(Filters=[{"Key": "NAME_PREFIX", "Values": ["tp-ssm-"]}])[
                "BaselineIdentities"
            ],
            "patch group": ssm.get_patch_baseline_for_patch_group(
                PatchGroup="tp-ssm-web", OperatingSystem="AMAZON_LINUX_2"
            ),
        }
