"""Selective persistence applied: the classifier wrapper on real boto3 requests, the adapter wrapper,
and both backends in-process on moto honouring them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config as BotoConfig

from replay.adapters.moto import MotoAdapter
from replay.backends import create_backend
from replay.backends.record_replay import RecordReplayBackend
from replay.backends.selective import SelectiveAdapter, SelectiveClassifier, is_data_plane, narrow
from replay.backends.snapshot import SnapshotBackend
from replay.config import BackendKind, Config, SaveStrategy
from replay.errors import ConfigError, ReplayError
from replay.record.classify import Call, DefaultClassifier
from replay.record.entry import Request
from replay.restore.transport import WSGITransport
from replay.scope import PersistenceScope, ServiceSelection
from replay.serve.emulators import Emulator
from replay.storage.checkpoint import read_manifest

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ACCOUNT = "123456789012"
INFRASTRUCTURE = PersistenceScope.INFRASTRUCTURE


def select(text: str) -> ServiceSelection:
    return ServiceSelection.parse("PERSISTENCE_SERVICES", text)


def nothing(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [])
    return [b""]


class _Sent(Exception):
    """Raised from botocore's ``before-send``: the request is built, nothing goes out."""


def boto(service: str, operation: str, **kwargs: Any) -> Request:
    """The request boto3 makes for ``operation``, as replay sees it (nothing is sent)."""
    client = boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url="http://localhost:4566",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    built: list[Any] = []

    def stop(request: Any, **_: Any) -> None:
        built.append(request)
        raise _Sent

    client.meta.events.register("before-send", stop)
    try:
        getattr(client, operation)(**kwargs)
    except _Sent:
        pass
    finally:
        client.close()
    [prepared] = built
    url = urlsplit(prepared.url)
    body = prepared.body or b""
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    headers = [
        (k if isinstance(k, str) else k.decode(), v if isinstance(v, str) else v.decode())
        for k, v in prepared.headers.items()
    ]
    return Request(prepared.method, url.path, url.query, headers, body)


def test_names_are_checked_against_the_emulator_where_it_is_known(tmp_path: Path) -> None:
    adapter = MotoAdapter()
    for fine in ("sqs", "lambda", "awslambda", "cognito-idp", "monitoring", "states", "-dynamodb"):
        narrow(select(fine), PersistenceScope.ALL, None, adapter)
    config = Config(data_dir=tmp_path, services=select("s3,sqss"))
    with pytest.raises(ConfigError) as caught:
        create_backend(config, nothing, adapter=adapter)
    message = str(caught.value)
    assert message.startswith(
        "invalid value for PERSISTENCE_SERVICES: 's3,sqss' (unknown service 'sqss'; did you mean sqs"
    )
    assert "\n" not in message and not tmp_path.joinpath("recorded_api_calls.json").exists()
    # without a state adapter every name is accepted, and everything kept means nothing is wrapped
    classifier, none = narrow(select("anything"), PersistenceScope.ALL, None, None)
    assert isinstance(classifier, SelectiveClassifier) and none is None
    inner = DefaultClassifier()
    assert narrow(ServiceSelection(), PersistenceScope.ALL, inner, adapter) == (inner, adapter)


# --- the classifier wrapper on real boto3 requests ---------------------------------------------

