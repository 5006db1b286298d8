"""Lambda scenarios (metadata only: functions are never invoked, there is no docker here): functions from
in-memory zips, configuration updates, versions and aliases, code updates, permissions and tags, concurrency,
event source mappings, layers."""

from __future__ import annotations

import json
from typing import Any

from transparency.core import ACCOUNT, Context, Observations, Scenario, error_of, lambda_zip

HANDLER = "def handler(event, context):\n    return {'ok': True, 'event': event}\n"


def execution_role(ctx: Context, name: str) -> str:
    """An IAM role Lambda may assume, made for one scenario; its ARN."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam = ctx.client("iam")
    return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])


def create_function(ctx: Context, name: str, role: str, **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = ctx.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": lambda_zip(HANDLER)},
        **extra,
    )
    return answer


def function_state(lam: Any, name: str) -> dict[str, Any]:
    """A function's configuration (without the presigned code location), versions, aliases and tags."""
    got = lam.get_function(FunctionName=name)
    return {
        "configuration": got["Configuration"],
        "code type": got["Code"].get("RepositoryType"),
        "tags": got.get("Tags", {}),
        "versions": lam.list_versions_by_function(FunctionName=name)["Versions"],
        "aliases": lam.list_aliases(FunctionName=name)["Aliases"],
    }


class FunctionConfiguration(Scenario):
    """A function created from an in-memory zip with environment, memory and timeout; its configuration
    updated twice (environment, memory, description, tracing) and read back; an unknown function's error."""

    name = "lambda-configuration"
    service = "lambda"

    def run(self, ctx: Context) -> Observations:
        lam = ctx.client("lambda")
        obs: Observations = {}
        role = execution_role(ctx, "tp-lambda-config-role")
        obs["create"] = create_function(
            ctx,
            "tp-lambda-thumbnailer",
            role,
            Description="makes thumbnails",
            Timeout=30,
            MemorySize=256,
            Environment={"Variables": {"BUCKET": "tp-images", "SIZE": "128"}},
            Tags={"app": "images"},
        )
        obs["update"] = lam.update_function_configuration(
            FunctionName="tp-lambda-thumbnailer",
            MemorySize=512,
            Environment={"Variables": {"BUCKET": "tp-images", "SIZE": "256", "FORMAT": "webp"}},
        )
        obs["update 2"] = lam.update_function_configuration(
            FunctionName="tp-lambda-thumbnailer",
            Description="makes thumbnails (webp)",
            Timeout=60,
            TracingConfig={"Mode": "Active"},
        )
        obs["configuration"] = lam.get_function_configuration(FunctionName="tp-lambda-thumbnailer")
        obs["missing"] = error_of(lam.get_function, FunctionName="tp-lambda-nothing")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return function_state(ctx.client("lambda"), "tp-lambda-thumbnailer")


class VersionsAndAliases(Scenario):
    """Releases of a function: versions published after configuration changes, a live alias pointing at one
    with weighted routing to the next, the alias moved, and a beta alias deleted."""

    name = "lambda-versions-aliases"
    service = "lambda"

    def run(self, ctx: Context) -> Observations:
        lam = ctx.client("lambda")
        obs: Observations = {}
        role = execution_role(ctx, "tp-lambda-release-role")
        create_function(ctx, "tp-lambda-checkout", role, Environment={"Variables": {"STAGE": "1"}})
        obs["v1"] = lam.publish_version(FunctionName="tp-lambda-checkout", Description="first release")
        lam.update_function_configuration(FunctionName="tp-lambda-checkout", Environment={"Variables": {"STAGE": "2"}})
        obs["v2"] = lam.publish_version(FunctionName="tp-lambda-checkout", Description="second release")
        obs["live"] = lam.create_alias(
            FunctionName="tp-lambda-checkout",
            Name="live",
            FunctionVersion="1",
            Description="production",
            RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
        )
        obs["beta"] = lam.create_alias(FunctionName="tp-lambda-checkout", Name="beta", FunctionVersion="2")
        obs["promote"] = lam.update_alias(
            FunctionName="tp-lambda-checkout",
            Name="live",
            FunctionVersion="2",
            RoutingConfig={"AdditionalVersionWeights": {}},
        )
        obs["drop beta"] = lam.delete_alias(FunctionName="tp-lambda-checkout", Name="beta")
        obs["by alias"] = lam.get_function_configuration(FunctionName="tp-lambda-checkout", Qualifier="live")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return function_state(ctx.client("lambda"), "tp-lambda-checkout")


class CodeUpdates(Scenario):
    """A deployment pipeline: the code replaced by a new zip and published in one call, then replaced again
    without publishing; code hashes and sizes follow the zips, and the published version keeps its code."""

    name = "lambda-code-updates"
    service = "lambda"

    def run(self, ctx: Context) -> Observations:
        lam = ctx.client("lambda")
        obs: Observations = {}
        role = execution_role(ctx, "tp-lambda-deploy-role")
        obs["create"] = create_function(ctx, "tp-lambda-api", role)
        obs["deploy"] = lam.update_function_code(
            FunctionName="tp-lambda-api", ZipFile=lambda_zip(HANDLER.replace("True", "'v2'")), Publish=True
        )
        obs["hotfix"] = lam.update_function_code(
            FunctionName="tp-lambda-api", ZipFile=lambda_zip(HANDLER.replace("True", "'v2.1'"))
        )
        obs["published"] = lam.get_function_configuration(FunctionName="tp-lambda-api", Qualifier="1")
        obs["latest"] = lam.get_function_configuration(FunctionName="tp-lambda-api")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        lam = ctx.client("lambda")
        return {
            **function_state(lam, "tp-lambda-api"),
            "published": lam.get_function_configuration(FunctionName="tp-lambda-api", Qualifier="1"),
        }


