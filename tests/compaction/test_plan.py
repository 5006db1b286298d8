"""The compaction planner on hand-built logs: every rule, every reason to keep, and ``from_empty=False``.

Each test lists a log and asserts exactly which ordinals the plan keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from replay.compaction import CompactionPlan, plan_compaction
from replay.record.entry import Entry, Request, Response

ACCOUNT = "123456789012"
T0 = 1_700_000_000.0


def auth(service: str, region: str = "us-east-1", key: str = "testing") -> tuple[str, str]:
    scope = f"Credential={key}/20240101/{region}/{service}/aws4_request"
    return ("Authorization", f"AWS4-HMAC-SHA256 {scope}, SignedHeaders=host;x-amz-date")


def entry(
    service: str,
    operation: str,
    request: Request,
    response: bytes = b"",
    status: int = 200,
    time: float = T0,
) -> Entry:
    return Entry(time, service, operation, request, Response(status, [], response))


def kept(entries: list[Entry], from_empty: bool = True) -> list[int]:
    plan = plan_compaction(entries, from_empty=from_empty)
    assert plan.read == len(entries)
    assert plan.kept + plan.dropped == plan.read
    return [index for index in range(plan.read) if plan.keeps(index)]


# SQS (JSON protocol)


def sqs(operation: str, body: dict[str, Any], response: dict[str, Any] | None = None, **options: Any) -> Entry:
    headers = [
        ("Host", "localhost:4566"),
        ("X-Amz-Target", f"AmazonSQS.{operation}"),
        ("Content-Type", "application/x-amz-json-1.0"),
        auth("sqs", options.pop("region", "us-east-1")),
        *options.pop("headers", ()),
    ]
    request = Request("POST", "/", "", headers, orjson.dumps(body))
    return entry("sqs", operation, request, orjson.dumps(response or {}), **options)


def url(name: str) -> str:
    return f"http://localhost:4566/{ACCOUNT}/{name}"


def create_queue(name: str, attributes: dict[str, str] | None = None, **options: Any) -> Entry:
    body: dict[str, Any] = {"QueueName": name}
    if attributes:
        body["Attributes"] = attributes
    return sqs("CreateQueue", body, {"QueueUrl": url(name)}, **options)


def delete_queue(name: str, **options: Any) -> Entry:
    return sqs("DeleteQueue", {"QueueUrl": url(name)}, **options)


def send(name: str, message_id: str, body: str = "hello", **fields: Any) -> Entry:
    time = fields.pop("time", T0)
    return sqs(
        "SendMessage", {"QueueUrl": url(name), "MessageBody": body, **fields}, {"MessageId": message_id}, time=time
    )


def send_batch(name: str, *message_ids: str) -> Entry:
    entries = [{"Id": str(n), "MessageBody": f"m{n}"} for n in range(len(message_ids))]
    successful = [{"Id": str(n), "MessageId": message_id} for n, message_id in enumerate(message_ids)]
    return sqs("SendMessageBatch", {"QueueUrl": url(name), "Entries": entries}, {"Successful": successful})


def receive(name: str, *messages: tuple[str, str], time: float = T0) -> Entry:
    """``messages``: (message id, receipt handle) pairs the receive returned."""
    answer = [{"MessageId": message_id, "ReceiptHandle": handle, "Body": "b"} for message_id, handle in messages]
    return sqs("ReceiveMessage", {"QueueUrl": url(name), "MaxNumberOfMessages": 10}, {"Messages": answer}, time=time)


def delete(name: str, handle: str, time: float = T0) -> Entry:
    return sqs("DeleteMessage", {"QueueUrl": url(name), "ReceiptHandle": handle}, time=time)


def delete_batch(name: str, *handles: str, failed: bool = False) -> Entry:
    entries = [{"Id": str(n), "ReceiptHandle": handle} for n, handle in enumerate(handles)]
    response: dict[str, Any] = {"Successful": [{"Id": str(n)} for n in range(len(handles))], "Failed": []}
    if failed:
        response["Failed"] = [{"Id": "9", "SenderFault": True, "Code": "ReceiptHandleIsInvalid"}]
    return sqs("DeleteMessageBatch", {"QueueUrl": url(name), "Entries": entries}, response)


def queue_arn(name: str, region: str = "us-east-1") -> str:
    return f"arn:aws:sqs:{region}:{ACCOUNT}:{name}"


# S3 (REST, path style)


def s3(
    operation: str,
    method: str,
    path: str,
    query: str = "",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    response: bytes = b"",
    host: str = "localhost:4566",
) -> Entry:
    request = Request(method, path, query, [("Host", host), auth("s3"), *headers], body)
    return entry("s3", operation, request, response)


def create_bucket(name: str, *headers: tuple[str, str]) -> Entry:
    return s3("CreateBucket", "PUT", f"/{name}", headers=headers)


def delete_bucket(name: str) -> Entry:
    return s3("DeleteBucket", "DELETE", f"/{name}")


def put(bucket: str, key: str, *headers: tuple[str, str], body: bytes = b"data") -> Entry:
    return s3("PutObject", "PUT", f"/{bucket}/{key}", headers=headers, body=body)


def delete_object(bucket: str, key: str) -> Entry:
    return s3("DeleteObject", "DELETE", f"/{bucket}/{key}")


def copy(bucket: str, key: str, source: str, *headers: tuple[str, str]) -> Entry:
    return s3("CopyObject", "PUT", f"/{bucket}/{key}", headers=(("x-amz-copy-source", source), *headers))


def delete_objects(bucket: str, *keys: str) -> Entry:
    objects = "".join(f"<Object><Key>{key}</Key></Object>" for key in keys)
    body = f'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{objects}</Delete>'.encode()
    deleted = "".join(f"<Deleted><Key>{key}</Key></Deleted>" for key in keys)
    return s3(
        "DeleteObjects",
        "POST",
        f"/{bucket}",
        "delete",
        body=body,
        response=f"<DeleteResult>{deleted}</DeleteResult>".encode(),
    )


def multipart(bucket: str, key: str, upload: str, finish: str | None) -> list[Entry]:
    calls = [
        s3(
            "CreateMultipartUpload",
            "POST",
            f"/{bucket}/{key}",
            "uploads",
            response=f"<InitiateMultipartUploadResult><UploadId>{upload}</UploadId></InitiateMultipartUploadResult>".encode(),
        ),
        s3("UploadPart", "PUT", f"/{bucket}/{key}", f"partNumber=1&uploadId={upload}", body=b"part"),
    ]
    if finish == "complete":
        calls.append(s3("CompleteMultipartUpload", "POST", f"/{bucket}/{key}", f"uploadId={upload}", body=b"<x/>"))
    elif finish == "abort":
        calls.append(s3("AbortMultipartUpload", "DELETE", f"/{bucket}/{key}", f"uploadId={upload}"))
    return calls


# DynamoDB


def ddb(operation: str, body: dict[str, Any], **options: Any) -> Entry:
    headers = [
        ("X-Amz-Target", f"DynamoDB_20120810.{operation}"),
        ("Content-Type", "application/x-amz-json-1.0"),
        auth("dynamodb"),
        *options.pop("headers", ()),
    ]
    return entry("dynamodb", operation, Request("POST", "/", "", headers, orjson.dumps(body)), b"{}", **options)


def create_table(name: str, range_key: bool = False, **extra: Any) -> Entry:
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
    return ddb("CreateTable", {"TableName": name, "KeySchema": schema, **extra})


def item(pk: str, sk: str | None = None, **values: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {"pk": {"S": pk}}
    if sk is not None:
        attributes["sk"] = {"N": sk}
    attributes.update({name: {"S": value} for name, value in values.items()})
    return attributes


def put_item(table: str, attributes: dict[str, Any], **extra: Any) -> Entry:
    return ddb("PutItem", {"TableName": table, "Item": attributes, **extra})


def update_item(table: str, key: dict[str, Any], **extra: Any) -> Entry:
    return ddb("UpdateItem", {"TableName": table, "Key": key, "UpdateExpression": "SET v = :v", **extra})


def delete_item(table: str, key: dict[str, Any], **extra: Any) -> Entry:
    return ddb("DeleteItem", {"TableName": table, "Key": key, **extra})


# SNS (query protocol)


def sns(operation: str, params: dict[str, str], response: str = "", **options: Any) -> Entry:
    headers = [
        ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
        auth("sns"),
        *options.pop("headers", ()),
    ]
    body = urlencode({"Action": operation, "Version": "2010-03-31", **params}).encode()
    return entry("sns", operation, Request("POST", "/", "", headers, body), response.encode(), **options)


def topic_arn(name: str) -> str:
    return f"arn:aws:sns:us-east-1:{ACCOUNT}:{name}"


def create_topic(name: str) -> Entry:
    return sns(
        "CreateTopic", {"Name": name}, f"<CreateTopicResult><TopicArn>{topic_arn(name)}</TopicArn></CreateTopicResult>"
    )


def subscribe(topic: str, queue: str, subscription: str, **options: Any) -> Entry:
    arn = f"{topic_arn(topic)}:{subscription}"
    params = {"TopicArn": topic_arn(topic), "Protocol": "sqs", "Endpoint": queue_arn(queue)}
    return sns(
        "Subscribe", params, f"<SubscribeResult><SubscriptionArn>{arn}</SubscriptionArn></SubscribeResult>", **options
    )


def unsubscribe(topic: str, subscription: str, **options: Any) -> Entry:
    return sns("Unsubscribe", {"SubscriptionArn": f"{topic_arn(topic)}:{subscription}"}, **options)


def publish(topic: str) -> Entry:
    return sns("Publish", {"TopicArn": topic_arn(topic), "Message": "hi"}, "<MessageId>m</MessageId>")


def delete_topic(name: str, **options: Any) -> Entry:
    return sns("DeleteTopic", {"TopicArn": topic_arn(name)}, **options)


# other


def reset() -> Entry:
    return entry("moto", "Reset", Request("POST", "/moto-api/reset", "", [], b""))


def other(service: str, operation: str, body: dict[str, Any]) -> Entry:
    headers = [("X-Amz-Target", f"Svc.{operation}"), auth(service)]
    return entry(service, operation, Request("POST", "/", "", headers, orjson.dumps(body)), b"{}")


# the plan itself


def test_the_plan_counts_by_rule_and_answers_by_ordinal() -> None:
    log = [create_queue("q"), send("q", "m1"), create_queue("gone"), delete_queue("gone")]

    def stream() -> Iterator[Entry]:
        yield from log

    plan = plan_compaction(stream())
    assert isinstance(plan, CompactionPlan)
    assert (plan.read, plan.dropped, plan.kept) == (4, 2, 2)
    assert plan.by_rule == {"sqs-queue-lifetime": 2}
    assert [plan.keeps(i) for i in range(4)] == [True, True, False, False]
    with pytest.raises(IndexError):
        plan.keeps(4)
    with pytest.raises(IndexError):
        plan.keeps(-1)
    empty = plan_compaction([])
    assert (empty.read, empty.dropped, empty.kept, empty.by_rule) == (0, 0, 0, {})


def test_unknown_services_and_operations_are_always_kept() -> None:
    log = [other("kms", "CreateKey", {}), other("ec2", "RunInstances", {}), reset(), other("iam", "CreateUser", {})]
    assert kept(log) == [3]
    assert kept(log[:2]) == [0, 1]


# reset


def test_a_reset_drops_everything_before_it_and_itself() -> None:
    log = [create_queue("q"), send("q", "m1"), other("kms", "CreateKey", {}), reset(), create_queue("q")]
    plan = plan_compaction(log)
    assert [i for i in range(5) if plan.keeps(i)] == [4]
    assert plan.by_rule == {"moto-reset": 4}


def test_without_from_empty_a_reset_is_kept_and_what_follows_it_starts_from_empty() -> None:
    log = [
        create_queue("old"),  # on unknown state: kept
        delete_queue("old"),
        reset(),  # kept: it empties the unknown state
        create_queue("q"),  # after the reset the state is known: this lifetime goes
        delete_queue("q"),
        create_table("t"),
        delete_item("t", item("a")),  # deletes nothing: the table was just created
    ]
    assert kept(log, from_empty=False) == [0, 1, 2, 5]


def test_without_from_empty_a_second_reset_drops_everything_since_the_first() -> None:
    log = [create_queue("a"), reset(), create_queue("b"), send("b", "m"), reset(), create_queue("c")]
    assert kept(log, from_empty=False) == [0, 1, 5]


# SQS queues


def test_a_deleted_queue_goes_with_every_call_on_it() -> None:
    log = [
        create_queue("jobs"),
        create_queue("gone", {"VisibilityTimeout": "60"}),
        send("gone", "m1"),
        receive("gone", ("m1", "h1")),
        sqs("SetQueueAttributes", {"QueueUrl": url("gone"), "Attributes": {"DelaySeconds": "1"}}),
        sqs("TagQueue", {"QueueUrl": url("gone"), "Tags": {"a": "b"}}),
        send("jobs", "m2"),
        delete_queue("gone"),
    ]
    plan = plan_compaction(log)
    assert [i for i in range(plan.read) if plan.keeps(i)] == [0, 6]
    assert plan.by_rule == {"sqs-queue-lifetime": 6}


def test_a_queue_name_reused_is_two_lifetimes_and_only_the_deleted_one_goes() -> None:
    log = [create_queue("q"), send("q", "m1"), delete_queue("q"), create_queue("q"), send("q", "m2")]
    assert kept(log) == [3, 4]


def test_queues_are_told_apart_by_region() -> None:
    log = [
        create_queue("q"),
        create_queue("q", region="eu-west-1"),
        delete_queue("q", region="eu-west-1"),
        send("q", "m1"),
    ]
    assert kept(log) == [0, 3]


def test_a_delete_of_a_queue_not_created_in_the_log_is_kept() -> None:
    log = [send("pre", "m1"), delete_queue("pre"), create_queue("pre"), delete_queue("pre")]
    assert kept(log) == [0, 1]
    assert kept(log, from_empty=False) == [0, 1]  # once deleted in the log, a create is a creation


def test_without_from_empty_a_create_proves_nothing() -> None:
    log = [create_queue("q"), send("q", "m1"), delete_queue("q")]
    assert kept(log, from_empty=False) == [0, 1, 2]  # CreateQueue of an existing queue succeeds too
    assert kept(log) == []


def test_an_operation_not_modelled_keeps_the_queue_and_its_messages() -> None:
    log = [
        create_queue("q"),
        send("q", "m1"),
        receive("q", ("m1", "h1")),
        delete("q", "h1"),
        sqs("StartMessageMoveTask", {"QueueUrl": url("q"), "SourceArn": queue_arn("q")}),
        delete_queue("q"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4, 5]


def test_a_query_protocol_call_keeps_its_queue() -> None:
    query = Request(
        "POST",
        "/",
        "",
        [("Content-Type", "application/x-www-form-urlencoded"), auth("sqs")],
        urlencode({"Action": "SendMessage", "QueueUrl": url("q"), "MessageBody": "x"}).encode(),
    )
    log = [create_queue("q"), entry("sqs", "SendMessage", query, b"<MessageId>x</MessageId>"), delete_queue("q")]
    assert kept(log) == [0, 1, 2]


# SQS messages


def test_a_consumed_message_goes_with_its_send_receive_and_delete() -> None:
    log = [create_queue("q"), send("q", "m1"), send("q", "m2"), receive("q", ("m1", "h1")), delete("q", "h1")]
    plan = plan_compaction(log)
    assert [i for i in range(plan.read) if plan.keeps(i)] == [0, 2]
    assert plan.by_rule == {"sqs-deleted-message": 3}


def test_a_receive_that_returned_a_message_still_there_keeps_everything_it_returned() -> None:
    log = [
        create_queue("q"),
        send("q", "m1"),
        send("q", "m2"),
        receive("q", ("m1", "h1"), ("m2", "h2")),
        delete("q", "h1"),  # m2 is never deleted
    ]
    assert kept(log) == [0, 1, 2, 3, 4]


def test_a_batch_goes_only_when_every_message_of_it_goes() -> None:
    whole = [
        create_queue("q"),
        send_batch("q", "m1", "m2"),
        receive("q", ("m1", "h1")),
        receive("q", ("m2", "h2")),
        delete_batch("q", "h1", "h2"),
    ]
    assert kept(whole) == [0]
    part = [create_queue("q"), send_batch("q", "m1", "m2"), receive("q", ("m1", "h1")), delete("q", "h1")]
    assert kept(part) == [0, 1, 2, 3]


def test_a_delete_batch_that_partly_failed_is_kept_with_its_messages() -> None:
    log = [create_queue("q"), send("q", "m1"), receive("q", ("m1", "h1")), delete_batch("q", "h1", failed=True)]
    assert kept(log) == [0, 1, 2, 3]


def test_a_delete_of_a_handle_this_log_never_received_is_kept() -> None:
    log = [create_queue("q"), delete("q", "from-before"), send("q", "m1")]
    assert kept(log) == [0, 1, 2]


def test_a_receive_of_a_message_not_sent_in_the_log_is_kept_with_what_it_returned() -> None:
    log = [
        create_queue("q"),
        send("q", "m1"),
        receive("q", ("m1", "h1"), ("delivered-by-sns", "h2")),
        delete("q", "h1"),
        delete("q", "h2"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4]


def test_a_repeated_delete_goes_with_its_message() -> None:
    log = [create_queue("q"), send("q", "m1"), receive("q", ("m1", "h1")), delete("q", "h1"), delete("q", "h1")]
    assert kept(log) == [0]


def test_a_visibility_change_goes_with_its_message() -> None:
    change = sqs("ChangeMessageVisibility", {"QueueUrl": url("q"), "ReceiptHandle": "h1", "VisibilityTimeout": 0})
    log = [create_queue("q"), send("q", "m1"), receive("q", ("m1", "h1")), change, delete("q", "h1")]
    assert kept(log) == [0]


def test_a_purge_makes_earlier_sends_droppable_and_stays() -> None:
    log = [
        create_queue("q"),
        send("q", "m1"),
        send("q", "m2"),
        receive("q", ("m2", "h2")),
        sqs("PurgeQueue", {"QueueUrl": url("q")}),
        send("q", "m3"),
    ]
    assert kept(log) == [0, 4, 5]


def test_a_message_older_than_the_queue_retention_is_kept() -> None:
    log = [
        create_queue("q", {"MessageRetentionPeriod": "60"}),
        send("q", "m1", time=T0),
        receive("q", ("m1", "h1"), time=T0 + 30),
        delete("q", "h1", time=T0 + 120),  # it expired meanwhile: a receive would have stopped at it
        send("q", "m2", time=T0 + 200),
        receive("q", ("m2", "h2"), time=T0 + 210),
        delete("q", "h2", time=T0 + 220),
    ]
    assert kept(log) == [0, 1, 2, 3]


def test_fifo_a_send_deduplicated_against_a_message_keeps_that_message() -> None:
    fifo = {"FifoQueue": "true"}
    deduplicated = [
        create_queue("q.fifo", fifo),
        send("q.fifo", "m1", MessageGroupId="g", MessageDeduplicationId="d1"),
        send("q.fifo", "m2", MessageGroupId="g", MessageDeduplicationId="d1"),  # moto drops it: m1 is there
        receive("q.fifo", ("m1", "h1")),
        delete("q.fifo", "h1"),
    ]
    assert kept(deduplicated) == [0, 1, 2, 3, 4]
    after = [
        create_queue("q.fifo", fifo),
        send("q.fifo", "m1", MessageGroupId="g", MessageDeduplicationId="d1"),
        receive("q.fifo", ("m1", "h1")),
        delete("q.fifo", "h1"),
        send("q.fifo", "m2", MessageGroupId="g", MessageDeduplicationId="d1"),  # m1 is gone: not deduplicated
    ]
    assert kept(after) == [0, 4]


def test_fifo_content_based_deduplication_compares_bodies() -> None:
    log = [
        create_queue("q.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}),
        send("q.fifo", "m1", "same", MessageGroupId="g"),
        send("q.fifo", "m2", "same", MessageGroupId="g"),
        send("q.fifo", "m3", "other", MessageGroupId="h"),
        receive("q.fifo", ("m1", "h1"), ("m3", "h3")),
        delete_batch("q.fifo", "h1", "h3"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4, 5]


def test_fifo_a_message_in_flight_during_another_receive_is_kept() -> None:
    blocking = [
        create_queue("q.fifo", {"FifoQueue": "true"}),
        send("q.fifo", "m1", MessageGroupId="g", MessageDeduplicationId="1"),
        send("q.fifo", "m2", MessageGroupId="g", MessageDeduplicationId="2"),
        send("q.fifo", "m3", MessageGroupId="h", MessageDeduplicationId="3"),
        receive("q.fifo", ("m1", "h1")),
        receive("q.fifo", ("m3", "h3")),  # m1 in flight held m2 back: without it, m2 would come
        delete("q.fifo", "h1"),
    ]
    assert kept(blocking) == [0, 1, 2, 3, 4, 5, 6]
    standard = [
        create_queue("q"),
        send("q", "m1"),
        send("q", "m3"),
        receive("q", ("m1", "h1")),
        receive("q", ("m3", "h3")),
        delete("q", "h1"),
    ]
    assert kept(standard) == [0, 2, 4]


# cross references


def test_a_queue_a_kept_subscription_delivers_to_keeps_its_lifetime() -> None:
    log = [
        create_queue("inbox"),
        create_topic("events"),
        subscribe("events", "inbox", "s1"),
        delete_queue("inbox"),
    ]
    assert kept(log) == [0, 1, 2, 3]


def test_a_reference_from_a_dropped_call_does_not_pin() -> None:
    log = [
        create_queue("inbox"),
        create_topic("events"),
        subscribe("events", "inbox", "s1"),
        unsubscribe("events", "s1"),
        delete_queue("inbox"),
    ]
    assert kept(log) == [1]
    with_topic_gone = [
        create_queue("inbox"),
        create_topic("events"),
        subscribe("events", "inbox", "s1"),
        delete_topic("events"),
        delete_queue("inbox"),
    ]
    assert kept(with_topic_gone) == []


def test_a_dead_letter_queue_named_by_another_queue_is_kept() -> None:
    redrive = orjson.dumps({"deadLetterTargetArn": queue_arn("dlq"), "maxReceiveCount": 3}).decode()
    log = [
        create_queue("dlq"),
        create_queue("work", {"RedrivePolicy": redrive}),
        delete_queue("dlq"),
    ]
    assert kept(log) == [0, 1, 2]


def test_an_unknown_service_naming_a_resource_pins_it() -> None:
    mapping = other("lambda", "CreateEventSourceMapping", {"EventSourceArn": queue_arn("q"), "FunctionName": "f"})
    log = [
        create_queue("q"),
        mapping,
        send("q", "m1"),
        receive("q", ("m1", "h1")),
        delete("q", "h1"),
        delete_queue("q"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4, 5]
    by_name = [
        create_bucket("code-bucket"),
        put("code-bucket", "f.zip"),
        other("lambda", "CreateFunction", {"Code": {"S3Bucket": "code-bucket", "S3Key": "f.zip"}}),
        put("code-bucket", "f.zip"),  # the function read the first version
        delete_object("code-bucket", "f.zip"),
        delete_bucket("code-bucket"),
    ]
    assert kept(by_name) == [0, 1, 2, 3, 4, 5]


def test_two_principals_on_one_queue_name_switch_the_sqs_rules_off() -> None:
    other_account = ("x-moto-account-id", "210987654321")
    log = [
        create_queue("q"),
        create_queue("q", headers=[other_account]),
        delete_queue("q", headers=[other_account]),
        create_queue("solo"),
        delete_queue("solo"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4]


def test_an_access_key_issued_in_the_log_belongs_to_its_issuer() -> None:
    issued = "AKIAISSUEDKEY0000001"
    create_key = entry(
        "iam",
        "CreateAccessKey",
        Request("POST", "/", "", [auth("iam")], b"Action=CreateAccessKey&UserName=u"),
        f"<AccessKeyId>{issued}</AccessKeyId>".encode(),
    )
    issued_auth = auth("sqs", key=issued)
    log = [
        create_key,
        create_queue("q"),
        # the same account (the issuer's), so the same queue
        Entry(
            T0,
            "sqs",
            "DeleteQueue",
            Request(
                "POST",
                "/",
                "",
                [("X-Amz-Target", "AmazonSQS.DeleteQueue"), issued_auth],
                orjson.dumps({"QueueUrl": url("q")}),
            ),
            Response(200, [], b"{}"),
        ),
    ]
    assert kept(log) == [0]


def test_a_failed_call_switches_its_service_rules_off() -> None:
    log = [create_queue("q"), send("q", "m1"), delete_queue("q"), create_queue("r", status=400), create_table("t")]
    assert kept(log) == [0, 1, 2, 3, 4]


def test_a_body_that_cannot_be_read_switches_its_service_rules_off() -> None:
    broken = entry(
        "sqs", "SendMessage", Request("POST", "/", "", [("X-Amz-Target", "AmazonSQS.SendMessage")], b"{not json")
    )
    log = [create_queue("q"), delete_queue("q"), broken, create_table("t"), ddb("DeleteTable", {"TableName": "t"})]
    assert kept(log) == [0, 1, 2]


# S3


def test_a_deleted_bucket_goes_with_every_call_on_it() -> None:
    log = [
        create_bucket("keep"),
        create_bucket("gone"),
        put("gone", "a"),
        s3("PutBucketPolicy", "PUT", "/gone", "policy", body=b'{"Statement": []}'),
        *multipart("gone", "big", "u1", None),
        delete_object("gone", "a"),
        put("keep", "a"),
        delete_bucket("gone"),
    ]
    plan = plan_compaction(log)
    assert [i for i in range(plan.read) if plan.keeps(i)] == [0, 7]
    assert plan.by_rule == {"s3-bucket-lifetime": 7}


def test_an_overwritten_or_deleted_object_goes() -> None:
    log = [
        create_bucket("b"),
        put("b", "k"),
        put("b", "k"),  # overwrites the first
        put("b", "dir/x%20y"),
        delete_object("b", "dir/x y"),  # the same key, encoded otherwise: the write goes, and so does this delete
        delete_object("b", "never-written"),
    ]
    plan = plan_compaction(log)
    assert [i for i in range(plan.read) if plan.keeps(i)] == [0, 2]
    assert plan.by_rule == {"s3-overwritten-object": 2, "s3-redundant-delete": 2}


def test_deletes_of_nothing_stay_without_from_empty() -> None:
    log = [delete_bucket("b"), create_bucket("b"), put("b", "k"), put("b", "k"), delete_object("b", "other")]
    assert kept(log, from_empty=False) == [0, 1, 3, 4]
    assert kept(log) == [0, 1, 3]


def test_a_bucket_not_created_in_the_log_gets_no_object_rule() -> None:
    log = [put("pre", "k"), put("pre", "k"), delete_object("pre", "k")]
    assert kept(log) == [0, 1, 2]
    assert kept(log, from_empty=False) == [0, 1, 2]


def test_versioning_keeps_every_object_write() -> None:
    versioning = s3(
        "PutBucketVersioning",
        "PUT",
        "/v",
        "versioning",
        body=b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>",
    )
    log = [create_bucket("v"), put("v", "k"), versioning, put("v", "k"), put("v", "k"), delete_object("v", "k")]
    assert kept(log) == [0, 1, 2, 3, 4, 5]
    locked = [create_bucket("l", ("x-amz-bucket-object-lock-enabled", "true")), put("l", "k"), put("l", "k")]
    assert kept(locked) == [0, 1, 2]


def test_object_calls_go_with_the_object_they_were_made_on() -> None:
    log = [
        create_bucket("b"),
        put("b", "k"),
        s3("PutObjectTagging", "PUT", "/b/k", "tagging", body=b"<Tagging/>"),
        s3("PutObjectAcl", "PUT", "/b/k", "acl", headers=(("x-amz-acl", "public-read"),)),
        put("b", "k"),  # replaces the object, its ACL and its tags
    ]
    assert kept(log) == [0, 4]


def test_a_copy_keeps_the_object_it_read() -> None:
    log = [
        create_bucket("b"),
        put("b", "src"),
        copy("b", "dst", "b/src"),
        put("b", "src"),
        put("b", "src"),
    ]
    assert kept(log) == [0, 1, 2, 4]


def test_a_copy_that_merges_tags_keeps_what_set_the_key_tags_before_it() -> None:
    merging = [
        create_bucket("b"),
        put("b", "src"),
        put("b", "k", ("x-amz-tagging", "a=1")),
        delete_object("b", "k"),  # moto keeps the key's tags
        copy("b", "k", "b/src"),  # ... and merges the source's into them
    ]
    assert kept(merging) == [0, 1, 2, 3, 4]
    replacing = [
        create_bucket("b"),
        put("b", "src"),
        put("b", "k", ("x-amz-tagging", "a=1")),
        delete_object("b", "k"),
        copy("b", "k", "b/src", ("x-amz-tagging-directive", "REPLACE")),
    ]
    assert kept(replacing) == [0, 1, 4]


def test_a_conditional_write_keeps_what_it_was_conditioned_on() -> None:
    log = [create_bucket("b"), put("b", "k"), put("b", "k", ("If-Match", '"etag"')), put("b", "k")]
    assert kept(log) == [0, 1, 2, 3]
    absent = [create_bucket("b"), put("b", "k"), delete_object("b", "k"), put("b", "k", ("If-None-Match", "*"))]
    assert kept(absent) == [0, 1, 2, 3]


def test_multipart_uploads_completed_and_overwritten_or_aborted_go() -> None:
    log = [
        create_bucket("b"),
        *multipart("b", "k", "u1", "complete"),  # 1-3
        put("b", "k"),  # 4: overwrites it
        *multipart("b", "k", "u2", "abort"),  # 5-7
        *multipart("b", "k", "u3", None),  # 8-9: still in progress
        *multipart("b", "other", "u4", "complete"),  # 10-12: still there
    ]
    plan = plan_compaction(log)
    assert [i for i in range(plan.read) if plan.keeps(i)] == [0, 4, 8, 9, 10, 11, 12]
    assert plan.by_rule == {"s3-overwritten-object": 3, "s3-aborted-upload": 3}


def test_delete_objects_stays_and_the_writes_it_deleted_go() -> None:
    log = [create_bucket("b"), put("b", "a"), put("b", "b&c"), delete_objects("b", "a", "b&amp;c")]
    assert kept(log) == [0, 3]


def test_notifications_keep_the_bucket_its_writes_and_their_target() -> None:
    queue = f"<QueueConfiguration><Queue>{queue_arn('q')}</Queue></QueueConfiguration>"
    config = f"<NotificationConfiguration>{queue}</NotificationConfiguration>"
    log = [
        create_queue("q"),
        create_bucket("b"),
        s3("PutBucketNotificationConfiguration", "PUT", "/b", "notification", body=config.encode()),
        put("b", "k"),
        put("b", "k"),
        delete_object("b", "k"),
        delete_bucket("b"),
        delete_queue("q"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4, 5, 6, 7]


def test_logging_keeps_the_bucket_and_its_target() -> None:
    config = (
        b"<BucketLoggingStatus><LoggingEnabled><TargetBucket>logs</TargetBucket></LoggingEnabled></BucketLoggingStatus>"
    )
    log = [
        create_bucket("logs"),
        create_bucket("b"),
        s3("PutBucketLogging", "PUT", "/b", "logging", body=config),
        put("b", "k"),
        put("b", "k"),
        delete_object("logs", "whatever-was-logged"),  # moto wrote log objects into it: not a delete of nothing
        delete_bucket("b"),
        delete_bucket("logs"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4, 5, 6, 7]


def test_bucket_tags_survive_a_delete_so_a_reused_name_keeps_the_first_lifetime() -> None:
    tagging = s3("PutBucketTagging", "PUT", "/b", "tagging", body=b"<Tagging><TagSet/></Tagging>")
    reused = [create_bucket("b"), tagging, delete_bucket("b"), create_bucket("b")]
    assert kept(reused) == [0, 1, 2, 3]
    once = [create_bucket("b"), tagging, delete_bucket("b")]
    assert kept(once) == []


def test_a_copy_from_another_bucket_keeps_that_bucket() -> None:
    log = [
        create_bucket("src"),
        create_bucket("dst"),
        put("src", "k"),
        copy("dst", "k", "src/k"),
        delete_object("src", "k"),
        delete_bucket("src"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4, 5]


def test_a_virtual_hosted_request_switches_the_s3_rules_off() -> None:
    log = [
        create_bucket("b"),
        put("b", "k"),
        put("b", "k"),
        s3("PutObject", "PUT", "/k2", host="b.s3.amazonaws.com"),
    ]
    assert kept(log) == [0, 1, 2, 3]


def test_eventbridge_rules_may_react_to_a_bucket_creation() -> None:
    log = [other("events", "PutRule", {"Name": "r"}), create_bucket("b"), delete_bucket("b")]
    assert kept(log) == [0, 1, 2]


# DynamoDB


def test_a_deleted_table_goes_with_every_call_on_it() -> None:
    log = [
        create_table("keep"),
        create_table("gone"),
        put_item("gone", item("a")),
        ddb(
            "UpdateTimeToLive",
            {"TableName": "gone", "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "x"}},
        ),
        put_item("keep", item("a")),
        ddb("DeleteTable", {"TableName": "gone"}),
    ]
    plan = plan_compaction(log)
    assert [i for i in range(plan.read) if plan.keeps(i)] == [0, 4]
    assert plan.by_rule == {"dynamodb-table-lifetime": 4}


def test_an_item_written_in_full_again_loses_its_earlier_writes() -> None:
    log = [
        create_table("t", range_key=True),
        put_item("t", item("a", "1", v="1")),
        update_item("t", item("a", "1.0")),  # the same key: 1 and 1.0 are one number
        put_item("t", item("a", "1e0", v="2")),  # replaces both
        update_item("t", item("b", "2")),
        delete_item("t", item("b", "2")),  # removes the item the update made: both go
        delete_item("t", item("c", "3")),  # nothing was there
        put_item("t", item("d", "4")),
        delete_item("t", item("d", "4")),  # the put before it goes: then it deletes nothing
        put_item("t", item("d", "4")),
    ]
    plan = plan_compaction(log)
    assert [i for i in range(plan.read) if plan.keeps(i)] == [0, 3, 9]
    assert plan.by_rule == {"dynamodb-overwritten-item": 4, "dynamodb-redundant-delete": 3}


def test_a_conditional_write_stays_and_keeps_what_came_before() -> None:
    log = [
        create_table("t"),
        put_item("t", item("a")),
        update_item("t", item("a"), ConditionExpression="attribute_exists(pk)"),
        put_item("t", item("a")),
        put_item("t", item("b")),
        put_item("t", item("b"), Expected={"pk": {"Exists": False}}),
        delete_item("t", item("b")),
    ]
    assert kept(log) == [0, 1, 2, 3, 4, 5, 6]


def test_a_write_that_answers_with_the_old_values_keeps_them() -> None:
    log = [
        create_table("t"),
        put_item("t", item("a")),
        put_item("t", item("a"), ReturnValues="ALL_OLD"),  # its answer holds 1's item
        put_item("t", item("b")),
        delete_item("t", item("b"), ReturnValues="ALL_OLD"),
        put_item("t", item("c")),
        put_item("t", item("c"), ReturnValues="NONE"),  # answers nothing of the old item: 5 goes
    ]
    assert kept(log) == [0, 1, 2, 3, 4, 6]


def test_batch_and_transaction_writes_stay_and_keep_earlier_writes_of_their_keys() -> None:
    batch = ddb("BatchWriteItem", {"RequestItems": {"t": [{"PutRequest": {"Item": item("a")}}]}})
    check = ddb("TransactWriteItems", {"TransactItems": [{"ConditionCheck": {"TableName": "t", "Key": item("b")}}]})
    log = [
        create_table("t"),
        put_item("t", item("a")),
        batch,  # keeps 1
        put_item("t", item("a")),  # batch writes stay; this one is replaced below
        put_item("t", item("b")),
        check,  # keeps 4
        put_item("t", item("a")),
        put_item("t", item("b")),
        ddb("DeleteTable", {"TableName": "t"}),  # the table is named by kept calls: it stays
    ]
    assert kept(log) == [0, 1, 2, 4, 5, 6, 7, 8]


def test_a_table_with_a_stream_gets_no_item_rule() -> None:
    stream: dict[str, Any] = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
    created = [create_table("t", **stream), put_item("t", item("a")), put_item("t", item("a"))]
    assert kept(created) == [0, 1, 2]
    updated = [
        create_table("t"),
        put_item("t", item("a")),
        ddb("UpdateTable", {"TableName": "t", **stream}),
        put_item("t", item("a")),  # its stream record shows the item before it
        put_item("t", item("a")),
    ]
    assert kept(updated) == [0, 1, 2, 3, 4]


def test_a_table_not_created_in_the_log_gets_no_item_rule() -> None:
    log = [put_item("pre", item("a")), put_item("pre", item("a")), delete_item("pre", item("b"))]
    assert kept(log) == [0, 1, 2]
    assert kept(log, from_empty=False) == [0, 1, 2]


def test_without_from_empty_item_writes_still_go_but_deletes_of_nothing_stay() -> None:
    log = [create_table("t"), put_item("t", item("a")), put_item("t", item("a")), delete_item("t", item("b"))]
    assert kept(log, from_empty=False) == [0, 2, 3]


def test_an_operation_not_modelled_keeps_the_table_and_its_items() -> None:
    log = [
        create_table("t"),
        put_item("t", item("a")),
        ddb("CreateBackup", {"TableName": "t", "BackupName": "b"}),
        put_item("t", item("a")),
        ddb("DeleteTable", {"TableName": "t"}),
    ]
    assert kept(log) == [0, 1, 2, 3, 4]
    partiql = [
        create_table("t"),
        put_item("t", item("a")),
        ddb("ExecuteStatement", {"Statement": "UPDATE \"t\" SET v = 1 WHERE pk = 'a'"}),
        put_item("t", item("a")),
    ]
    assert kept(partiql) == [0, 1, 2, 3]


# SNS


def test_a_deleted_topic_goes_with_its_subscriptions_and_settings() -> None:
    log = [
        create_queue("inbox"),
        create_topic("t"),
        subscribe("t", "inbox", "s1"),
        sns("SetTopicAttributes", {"TopicArn": topic_arn("t"), "AttributeName": "DisplayName", "AttributeValue": "x"}),
        sns("TagResource", {"ResourceArn": topic_arn("t"), "Tags.member.1.Key": "a", "Tags.member.1.Value": "b"}),
        delete_topic("t"),
    ]
    plan = plan_compaction(log)
    assert [i for i in range(plan.read) if plan.keeps(i)] == [0]
    assert plan.by_rule == {"sns-topic-lifetime": 5}


def test_a_topic_that_published_keeps_its_lifetime() -> None:
    log = [create_queue("inbox"), create_topic("t"), subscribe("t", "inbox", "s1"), publish("t"), delete_topic("t")]
    assert kept(log) == [0, 1, 2, 3, 4]


def test_a_cancelled_subscription_goes_unless_something_was_published_meanwhile() -> None:
    quiet = [create_queue("q"), create_topic("t"), subscribe("t", "q", "s1"), unsubscribe("t", "s1"), publish("t")]
    plan = plan_compaction(quiet)
    assert [i for i in range(plan.read) if plan.keeps(i)] == [0, 1, 4]
    assert plan.by_rule == {"sns-cancelled-subscription": 2}
    delivered = [create_queue("q"), create_topic("t"), subscribe("t", "q", "s1"), publish("t"), unsubscribe("t", "s1")]
    assert kept(delivered) == [0, 1, 2, 3, 4]


def test_subscriptions_of_another_principal_outlive_the_topic() -> None:
    elsewhere = ("x-moto-account-id", "210987654321")
    log = [create_queue("q"), create_topic("t"), subscribe("t", "q", "s1", headers=[elsewhere]), delete_topic("t")]
    assert kept(log) == [0, 1, 2, 3]


def test_a_topic_something_else_publishes_to_keeps_its_subscriptions() -> None:
    alarm = other("cloudwatch", "PutMetricAlarm", {"AlarmActions": [topic_arn("t")]})
    log = [create_queue("q"), create_topic("t"), alarm, subscribe("t", "q", "s1"), unsubscribe("t", "s1")]
    assert kept(log) == [0, 1, 2, 3, 4]


def test_a_publish_to_a_platform_endpoint_is_not_about_a_topic() -> None:
    endpoint = f"arn:aws:sns:us-east-1:{ACCOUNT}:endpoint/GCM/app/abc"
    log = [create_topic("t"), sns("Publish", {"TargetArn": endpoint, "Message": "m"}), delete_topic("t")]
    assert kept(log) == [1]


# more reasons to keep


def test_a_reference_made_before_a_queue_exists_pins_it_too() -> None:
    log = [
        create_topic("t"),
        subscribe("t", "later", "s1"),  # moto accepts a subscription to a queue that does not exist yet
        create_queue("later"),
        publish("t"),  # delivers into it
        delete_queue("later"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4]


def test_a_fifo_queue_something_delivers_to_gets_no_message_rule() -> None:
    fifo = {"FifoQueue": "true"}
    log = [
        create_queue("q.fifo", fifo),
        create_topic("t"),
        subscribe("t", "q.fifo", "s1"),  # a delivery could be deduplicated against a dropped message
        send("q.fifo", "m1", MessageGroupId="g", MessageDeduplicationId="d"),
        receive("q.fifo", ("m1", "h1")),
        delete("q.fifo", "h1"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4, 5]
    standard = [
        create_queue("q"),
        create_topic("t"),
        subscribe("t", "q", "s1"),
        send("q", "m1"),
        receive("q", ("m1", "h1")),
        delete("q", "h1"),
    ]
    assert kept(standard) == [0, 1, 2]


def test_object_tags_left_by_an_earlier_bucket_of_the_same_name_keep_it() -> None:
    log = [
        create_bucket("b"),
        put("b", "k", ("x-amz-tagging", "a=1")),
        delete_object("b", "k"),
        delete_bucket("b"),  # moto keeps the tags of b/k
        create_bucket("b"),
        put("b", "src"),
        copy("b", "k", "b/src"),  # merges them into the copy's
    ]
    assert kept(log) == [0, 1, 2, 3, 4, 5, 6]
    untagged = [
        create_bucket("b"),
        put("b", "k"),
        delete_object("b", "k"),
        delete_bucket("b"),
        create_bucket("b"),
        put("b", "src"),
        copy("b", "k", "b/src"),
    ]
    assert kept(untagged) == [4, 5, 6]


def test_deleting_object_versions_switches_the_object_rule_off() -> None:
    versions = b"<Delete><Object><Key>k</Key><VersionId>v1</VersionId></Object></Delete>"
    log = [
        create_bucket("b"),
        put("b", "k"),
        s3("DeleteObjects", "POST", "/b", "delete", body=versions, response=b"<DeleteResult/>"),
        put("b", "k"),
        put("b", "k"),
    ]
    assert kept(log) == [0, 1, 2, 3, 4]


def test_two_principals_on_one_bucket_switch_the_s3_rules_off() -> None:
    other_account = ("x-moto-account-id", "210987654321")
    log = [create_bucket("b"), put("b", "k"), put("b", "k", other_account), create_bucket("c"), delete_bucket("c")]
    assert kept(log) == [0, 1, 2, 3, 4]


def test_cloudformation_may_create_what_a_later_create_then_only_seems_to_create() -> None:
    stack = other("cloudformation", "CreateStack", {"StackName": "s", "TemplateBody": "{}"})
    log = [stack, create_queue("q"), delete_queue("q"), create_queue("q"), delete_queue("q")]
    assert kept(log) == [0, 1, 2]  # after its delete, the queue is known to be absent


def test_an_unsubscribe_by_another_principal_keeps_the_subscription() -> None:
    elsewhere = ("x-moto-account-id", "210987654321")
    log = [
        create_queue("q"),
        create_topic("t"),
        subscribe("t", "q", "s1"),
        unsubscribe("t", "s1", headers=[elsewhere]),  # pops from its own backend: a no-op
    ]
    assert kept(log) == [0, 1, 2, 3]


def test_without_from_empty_topics_and_their_subscriptions_stay() -> None:
    log = [create_queue("q"), create_topic("t"), subscribe("t", "q", "s1"), unsubscribe("t", "s1"), delete_topic("t")]
    assert kept(log, from_empty=False) == [0, 1, 2, 3, 4]
    assert kept(log) == [0]