DATA_PLANE = [
    ("sqs", "send_message", {"QueueUrl": "http://localhost:4566/1/q", "MessageBody": "m"}),
    ("sqs", "send_message_batch", {"QueueUrl": "q", "Entries": [{"Id": "1", "MessageBody": "m"}]}),
    ("sqs", "receive_message", {"QueueUrl": "q"}),
    ("sqs", "delete_message", {"QueueUrl": "q", "ReceiptHandle": "r"}),
    ("sqs", "delete_message_batch", {"QueueUrl": "q", "Entries": [{"Id": "1", "ReceiptHandle": "r"}]}),
    ("sqs", "change_message_visibility", {"QueueUrl": "q", "ReceiptHandle": "r", "VisibilityTimeout": 1}),
    (
        "sqs",
        "change_message_visibility_batch",
        {"QueueUrl": "q", "Entries": [{"Id": "1", "ReceiptHandle": "r", "VisibilityTimeout": 1}]},
    ),
    ("sqs", "purge_queue", {"QueueUrl": "q"}),
    ("sqs", "start_message_move_task", {"SourceArn": "arn:aws:sqs:us-east-1:1:dlq"}),
    ("s3", "put_object", {"Bucket": "bkt", "Key": "k ü", "Body": b"x"}),
    ("s3", "copy_object", {"Bucket": "bkt", "Key": "k2", "CopySource": "bkt/k"}),
    ("s3", "delete_object", {"Bucket": "bkt", "Key": "k"}),
    ("s3", "delete_objects", {"Bucket": "bkt", "Delete": {"Objects": [{"Key": "k"}]}}),
    ("s3", "create_multipart_upload", {"Bucket": "bkt", "Key": "k"}),
    ("s3", "upload_part", {"Bucket": "bkt", "Key": "k", "UploadId": "u", "PartNumber": 1, "Body": b"x"}),
    ("s3", "upload_part_copy", {"Bucket": "bkt", "Key": "k", "UploadId": "u", "PartNumber": 1, "CopySource": "b/k"}),
    (
        "s3",
        "complete_multipart_upload",
        {"Bucket": "bkt", "Key": "k", "UploadId": "u", "MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": "e"}]}},
    ),
    ("s3", "abort_multipart_upload", {"Bucket": "bkt", "Key": "k", "UploadId": "u"}),
    ("s3", "put_object_tagging", {"Bucket": "bkt", "Key": "k", "Tagging": {"TagSet": []}}),
    ("s3", "delete_object_tagging", {"Bucket": "bkt", "Key": "k"}),
    ("s3", "put_object_acl", {"Bucket": "bkt", "Key": "k", "ACL": "private"}),
    ("s3", "put_object_retention", {"Bucket": "bkt", "Key": "k", "Retention": {"Mode": "GOVERNANCE"}}),
    ("s3", "put_object_legal_hold", {"Bucket": "bkt", "Key": "k", "LegalHold": {"Status": "ON"}}),
    ("s3", "restore_object", {"Bucket": "bkt", "Key": "k", "RestoreRequest": {"Days": 1}}),
    ("dynamodb", "put_item", {"TableName": "t", "Item": {"pk": {"S": "a"}}}),
    ("dynamodb", "update_item", {"TableName": "t", "Key": {"pk": {"S": "a"}}}),
    ("dynamodb", "delete_item", {"TableName": "t", "Key": {"pk": {"S": "a"}}}),
    ("dynamodb", "batch_write_item", {"RequestItems": {"t": [{"PutRequest": {"Item": {"pk": {"S": "a"}}}}]}}),
    ("dynamodb", "transact_write_items", {"TransactItems": [{"Put": {"TableName": "t", "Item": {"pk": {"S": "a"}}}}]}),
    ("dynamodb", "execute_statement", {"Statement": "INSERT INTO t VALUE {'pk': 'a'}"}),
    ("dynamodb", "batch_execute_statement", {"Statements": [{"Statement": "DELETE FROM t WHERE pk = 'a'"}]}),
    ("dynamodb", "execute_transaction", {"TransactStatements": [{"Statement": "DELETE FROM t WHERE pk = 'a'"}]}),
    ("sns", "publish", {"TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": "m"}),
    ("sns", "publish_batch", {"TopicArn": "t", "PublishBatchRequestEntries": [{"Id": "1", "Message": "m"}]}),
    ("kinesis", "put_record", {"StreamName": "s", "Data": b"x", "PartitionKey": "p"}),
    ("kinesis", "put_records", {"StreamName": "s", "Records": [{"Data": b"x", "PartitionKey": "p"}]}),
    ("firehose", "put_record", {"DeliveryStreamName": "d", "Record": {"Data": b"x"}}),
    ("firehose", "put_record_batch", {"DeliveryStreamName": "d", "Records": [{"Data": b"x"}]}),
    (
        "logs",
        "put_log_events",
        {"logGroupName": "g", "logStreamName": "s", "logEvents": [{"timestamp": 1, "message": "m"}]},
    ),
    ("cloudwatch", "put_metric_data", {"Namespace": "n", "MetricData": [{"MetricName": "m", "Value": 1.0}]}),
    ("events", "put_events", {"Entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}]}),
    ("lambda", "invoke", {"FunctionName": "my-function", "Payload": b"{}"}),
    ("lambda", "invoke", {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:f"}),
    ("lambda", "invoke_async", {"FunctionName": "f", "InvokeArgs": b"{}"}),
    ("lambda", "invoke_with_response_stream", {"FunctionName": "f"}),
    ("ses", "send_email", {"Source": "a@b.c", "Destination": {}, "Message": {"Subject": {"Data": "s"}, "Body": {}}}),
    ("ses", "send_raw_email", {"RawMessage": {"Data": b"From: a@b.c\r\n\r\nhi"}}),
    ("sesv2", "send_email", {"Content": {"Raw": {"Data": b"From: a@b.c\r\n\r\nhi"}}}),
    ("stepfunctions", "start_execution", {"stateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:m"}),
    ("stepfunctions", "stop_execution", {"executionArn": "e"}),
    ("stepfunctions", "send_task_success", {"taskToken": "t", "output": "{}"}),
    ("stepfunctions", "send_task_failure", {"taskToken": "t"}),
    ("stepfunctions", "send_task_heartbeat", {"taskToken": "t"}),
]

INFRASTRUCTURE_CALLS = [
    ("sqs", "create_queue", {"QueueName": "q", "Attributes": {"VisibilityTimeout": "5"}}),
    ("sqs", "set_queue_attributes", {"QueueUrl": "q", "Attributes": {"DelaySeconds": "1"}}),
    ("sqs", "tag_queue", {"QueueUrl": "q", "Tags": {"a": "b"}}),
    ("sqs", "delete_queue", {"QueueUrl": "q"}),
    ("s3", "create_bucket", {"Bucket": "bkt"}),
    ("s3", "put_bucket_versioning", {"Bucket": "bkt", "VersioningConfiguration": {"Status": "Enabled"}}),
    ("s3", "put_bucket_policy", {"Bucket": "bkt", "Policy": "{}"}),
    ("s3", "put_bucket_tagging", {"Bucket": "bkt", "Tagging": {"TagSet": []}}),
    ("s3", "delete_bucket", {"Bucket": "bkt"}),
    (
        "dynamodb",
        "create_table",
        {
            "TableName": "t",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        },
    ),
    (
        "dynamodb",
        "update_time_to_live",
        {"TableName": "t", "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "x"}},
    ),
    ("sns", "create_topic", {"Name": "t"}),
    ("sns", "subscribe", {"TopicArn": "t", "Protocol": "sqs", "Endpoint": "arn:aws:sqs:us-east-1:1:q"}),
    ("kinesis", "create_stream", {"StreamName": "s", "ShardCount": 1}),
    ("logs", "create_log_group", {"logGroupName": "g"}),
    ("logs", "create_log_stream", {"logGroupName": "g", "logStreamName": "s"}),
    ("lambda", "delete_function", {"FunctionName": "f"}),
    ("stepfunctions", "create_state_machine", {"name": "m", "definition": "{}", "roleArn": "r"}),
]


@pytest.mark.parametrize(("service", "operation", "kwargs"), DATA_PLANE, ids=lambda v: v if isinstance(v, str) else "")
def test_data_plane_calls_are_not_kept_under_infrastructure(service: str, operation: str, kwargs: Any) -> None:
    request = boto(service, operation, **kwargs)
    call = DefaultClassifier()(request)
    assert call.mutating and is_data_plane(call), call
    assert SelectiveClassifier(DefaultClassifier(), ServiceSelection(), INFRASTRUCTURE)(request) == call._replace(
        mutating=False
    )
    assert SelectiveClassifier(DefaultClassifier(), ServiceSelection())(request) == call  # scope all: kept


@pytest.mark.parametrize(
    ("service", "operation", "kwargs"), INFRASTRUCTURE_CALLS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_infrastructure_calls_are_kept_under_infrastructure(service: str, operation: str, kwargs: Any) -> None:
    request = boto(service, operation, **kwargs)
    call = SelectiveClassifier(DefaultClassifier(), ServiceSelection(), INFRASTRUCTURE)(request)
    assert call.mutating and not is_data_plane(call), call


def test_calls_to_services_not_selected_are_not_mutating_and_control_calls_stay() -> None:
    adapter = MotoAdapter()
    only = SelectiveClassifier(DefaultClassifier(), select("sqs,awslambda"), resolve=adapter.service_for)
    create_table = boto("dynamodb", "create_table", **INFRASTRUCTURE_CALLS[9][2])
    assert only(create_table) == Call("dynamodb", "CreateTable", False)
    assert only(boto("sqs", "create_queue", QueueName="q")).mutating
    assert only(boto("lambda", "delete_function", FunctionName="f")).mutating  # awslambda is lambda
    assert only(boto("sqs", "list_queues")) == Call("sqs", "ListQueues", False)  # reads stay reads
    assert only(Request("POST", "/moto-api/reset", "", [], b"")) == Call("moto", "Reset", True)
    but = SelectiveClassifier(DefaultClassifier(), select("-dynamodb"))
    assert not but(create_table).mutating and but(boto("s3", "create_bucket", Bucket="bkt")).mutating


def test_recordable_is_the_inner_classifiers() -> None:
    classifier = SelectiveClassifier(DefaultClassifier(), select("sqs"))
    receive = Call("sqs", "ReceiveMessage", True)
    assert not classifier.recordable(receive, 200, b"{}")  # a receive that took nothing
    assert classifier.recordable(receive, 200, b'{"Messages": []}')
    plain = SelectiveClassifier(lambda request: Call("x", "Op", True), ServiceSelection())
    assert plain.recordable(receive, 200, b"{}")


# --- both backends in-process on moto ----------------------------------------------------------


def persisted(emulator: Emulator, data: Path, **settings: Any) -> tuple[Any, WSGITransport]:
    """The backend ``settings`` ask for, restored from ``data``, and a transport into the app it wraps."""
    config = Config(data_dir=data, checkpoint_percentage=0, save_strategy=SaveStrategy.MANUAL, **settings)
    made = create_backend(config, emulator.app, None, emulator.seeder, emulator.adapter, emulator.reset)
    made.restore()
    return made, WSGITransport(made.wrap(emulator.app))


def send(transport: WSGITransport, request: Request) -> dict[str, Any]:
    answer = transport.send(request)
    assert answer.ok, answer.body
    return json.loads(answer.body) if answer.body.startswith(b"{") else {}


def make_state(transport: WSGITransport) -> str:
    """A queue with a message and a table with an item; returns the queue URL."""
    url: str = send(transport, boto("sqs", "create_queue", QueueName="jobs"))["QueueUrl"]
    send(transport, boto("sqs", "send_message", QueueUrl=url, MessageBody="hello"))
    send(
        transport,
        boto(
            "dynamodb",
            "create_table",
            TableName="things",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        ),
    )
    send(transport, boto("dynamodb", "put_item", TableName="things", Item={"pk": {"S": "a"}}))
    return url


def live() -> tuple[list[str], list[str], list[str]]:
    """Queue names, their message bodies, and table names in moto right now."""
    from moto.backends import get_backend

    queues = get_backend("sqs")[ACCOUNT]["us-east-1"].queues  # type: ignore[call-overload]
    tables = get_backend("dynamodb")[ACCOUNT]["us-east-1"].tables  # type: ignore[call-overload]
    return sorted(queues), [m.body for q in queues.values() for m in q._messages], sorted(tables)


def test_a_checkpoint_keeps_selected_services_without_their_data_plane(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, transport = persisted(fresh, data)  # everything, as before the setting
    make_state(transport)
    assert {"dynamodb", "sqs"} <= set(first.checkpoint().services)
    first.close(checkpoint=False)

    fresh.reset()  # type: ignore[misc]
    second, transport = persisted(fresh, data, services=select("-dynamodb"), scope=INFRASTRUCTURE)
    assert isinstance(second, RecordReplayBackend) and isinstance(second.adapter, SelectiveAdapter)
    assert live() == (["jobs"], ["hello"], [])  # the old checkpoint's dynamodb snapshot is not loaded
    url = send(transport, boto("sqs", "get_queue_url", QueueName="jobs"))["QueueUrl"]
    send(transport, boto("sqs", "send_message", QueueUrl=url, MessageBody="not recorded"))
    send(transport, boto("sqs", "tag_queue", QueueUrl=url, Tags={"kept": "yes"}))
    assert live()[1] == ["hello", "not recorded"]  # served as usual
    result = second.checkpoint()
    assert "sqs" in result.services and "dynamodb" not in result.services
    manifest = read_manifest(data)
    assert manifest is not None and "dynamodb" not in manifest.services
    assert not (data / "checkpoints" / manifest.checkpoint / "state" / "dynamodb.state").exists()
    assert live()[1] == ["hello", "not recorded"]  # the checkpoint did not touch the live queue
    second.close(checkpoint=False)

    fresh.reset()  # type: ignore[misc]
    third, transport = persisted(fresh, data)
    assert live() == (["jobs"], [], [])  # the queue without its messages, no table
    assert send(transport, boto("sqs", "list_queue_tags", QueueUrl=url))["Tags"] == {"kept": "yes"}
    third.close(checkpoint=False)


def test_the_log_holds_no_data_plane_call_and_no_call_to_an_excluded_service(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    recorder, transport = persisted(fresh, data, services=select("sqs"), scope=INFRASTRUCTURE)
    url = make_state(transport)
    send(transport, boto("sqs", "set_queue_attributes", QueueUrl=url, Attributes={"DelaySeconds": "2"}))
    send(transport, boto("sqs", "receive_message", QueueUrl=url))
    recorder.close(checkpoint=False)
    lines = (data / "recorded_api_calls.json").read_bytes().splitlines()
    assert [(e["service"], e["operation"]) for e in map(json.loads, lines)] == [
        ("sqs", "CreateQueue"),
        ("sqs", "SetQueueAttributes"),
    ]


def test_the_snapshot_backend_saves_and_loads_selected_services_only(fresh: Emulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    everything, transport = persisted(fresh, data, backend=BackendKind.SNAPSHOT)
    url = make_state(transport)
    assert [r["status"] for r in everything.save(["sqs", "dynamodb"])] == ["ok", "ok"]
    everything.close()

    fresh.reset()  # type: ignore[misc]
    chosen, transport = persisted(
        fresh, data, backend=BackendKind.SNAPSHOT, services=select("sqs"), scope=INFRASTRUCTURE
    )
    assert isinstance(chosen, SnapshotBackend) and chosen.saved_services() == ["sqs"]
    tables = send(transport, boto("dynamodb", "list_tables"))
    assert tables["TableNames"] == []  # not loaded lazily, not loaded at all
    assert send(transport, boto("sqs", "list_queues"))["QueueUrls"] == [url]  # loaded on this first request
    assert live() == (["jobs"], ["hello"], [])  # as saved
    assert "sqs" in chosen.loaded and "dynamodb" not in chosen.loaded
    send(transport, boto("sqs", "send_message", QueueUrl=url, MessageBody="x"))
    assert "sqs" not in chosen.dirty  # a data-plane call changes nothing that is kept
    [refused] = chosen.save(["dynamodb"])
    assert refused["status"] == "error"
    assert refused["message"] == "could not save dynamodb: dynamodb is not persisted (PERSISTENCE_SERVICES: sqs only)"
    assert [r["status"] for r in chosen.save(["sqs"])] == ["ok"]
    chosen.close()

    fresh.reset()  # type: ignore[misc]
    again, transport = persisted(fresh, data, backend=BackendKind.SNAPSHOT)
    assert [r["status"] for r in again.load()] == ["ok", "ok"]
    assert live() == (["jobs"], [], ["things"])  # the queue saved bare; the table's file from before is untouched
    again.close()


def test_the_adapter_wrapper_narrows_every_method(fresh: Emulator) -> None:
    adapter = SelectiveAdapter(MotoAdapter(), select("lambda,sqs"), INFRASTRUCTURE)
    assert adapter.services() == ["awslambda", "sqs"]
    assert adapter.service_for("lambda") == "awslambda" and adapter.service_for("dynamodb") is None
    assert adapter.affected("sns") == {"sqs", "awslambda"}  # not sns itself: it is not selected
    with pytest.raises(ReplayError, match=r"^dynamodb is not persisted \(PERSISTENCE_SERVICES: lambda, sqs only\)$"):
        adapter.dump("dynamodb")
    adapter.load("dynamodb", b"not even a pickle")  # not selected: left as it is
    assert adapter.meta() == MotoAdapter().meta()
