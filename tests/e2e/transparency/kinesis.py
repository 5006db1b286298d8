"""Kinesis scenarios: records in and out, resharding, stream settings, consumers."""

from __future__ import annotations

from typing import Any

from transparency.core import ACCOUNT, Context, Observations, Scenario, answer_or_error, error_of


def stream_arn(name: str) -> str:
    return f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name}"


def records_of(kinesis: Any, stream: str) -> dict[str, list[dict[str, Any]]]:
    """Every record of every shard from the horizon (reading records changes nothing), by shard id."""
    result: dict[str, list[dict[str, Any]]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        result[shard["ShardId"]] = kinesis.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    return result


def sorted_metrics(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer with its shard-level metric lists sorted: moto keeps them in a set, whose order changes from
    one process to the next (string hashing is randomised)."""
    fixed = dict(answer)
    for key in ("CurrentShardLevelMetrics", "DesiredShardLevelMetrics"):
        if key in fixed:
            fixed[key] = sorted(fixed[key])
    if "EnhancedMonitoring" in fixed:
        fixed["EnhancedMonitoring"] = [
            {**m, "ShardLevelMetrics": sorted(m["ShardLevelMetrics"])} for m in fixed["EnhancedMonitoring"]
        ]
    return fixed


def stream_state(kinesis: Any, stream: str) -> dict[str, Any]:
    return {
        "summary": sorted_metrics(kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]),
        "shards": kinesis.list_shards(StreamName=stream)["Shards"],
        "tags": kinesis.list_tags_for_stream(StreamName=stream)["Tags"],
        "records": records_of(kinesis, stream),
    }


class RecordsInAndOut(Scenario):
    """A clickstream: single puts with partition keys (one with an explicit hash key), a batch put, then the
    records read back shard by shard from TRIM_HORIZON and after a sequence number."""

    name = "kinesis-records"
    service = "kinesis"

    def run(self, ctx: Context) -> Observations:
        kinesis = ctx.client("kinesis")
        obs: Observations = {}
        obs["create"] = kinesis.create_stream(StreamName="tp-kinesis-clicks", ShardCount=2)
        obs["put"] = [
            kinesis.put_record(StreamName="tp-kinesis-clicks", Data=f"click {n}".encode(), PartitionKey=f"user-{n}")
            for n in range(4)
        ]
        obs["put hashed"] = kinesis.put_record(
            StreamName="tp-kinesis-clicks", Data=b"pinned", PartitionKey="any", ExplicitHashKey="1"
        )
        obs["batch"] = kinesis.put_records(
            StreamName="tp-kinesis-clicks",
            Records=[{"Data": bytes([n]) * 10, "PartitionKey": f"batch-{n}"} for n in range(6)],
        )
        obs["records"] = records_of(kinesis, "tp-kinesis-clicks")
        first = obs["put"][0]
        after = kinesis.get_shard_iterator(
            StreamName="tp-kinesis-clicks",
            ShardId=first["ShardId"],
            ShardIteratorType="AFTER_SEQUENCE_NUMBER",
            StartingSequenceNumber=first["SequenceNumber"],
        )["ShardIterator"]
        obs["after the first"] = kinesis.get_records(ShardIterator=after)["Records"]
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return stream_state(ctx.client("kinesis"), "tp-kinesis-clicks")


class Resharding(Scenario):
    """Scaling a stream: a shard split at its midpoint, two adjacent shards merged, the open and closed shards
    listed with their hash and sequence ranges, and records put before and after."""

    name = "kinesis-resharding"
    service = "kinesis"

    def run(self, ctx: Context) -> Observations:
        kinesis = ctx.client("kinesis")
        obs: Observations = {}
        kinesis.create_stream(StreamName="tp-kinesis-orders", ShardCount=2)
        kinesis.put_record(StreamName="tp-kinesis-orders", Data=b"before", PartitionKey="a")
        shards = kinesis.list_shards(StreamName="tp-kinesis-orders")["Shards"]
        first = shards[0]
        low, high = (int(first["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
        obs["split"] = kinesis.split_shard(
            StreamName="tp-kinesis-orders", ShardToSplit=first["ShardId"], NewStartingHashKey=str((low + high) // 2)
        )
        after_split = kinesis.list_shards(StreamName="tp-kinesis-orders")["Shards"]
        obs["after split"] = after_split
        open_shards = sorted(
            (s for s in after_split if "EndingSequenceNumber" not in s["SequenceNumberRange"]),
            key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]),
        )
        obs["merge"] = kinesis.merge_shards(
            StreamName="tp-kinesis-orders",
            ShardToMerge=open_shards[0]["ShardId"],
            AdjacentShardToMerge=open_shards[1]["ShardId"],
        )
        kinesis.put_record(StreamName="tp-kinesis-orders", Data=b"after", PartitionKey="a")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return stream_state(ctx.client("kinesis"), "tp-kinesis-orders")


class StreamSettings(Scenario):
    """A stream's settings: tags added and removed, retention raised and lowered (and a raise by decrease
    refused), server-side encryption with a KMS alias started, enhanced monitoring enabled for a metric; the
    summary read back."""

    name = "kinesis-settings"
    service = "kinesis"

    def run(self, ctx: Context) -> Observations:
        kinesis = ctx.client("kinesis")
        obs: Observations = {}
        kinesis.create_stream(StreamName="tp-kinesis-audit", ShardCount=1)
        obs["tag"] = kinesis.add_tags_to_stream(StreamName="tp-kinesis-audit", Tags={"team": "sec", "tmp": "1"})
        obs["untag"] = kinesis.remove_tags_from_stream(StreamName="tp-kinesis-audit", TagKeys=["tmp"])
        obs["retention up"] = kinesis.increase_stream_retention_period(
            StreamName="tp-kinesis-audit", RetentionPeriodHours=72
        )
        obs["retention down"] = kinesis.decrease_stream_retention_period(
            StreamName="tp-kinesis-audit", RetentionPeriodHours=48
        )
        obs["bad retention"] = error_of(
            kinesis.decrease_stream_retention_period, StreamName="tp-kinesis-audit", RetentionPeriodHours=72
        )
        obs["encrypt"] = kinesis.start_stream_encryption(
            StreamName="tp-kinesis-audit", EncryptionType="KMS", KeyId="alias/aws/kinesis"
        )
        # one metric only: moto answers with a set made a list, in an order that differs between processes
        # (string hashing), so two metrics make the replay of this call diverge from its recording by chance
        obs["monitoring"] = kinesis.enable_enhanced_monitoring(
            StreamName="tp-kinesis-audit", ShardLevelMetrics=["IncomingBytes"]
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return stream_state(ctx.client("kinesis"), "tp-kinesis-audit")


class Consumers(Scenario):
    """Enhanced fan-out consumers: two registered on an on-demand stream, described, listed, one deregistered
    and described again."""

    name = "kinesis-consumers"
    service = "kinesis"

    def run(self, ctx: Context) -> Observations:
        kinesis = ctx.client("kinesis")
        obs: Observations = {}
        kinesis.create_stream(StreamName="tp-kinesis-events", StreamModeDetails={"StreamMode": "ON_DEMAND"})
        arn = stream_arn("tp-kinesis-events")
        obs["analytics"] = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="tp-kinesis-analytics")
        obs["archiver"] = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="tp-kinesis-archiver")
        obs["describe"] = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="tp-kinesis-analytics")
        obs["deregister"] = kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName="tp-kinesis-archiver")
        obs["after"] = answer_or_error(
            kinesis.describe_stream_consumer, StreamARN=arn, ConsumerName="tp-kinesis-archiver"
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        kinesis = ctx.client("kinesis")
        return {
            "summary": sorted_metrics(
                kinesis.describe_stream_summary(StreamName="tp-kinesis-events")["StreamDescriptionSummary"]
            ),
            "consumers": kinesis.list_stream_consumers(StreamARN=stream_arn("tp-kinesis-events"))["Consumers"],
        }