class PermissionsAndTags(Scenario):
    """Who may invoke a function: permissions for S3 and SNS with source ARNs, one removed (and removing it
    twice fails), the resulting policy; tags added and removed by ARN."""

    name = "lambda-permissions-tags"
    service = "lambda"

    def run(self, ctx: Context) -> Observations:
        lam = ctx.client("lambda")
        obs: Observations = {}
        role = execution_role(ctx, "tp-lambda-hooks-role")
        arn = create_function(ctx, "tp-lambda-hooks", role)["FunctionArn"]
        obs["s3"] = lam.add_permission(
            FunctionName="tp-lambda-hooks",
            StatementId="s3-uploads",
            Action="lambda:InvokeFunction",
            Principal="s3.amazonaws.com",
            SourceArn="arn:aws:s3:::tp-lambda-uploads",
            SourceAccount=ACCOUNT,
        )
        obs["sns"] = lam.add_permission(
            FunctionName="tp-lambda-hooks",
            StatementId="sns-alerts",
            Action="lambda:InvokeFunction",
            Principal="sns.amazonaws.com",
            SourceArn=f"arn:aws:sns:us-east-1:{ACCOUNT}:tp-lambda-alerts",
        )
        obs["remove"] = lam.remove_permission(FunctionName="tp-lambda-hooks", StatementId="sns-alerts")
        obs["remove again"] = error_of(lam.remove_permission, FunctionName="tp-lambda-hooks", StatementId="sns-alerts")
        obs["tag"] = lam.tag_resource(Resource=arn, Tags={"owner": "hooks", "tmp": "1"})
        obs["untag"] = lam.untag_resource(Resource=arn, TagKeys=["tmp"])
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        lam = ctx.client("lambda")
        arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:tp-lambda-hooks"
        return {
            "policy": json.loads(lam.get_policy(FunctionName="tp-lambda-hooks")["Policy"]),
            "tags": lam.list_tags(Resource=arn)["Tags"],
        }


class ConcurrencyAndEventSources(Scenario):
    """A queue worker: reserved concurrency set and changed, an SQS event source mapping created with a batch
    size, disabled by an update, and a second mapping deleted."""

    name = "lambda-concurrency-events"
    service = "lambda"

    def run(self, ctx: Context) -> Observations:
        lam, sqs = ctx.client("lambda"), ctx.client("sqs")
        obs: Observations = {}
        role = execution_role(ctx, "tp-lambda-worker-role")
        create_function(ctx, "tp-lambda-worker", role, Timeout=120)
        for name in ("tp-lambda-jobs", "tp-lambda-spare"):
            sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "720"})
        obs["reserve"] = lam.put_function_concurrency(FunctionName="tp-lambda-worker", ReservedConcurrentExecutions=5)
        obs["reserve more"] = lam.put_function_concurrency(
            FunctionName="tp-lambda-worker", ReservedConcurrentExecutions=8
        )
        obs["mapping"] = lam.create_event_source_mapping(
            FunctionName="tp-lambda-worker",
            EventSourceArn=f"arn:aws:sqs:us-east-1:{ACCOUNT}:tp-lambda-jobs",
            BatchSize=5,
        )
        spare = lam.create_event_source_mapping(
            FunctionName="tp-lambda-worker", EventSourceArn=f"arn:aws:sqs:us-east-1:{ACCOUNT}:tp-lambda-spare"
        )
        obs["disable"] = lam.update_event_source_mapping(UUID=obs["mapping"]["UUID"], Enabled=False, BatchSize=10)
        obs["delete"] = lam.delete_event_source_mapping(UUID=spare["UUID"])
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        lam = ctx.client("lambda")
        mappings = lam.list_event_source_mappings(FunctionName="tp-lambda-worker")["EventSourceMappings"]
        return {
            "concurrency": lam.get_function_concurrency(FunctionName="tp-lambda-worker"),
            "mappings": sorted(mappings, key=lambda m: m["EventSourceArn"]),
        }


class Layers(Scenario):
    """Shared code as layers: two versions of a layer published from zips, the function configured to use the
    second, one layer version deleted, and the listings."""

    name = "lambda-layers"
    service = "lambda"

    def run(self, ctx: Context) -> Observations:
        lam = ctx.client("lambda")
        obs: Observations = {}
        obs["v1"] = lam.publish_layer_version(
            LayerName="tp-lambda-utils",
            Description="helpers",
            Content={"ZipFile": lambda_zip("X = 1\n", "python/utils.py")},
            CompatibleRuntimes=["python3.12"],
        )
        obs["v2"] = lam.publish_layer_version(
            LayerName="tp-lambda-utils",
            Description="helpers, faster",
            Content={"ZipFile": lambda_zip("X = 2\n", "python/utils.py")},
            CompatibleRuntimes=["python3.12"],
            LicenseInfo="MIT",
        )
        role = execution_role(ctx, "tp-lambda-layered-role")
        obs["function"] = create_function(ctx, "tp-lambda-layered", role, Layers=[obs["v1"]["LayerVersionArn"]])
        obs["use v2"] = lam.update_function_configuration(
            FunctionName="tp-lambda-layered", Layers=[obs["v2"]["LayerVersionArn"]]
        )
        obs["delete v1"] = lam.delete_layer_version(LayerName="tp-lambda-utils", VersionNumber=1)
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        lam = ctx.client("lambda")
        return {
            "versions": lam.list_layer_versions(LayerName="tp-lambda-utils")["LayerVersions"],
            "function layers": lam.get_function_configuration(FunctionName="tp-lambda-layered").get("Layers"),
        }
