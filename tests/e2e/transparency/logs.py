"""CloudWatch Logs scenarios: groups, streams and events, retention and metric filters, filtering, subscriptions
and destinations, deletions."""

from __future__ import annotations

import json
import time
from typing import Any

from transparency.core import ACCOUNT, Context, Observations, Scenario, error_of

MINUTE_MS = 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


def group_state(logs: Any, group: str) -> dict[str, Any]:
    """A log group's description, tags, streams and every event of each stream."""
    [described] = [
        g for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] if g["logGroupName"] == group
    ]
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    return {
        "group": described,
        "tags": logs.list_tags_log_group(logGroupName=group)["tags"],
        "streams": streams,
        "events": {
            s["logStreamName"]: logs.get_log_events(
                logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True
            )["events"]
            for s in streams
        },
    }


class GroupsStreamsEvents(Scenario):
    """An application's logs: a group with tags and two streams, batches of events put (one event too old and
    rejected), events read from the head and from the tail, and the streams' first and last event times."""

    name = "logs-events"
    service = "logs"

    def run(self, ctx: Context) -> Observations:
        logs = ctx.client("logs")
        obs: Observations = {}
        obs["group"] = logs.create_log_group(logGroupName="/tp-logs/app", tags={"app": "shop"})
        for stream in ("web-1", "web-2"):
            logs.create_log_stream(logGroupName="/tp-logs/app", logStreamName=stream)
        base = now_ms() - 10 * MINUTE_MS
        obs["put"] = logs.put_log_events(
            logGroupName="/tp-logs/app",
            logStreamName="web-1",
            logEvents=[
                {"timestamp": base - 20 * 24 * 60 * MINUTE_MS, "message": "ancient"},
                *({"timestamp": base + n * 1000, "message": f"GET /item/{n} 200"} for n in range(5)),
            ],
        )
        obs["put 2"] = logs.put_log_events(
            logGroupName="/tp-logs/app",
            logStreamName="web-2",
            logEvents=[
                {"timestamp": base + n * 1000, "message": f"POST /cart {500 if n == 2 else 201}"} for n in range(3)
            ],
        )
        obs["head"] = logs.get_log_events(
            logGroupName="/tp-logs/app", logStreamName="web-1", startFromHead=True, limit=2
        )
        obs["tail"] = logs.get_log_events(logGroupName="/tp-logs/app", logStreamName="web-1", limit=2)
        obs["missing stream"] = error_of(
            logs.put_log_events,
            logGroupName="/tp-logs/app",
            logStreamName="web-9",
            logEvents=[{"timestamp": base, "message": "lost"}],
        )
        obs["duplicate group"] = error_of(logs.create_log_group, logGroupName="/tp-logs/app")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return group_state(ctx.client("logs"), "/tp-logs/app")


class RetentionAndMetricFilters(Scenario):
    """Operational settings of a group: retention set then changed (a missing group's refused), tags changed,
    metric filters (a space-delimited and a JSON pattern), one deleted, and the filters described."""

    name = "logs-retention-metrics"
    service = "logs"

    def run(self, ctx: Context) -> Observations:
        logs = ctx.client("logs")
        obs: Observations = {}
        logs.create_log_group(logGroupName="/tp-logs/api")
        obs["retention"] = logs.put_retention_policy(logGroupName="/tp-logs/api", retentionInDays=30)
        obs["retention again"] = logs.put_retention_policy(logGroupName="/tp-logs/api", retentionInDays=90)
        obs["missing group"] = error_of(logs.put_retention_policy, logGroupName="/tp-logs/none", retentionInDays=30)
        obs["tag"] = logs.tag_log_group(logGroupName="/tp-logs/api", tags={"owner": "api", "tmp": "1"})
        obs["untag"] = logs.untag_log_group(logGroupName="/tp-logs/api", tags=["tmp"])
        obs["errors filter"] = logs.put_metric_filter(
            logGroupName="/tp-logs/api",
            filterName="tp-logs-5xx",
            filterPattern="[ip, user, status=5*, size]",
            metricTransformations=[
                {"metricName": "ServerErrors", "metricNamespace": "TP/Api", "metricValue": "1", "defaultValue": 0.0}
            ],
        )
        obs["latency filter"] = logs.put_metric_filter(
            logGroupName="/tp-logs/api",
            filterName="tp-logs-latency",
            filterPattern="{ $.latency > 0 }",
            metricTransformations=[{"metricName": "Latency", "metricNamespace": "TP/Api", "metricValue": "$.latency"}],
        )
        logs.put_metric_filter(
            logGroupName="/tp-logs/api",
            filterName="tp-logs-old",
            filterPattern="OLD",
            metricTransformations=[{"metricName": "Old", "metricNamespace": "TP/Api", "metricValue": "1"}],
        )
        obs["delete filter"] = logs.delete_metric_filter(logGroupName="/tp-logs/api", filterName="tp-logs-old")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        logs = ctx.client("logs")
        return {
            **group_state(logs, "/tp-logs/api"),
            "filters": logs.describe_metric_filters(logGroupName="/tp-logs/api")["metricFilters"],
        }


