"""SNS scenarios: topics and their settings, fan-out to SQS (raw and enveloped), filter policies, FIFO topics."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from transparency.core import ACCOUNT, Context, Observations, Scenario, error_of


def topic_state(sns: Any, arn: str) -> dict[str, Any]:
    """A topic's attributes, tags, and subscriptions with their attributes."""
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    return {
        "attributes": sns.get_topic_attributes(TopicArn=arn)["Attributes"],
        "tags": sns.list_tags_for_resource(ResourceArn=arn)["Tags"],
        "subscriptions": [
            {**sub, "attributes": sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]}
            for sub in sorted(subscriptions, key=lambda sub: sub["Endpoint"])
        ],
    }


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


def topic_arn(name: str) -> str:
    return f"arn:aws:sns:us-east-1:{ACCOUNT}:{name}"


def messages_in(sqs: Any, url: str) -> dict[str, str]:
    """How many messages a queue holds, read without receiving."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return dict(attributes)


def envelope(message: dict[str, Any]) -> dict[str, Any]:
    """An SQS message delivered by SNS without raw delivery, its JSON body decoded.

    The body holds a signature made with a key each server generates, so its MD5 differs between servers:
    it is checked against the body instead of compared.
    """
    digest = message.pop("MD5OfBody")
    return {
        **message,
        "MD5OfBody matches the body": hashlib.md5(message["Body"].encode()).hexdigest() == digest,
        "Body": json.loads(message["Body"]),
    }


class TopicSettings(Scenario):
    """A topic's administration: attributes at creation and changed later (display name, access policy), an
    idempotent re-create, tags added and removed, a permission added, and the error for a missing topic."""

    name = "sns-topic-settings"
    service = "sns"

    def run(self, ctx: Context) -> Observations:
        sns = ctx.client("sns")
        obs: Observations = {}
        obs["create"] = sns.create_topic(
            Name="tp-sns-alerts", Attributes={"DisplayName": "Alerts"}, Tags=[{"Key": "team", "Value": "sre"}]
        )
        arn = obs["create"]["TopicArn"]
        obs["idempotent create"] = sns.create_topic(Name="tp-sns-alerts", Tags=[{"Key": "team", "Value": "sre"}])
        obs["set"] = sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="Pager alerts")
        policy = {
            "Version": "2008-10-17",
            "Statement": [
                {
                    "Sid": "cloudwatch",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": arn,
                }
            ],
        }
        obs["policy"] = sns.set_topic_attributes(
            TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(policy)
        )
        obs["tag"] = sns.tag_resource(
            ResourceArn=arn, Tags=[{"Key": "severity", "Value": "high"}, {"Key": "x", "Value": "y"}]
        )
        obs["untag"] = sns.untag_resource(ResourceArn=arn, TagKeys=["x"])
        obs["permission"] = sns.add_permission(
            TopicArn=arn, Label="partner", AWSAccountId=["111122223333"], ActionName=["Publish"]
        )
        obs["missing"] = error_of(sns.get_topic_attributes, TopicArn=topic_arn("tp-sns-nothing"))
        obs["state"] = topic_state(sns, arn)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return topic_state(ctx.client("sns"), topic_arn("tp-sns-alerts"))


class FanOutToQueues(Scenario):
    """SNS to SQS delivery: one topic, a raw-delivery queue and an enveloped one; a publish with a subject and
    message attributes reaches both, each in its format; an unsubscribed queue gets nothing."""

    name = "sns-fanout-sqs"
    service = "sns"

    def run(self, ctx: Context) -> Observations:
        sns, sqs = ctx.client("sns"), ctx.client("sqs")
        obs: Observations = {}
        raw = sqs.create_queue(QueueName="tp-sns-fanout-raw")["QueueUrl"]
        wrapped = sqs.create_queue(QueueName="tp-sns-fanout-wrapped")["QueueUrl"]
        gone = sqs.create_queue(QueueName="tp-sns-fanout-gone")["QueueUrl"]
        arn = sns.create_topic(Name="tp-sns-orders")["TopicArn"]
        obs["raw"] = sns.subscribe(
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=queue_arn("tp-sns-fanout-raw"),
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )
        obs["wrapped"] = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn("tp-sns-fanout-wrapped"))
        obs["gone"] = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn("tp-sns-fanout-gone"))
        obs["unsubscribe"] = sns.unsubscribe(SubscriptionArn=obs["gone"]["SubscriptionArn"])
        obs["publish"] = sns.publish(
            TopicArn=arn,
            Subject="order placed",
            Message=json.dumps({"order": 17, "items": ["book", "pen"]}),
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": "order"},
                "priority": {"DataType": "Number", "StringValue": "2"},
            },
        )
        obs["raw message"] = sqs.receive_message(QueueUrl=raw, MessageAttributeNames=["All"], VisibilityTimeout=0)[
            "Messages"
        ]
        obs["wrapped counts"] = messages_in(sqs, wrapped)
        obs["gone counts"] = messages_in(sqs, gone)
        obs["topic"] = topic_state(sns, arn)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        sqs = ctx.client("sqs")
        return {
            "topic": topic_state(ctx.client("sns"), topic_arn("tp-sns-orders")),
            "queues": {
                name: messages_in(sqs, sqs.get_queue_url(QueueName=name)["QueueUrl"])
                for name in ("tp-sns-fanout-raw", "tp-sns-fanout-wrapped", "tp-sns-fanout-gone")
            },
        }


class EnvelopedDelivery(Scenario):
    """An SNS notification as an SQS consumer without raw delivery sees it: the JSON envelope with type, topic,
    subject, message and message attributes (its signature and certificate URL are per server)."""

    name = "sns-envelope-sqs"
    service = "sns"

    def run(self, ctx: Context) -> Observations:
        sns, sqs = ctx.client("sns"), ctx.client("sqs")
        obs: Observations = {}
        url = sqs.create_queue(QueueName="tp-sns-envelope")["QueueUrl"]
        arn = sns.create_topic(Name="tp-sns-envelope")["TopicArn"]
        obs["subscribe"] = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn("tp-sns-envelope"))
        obs["publish"] = sns.publish(
            TopicArn=arn,
            Subject="deploy",
            Message="version 1.4.2 is live",
            MessageAttributes={"env": {"DataType": "String", "StringValue": "prod"}},
        )
        obs["delivered"] = [envelope(m) for m in sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]]
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        sqs = ctx.client("sqs")
        return {
            "topic": topic_state(ctx.client("sns"), topic_arn("tp-sns-envelope")),
            "queue": messages_in(sqs, sqs.get_queue_url(QueueName="tp-sns-envelope")["QueueUrl"]),
        }


class FilterPolicies(Scenario):
    """Subscriptions with filter policies on message attributes and on the message body: publishes reach only
    the queues whose policy matches; a policy is then changed and the next publish follows it."""

    name = "sns-filter-policies"
    service = "sns"

    def run(self, ctx: Context) -> Observations:
        sns, sqs = ctx.client("sns"), ctx.client("sqs")
        obs: Observations = {}
        urls = {name: sqs.create_queue(QueueName=f"tp-sns-filter-{name}")["QueueUrl"] for name in ("eu", "big", "all")}
        arn = sns.create_topic(Name="tp-sns-sales")["TopicArn"]
        eu = sns.subscribe(
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=queue_arn("tp-sns-filter-eu"),
            Attributes={
                "RawMessageDelivery": "true",
                "FilterPolicy": json.dumps({"region": ["eu-west-1", "eu-central-1"]}),
            },
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        sns.subscribe(
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=queue_arn("tp-sns-filter-big"),
            Attributes={
                "RawMessageDelivery": "true",
                "FilterPolicyScope": "MessageBody",
                "FilterPolicy": json.dumps({"amount": [{"numeric": [">=", 1000]}]}),
            },
        )
        sns.subscribe(
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=queue_arn("tp-sns-filter-all"),
            Attributes={"RawMessageDelivery": "true"},
        )
        for region, amount in [("eu-west-1", 5), ("us-east-1", 5000), ("eu-central-1", 2000)]:
            sns.publish(
                TopicArn=arn,
                Message=json.dumps({"amount": amount, "region": region}),
                MessageAttributes={"region": {"DataType": "String", "StringValue": region}},
            )
        obs["change policy"] = sns.set_subscription_attributes(
            SubscriptionArn=eu, AttributeName="FilterPolicy", AttributeValue=json.dumps({"region": ["us-east-1"]})
        )
        sns.publish(
            TopicArn=arn,
            Message=json.dumps({"amount": 1, "region": "us-east-1"}),
            MessageAttributes={"region": {"DataType": "String", "StringValue": "us-east-1"}},
        )
        obs["bodies"] = {
            name: sorted(
                m["Body"]
                for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=900).get(
                    "Messages", []
                )
            )
            for name, url in urls.items()
        }
        obs["topic"] = topic_state(sns, arn)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        sqs = ctx.client("sqs")
        return {
            "topic": topic_state(ctx.client("sns"), topic_arn("tp-sns-sales")),
            "queues": {
                name: messages_in(sqs, sqs.get_queue_url(QueueName=f"tp-sns-filter-{name}")["QueueUrl"])
                for name in ("eu", "big", "all")
            },
        }


class FifoTopicBatch(Scenario):
    """A FIFO topic fanning out to a FIFO queue: a publish_batch with group and deduplication ids (one entry
    rejected for lacking a group id), then the queue yields the messages in order with their sequence."""

    name = "sns-fifo-batch"
    service = "sns"

    def run(self, ctx: Context) -> Observations:
        sns, sqs = ctx.client("sns"), ctx.client("sqs")
        obs: Observations = {}
        url = sqs.create_queue(
            QueueName="tp-sns-ledger.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        )["QueueUrl"]
        arn = sns.create_topic(
            Name="tp-sns-ledger.fifo", Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"}
        )["TopicArn"]
        obs["subscribe"] = sns.subscribe(
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=queue_arn("tp-sns-ledger.fifo"),
            Attributes={"RawMessageDelivery": "true"},
        )
        obs["batch"] = sns.publish_batch(
            TopicArn=arn,
            PublishBatchRequestEntries=[
                {"Id": "e1", "Message": "debit 10", "MessageGroupId": "acct-1"},
                {"Id": "e2", "Message": "credit 4", "MessageGroupId": "acct-1"},
                {"Id": "e3", "Message": "debit 1", "MessageGroupId": "acct-2", "MessageDeduplicationId": "d-3"},
            ],
        )
        obs["no group"] = error_of(sns.publish, TopicArn=arn, Message="lost")
        obs["received"] = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=900, AttributeNames=["All"]
        )
        obs["topic"] = topic_state(sns, arn)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        sqs = ctx.client("sqs")
        return {
            "topic": topic_state(ctx.client("sns"), topic_arn("tp-sns-ledger.fifo")),
            "queue": messages_in(sqs, sqs.get_queue_url(QueueName="tp-sns-ledger.fifo")["QueueUrl"]),
        }