class FilteringEvents(Scenario):
    """Searching logs: events in three streams filtered by a term, by a JSON pattern, and limited to some
    streams and a time window; the matches and searched streams are compared."""

    name = "logs-filtering"
    service = "logs"

    def run(self, ctx: Context) -> Observations:
        logs = ctx.client("logs")
        obs: Observations = {}
        logs.create_log_group(logGroupName="/tp-logs/jobs")
        base = now_ms() - 30 * MINUTE_MS
        for number, stream in enumerate(("worker-a", "worker-b", "cron")):
            logs.create_log_stream(logGroupName="/tp-logs/jobs", logStreamName=stream)
            logs.put_log_events(
                logGroupName="/tp-logs/jobs",
                logStreamName=stream,
                logEvents=[
                    {
                        "timestamp": base + (number * 10 + n) * 1000,
                        "message": json.dumps({"job": f"{stream}-{n}", "level": "ERROR" if n % 3 == 0 else "INFO"}),
                    }
                    for n in range(6)
                ],
            )
        obs["errors"] = logs.filter_log_events(logGroupName="/tp-logs/jobs", filterPattern="ERROR")
        obs["json"] = logs.filter_log_events(logGroupName="/tp-logs/jobs", filterPattern='{ $.level = "INFO" }')
        obs["workers, early"] = logs.filter_log_events(
            logGroupName="/tp-logs/jobs",
            logStreamNames=["worker-a", "worker-b"],
            startTime=base,
            endTime=base + 12 * 1000,
        )
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return group_state(ctx.client("logs"), "/tp-logs/jobs")


class SubscriptionsAndDestinations(Scenario):
    """Shipping logs elsewhere: a subscription filter sending a group to a Kinesis stream, a cross-account
    destination with its access policy, and an account resource policy for a service."""

    name = "logs-subscriptions"
    service = "logs"

    def run(self, ctx: Context) -> Observations:
        logs, kinesis = ctx.client("logs"), ctx.client("kinesis")
        obs: Observations = {}
        kinesis.create_stream(StreamName="tp-logs-shipping", ShardCount=1)
        stream_arn = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/tp-logs-shipping"
        role = f"arn:aws:iam::{ACCOUNT}:role/tp-logs-shipper"
        logs.create_log_group(logGroupName="/tp-logs/audit")
        obs["subscription"] = logs.put_subscription_filter(
            logGroupName="/tp-logs/audit",
            filterName="tp-logs-ship",
            filterPattern="",
            destinationArn=stream_arn,
            roleArn=role,
        )
        obs["destination"] = logs.put_destination(destinationName="tp-logs-central", targetArn=stream_arn, roleArn=role)
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "111122223333"},
                    "Action": "logs:PutSubscriptionFilter",
                    "Resource": obs["destination"]["destination"]["arn"],
                }
            ],
        }
        obs["destination policy"] = logs.put_destination_policy(
            destinationName="tp-logs-central", accessPolicy=json.dumps(policy)
        )
        resource_policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "route53.amazonaws.com"},
                    "Action": "logs:PutLogEvents",
                    "Resource": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/tp-logs/*",
                }
            ],
        }
        obs["resource policy"] = logs.put_resource_policy(
            policyName="tp-logs-route53", policyDocument=json.dumps(resource_policy)
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        logs = ctx.client("logs")
        return {
            "subscriptions": logs.describe_subscription_filters(logGroupName="/tp-logs/audit")["subscriptionFilters"],
            "destinations": logs.describe_destinations(DestinationNamePrefix="tp-logs-")["destinations"],
            "policies": [
                p for p in logs.describe_resource_policies()["resourcePolicies"] if p["policyName"] == "tp-logs-route53"
            ],
        }


class Deletions(Scenario):
    """Cleaning up: a stream deleted from a group, a whole group deleted with its streams, and the errors for
    reading what is gone; the surviving group and stream remain."""

    name = "logs-deletions"
    service = "logs"

    def run(self, ctx: Context) -> Observations:
        logs = ctx.client("logs")
        obs: Observations = {}
        for group in ("/tp-logs/keep", "/tp-logs/drop"):
            logs.create_log_group(logGroupName=group)
            for stream in ("a", "b"):
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
                logs.put_log_events(
                    logGroupName=group,
                    logStreamName=stream,
                    logEvents=[{"timestamp": now_ms(), "message": f"{group} {stream}"}],
                )
        obs["delete stream"] = logs.delete_log_stream(logGroupName="/tp-logs/keep", logStreamName="b")
        obs["delete group"] = logs.delete_log_group(logGroupName="/tp-logs/drop")
        obs["stream gone"] = error_of(logs.get_log_events, logGroupName="/tp-logs/keep", logStreamName="b")
        obs["group gone"] = error_of(logs.describe_log_streams, logGroupName="/tp-logs/drop")
        obs["groups"] = [
            g["logGroupName"]
            for g in logs.describe_log_groups(logGroupNamePrefix="/tp-logs/")["logGroups"]
            if g["logGroupName"] in ("/tp-logs/keep", "/tp-logs/drop")
        ]
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        logs = ctx.client("logs")
        return {
            "keep": group_state(logs, "/tp-logs/keep"),
            "drop": [g for g in logs.describe_log_groups(logGroupNamePrefix="/tp-logs/drop")["logGroups"]],
        }
