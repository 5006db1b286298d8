"""Convergence is strict: only a call's own times and generated ids are explained; any other difference diverges.

Three layers of evidence: a table of single changes; real recordings (moto behind an in-process
``replay serve``, driven by boto3) whose recorded answers are tampered with, field by field, each of
which ``replay verify`` must report as diverged; and a hypothesis property that perturbs any value of
those recordings that is not a generated id and expects at least one divergence, on the tampered line.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.cli.commands import main
from replay.record.identifiers import id_shape
from replay.restore.convergence import Judge
from replay.restore.diff import REQUEST_IDS, Change
from replay.restore.mapping import IdMapping
from replay.restore.timestamps import CallWindow

if TYPE_CHECKING:
    from conftest import InProcessServer

T0 = 1_764_000_000.0  # the recorded call's arrival
WINDOW = CallWindow.of(T0)
UUID_A = "4f1c2d3e-0a1b-4c5d-8e9f-001122334455"
UUID_B = "9a8b7c6d-5e4f-4a3b-9c2d-665544332211"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # the call's own times, in any form, within its window
        (Change("body.CreationDateTime", "CreationDateTime", T0, T0 + 0.4), "clock"),
        (
            Change("body.LastModified", "LastModified", "2025-11-24T16:00:00.000+0000", "2025-11-24T16:00:00.500+0000"),
            "clock",
        ),
        (
            Change(
                "header last-modified",
                "last-modified",
                "Mon, 24 Nov 2025 16:00:00 GMT",
                "Mon, 24 Nov 2025 16:00:01 GMT",
            ),
            "clock",
        ),
        (Change("body.SentTimestamp", "SentTimestamp", "1764000000000", "1764000000300"), "clock"),
        # generated ids of the same shape
        (Change("body.MessageId", "MessageId", UUID_A, UUID_B), "mapped"),
        (Change("body.InstanceId", "instanceId", "i-0123456789abcdef0", "i-0fedcba9876543210"), "mapped"),
        (
            Change(
                "body.Arn",
                "Arn",
                f"arn:aws:sns:us-east-1:123456789012:t:{UUID_A}",
                f"arn:aws:sns:us-east-1:123456789012:t:{UUID_B}",
            ),
            "mapped",
        ),
        # state: every other difference
        (Change("body.TableStatus", "TableStatus", "ACTIVE", "ARCHIVED"), None),
        (Change("body.BillingMode", "BillingMode", "PAY_PER_REQUEST", "PROVISIONED"), None),
        (Change("body.ItemCount", "ItemCount", 3, 2), None),
        (Change("body.TableSizeBytes", "TableSizeBytes", 1_200_000_000, 1_300_000_000), None),
        (Change("body.Runtime", "Runtime", "python3.12", "python3.11"), None),
        (Change("body.LastUpdateStatus", "LastUpdateStatus", "Successful", "Failed"), None),
        (
            Change("body.ExpirationModel", "ExpirationModel", "KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"),
            None,
        ),
        (Change("body.status", "status", "RUNNING", "FAILED"), None),
        (Change("body.Attributes.VisibilityTimeout", "VisibilityTimeout", "30", "45"), None),
        (Change("body.Enabled", "Enabled", True, False), None),
        (Change("body.QueueName", "QueueName", "OrdersTableForTheBigCustomers", "OrdersTableForTheBigCustomerz"), None),
        (
            Change(
                "body.Arn",
                "Arn",
                "arn:aws:sqs:us-east-1:123456789012:orders",
                "arn:aws:sqs:us-east-1:123456789012:other",
            ),
            None,
        ),
        (
            Change("header etag", "etag", '"d41d8cd98f00b204e9800998ecf8427e"', '"0cc175b9c0f1b6a831c399e269772661"'),
            None,
        ),
        (
            Change(
                "body.MD5OfMessageBody",
                "MD5OfMessageBody",
                "d41d8cd98f00b204e9800998ecf8427e",
                "0cc175b9c0f1b6a831c399e269772661",
            ),
            None,
        ),
        (Change("body.CreationDateTime", "CreationDateTime", T0, T0 + 3 * 365 * 86400), None),  # a date moved by years
        (Change("body.LastModified", "LastModified", "2025-11-24T16:00:00Z", "2028-11-24T16:00:00Z"), None),
        (
            Change("body.Created", "Created", "2021-01-01T00:00:00Z", "2021-01-01T00:00:05Z"),
            None,
        ),  # not this call's time
        (Change("body.Id", "Id", UUID_A, "i-0123456789abcdef0"), None),  # ids of different shapes
        (Change("body.TableName", "TableName", UUID_A, UUID_B), None),  # a name, whatever it looks like
        (Change("body.Tags[0].Value", "Value", "a1b2c3d4e5f6a7b8c9", "f9e8d7c6b5a4f3e2d1"), None),
        (Change("body.Key", "Key", "a", None), None),  # a missing field
        (Change("status", "status", 200, 404), None),
    ],
)
def test_only_own_times_and_generated_ids_are_explained(change: Change, reason: str | None) -> None:
    assert Judge(IdMapping()).explain(change, WINDOW) == reason


def test_a_mapping_stays_one_to_one_and_learns_only_ids() -> None:
    mapping = IdMapping()
    judge = Judge(mapping)
    assert judge.explain(Change("body.Id", "Id", UUID_A, UUID_B), WINDOW) == "mapped"
    third = "11111111-2222-4333-8444-555555555555"
    assert judge.explain(Change("body.Id", "Id", UUID_A, third), WINDOW) is None  # the same id, another value
    assert judge.explain(Change("body.Id", "Id", third, UUID_B), WINDOW) is None  # another id, a taken value
    assert judge.explain(Change("body.Status", "Status", "ACTIVE", "ARCHIVED"), WINDOW) is None
    assert mapping.pairs == {UUID_A: UUID_B}
    # a call that failed on replay teaches nothing, but what is known still explains
    other = "22222222-3333-4444-8555-666666666666"
    assert judge.explain(Change("body.Id", "Id", other, third), WINDOW, learn=False) is None
    assert judge.explain(Change("body.Id", "Id", UUID_A, UUID_B), WINDOW, learn=False) == "mapped"


# real recordings, tampered with


ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
STATE_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def record_workload(server: InProcessServer) -> None:
    """A little of everything whose answers carry state: statuses, enums, counts, sizes, dates, attributes."""
    dynamodb = server.client("dynamodb")
    dynamodb.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="orders", Item={"id": {"S": "1"}, "amount": {"N": "12"}})
    dynamodb.update_item(
        TableName="orders",
        Key={"id": {"S": "1"}},
        UpdateExpression="SET amount = amount + :n",
        ExpressionAttributeValues={":n": {"N": "5"}},
        ReturnValues="ALL_NEW",
    )
    role = server.client("iam").create_role(RoleName="fn-role", AssumeRolePolicyDocument=ROLE_POLICY)["Role"]["Arn"]
    server.client("lambda").create_function(
        FunctionName="fn", Runtime="python3.12", Role=role, Handler="handler.handler", Code={"ZipFile": _zip()}
    )
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    sqs.receive_message(QueueUrl=url, AttributeNames=["All"], VisibilityTimeout=0)
    server.client("kms").create_key(Description="k")
    sfn = server.client("stepfunctions")
    machine = sfn.create_state_machine(name="m", definition=STATE_MACHINE, roleArn=role)["stateMachineArn"]
    sfn.start_execution(stateMachineArn=machine, name="first")
    s3 = server.client("s3")
    s3.create_bucket(Bucket="docs")
    s3.put_bucket_versioning(Bucket="docs", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="docs", Key="a.txt", Body=b"one")
    s3.create_multipart_upload(Bucket="docs", Key="big.bin")


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, emulator: Any, start_server: type[InProcessServer]
) -> list[bytes]:
    """The lines of a log recorded by an in-process ``replay serve`` (module-wide: recording is the slow part)."""
    emulator.reset()
    server = start_server(tmp_path_factory.mktemp("recorded") / "volume")
    try:
        record_workload(server)
    finally:
        server.stop()
    emulator.reset()
    return [line for line in server.log_path.read_bytes().splitlines() if line]


def verify(tmp_path: Path, lines: list[bytes], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    log = tmp_path / "tampered" / "recorded_api_calls.json"
    log.parent.mkdir(exist_ok=True)
    log.write_bytes(b"".join(line + b"\n" for line in lines))
    capsys.readouterr()
    main(["verify", str(log), "--json"])
    out = capsys.readouterr().out
    document: dict[str, Any] = json.loads(out)  # exactly one JSON document on stdout
    return document


def line_of(lines: list[bytes], operation: str) -> int:
    """The index of the first line recording ``operation`` (a REST call is named by method and path)."""
    named = {"CreateFunction": "POST /2015-03-31/functions"}.get(operation, operation)
    return next(index for index, line in enumerate(lines) if orjson.loads(line)["operation"] == named)


def tamper(lines: list[bytes], index: int, edit: Callable[[Any], None]) -> list[bytes]:
    """``lines`` with the JSON body of line ``index``'s recorded response edited in place."""
    entry = orjson.loads(lines[index])
    body = orjson.loads(entry["response"]["body"])
    edit(body)
    entry["response"]["body"] = orjson.dumps(body).decode()
    return [*lines[:index], orjson.dumps(entry), *lines[index + 1 :]]


def tamper_text(lines: list[bytes], index: int, old: str, new: str) -> list[bytes]:
    entry = orjson.loads(lines[index])
    assert old in entry["response"]["body"], (old, entry["response"]["body"][:300])
    entry["response"]["body"] = entry["response"]["body"].replace(old, new, 1)
    return [*lines[:index], orjson.dumps(entry), *lines[index + 1 :]]


YEARS = 3 * 365 * 86400


def _set(path: str, value: Any) -> Callable[[Any], None]:
    def edit(body: Any) -> None:
        *parents, last = path.split(".")
        node = body
        for name in parents:
            node = node[int(name)] if name.isdigit() else node[name]
        node[int(last) if last.isdigit() else last] = value(node[last]) if callable(value) else value

    return edit


CASES: list[tuple[str, str, Callable[[Any], None], str]] = [
    ("DynamoDB TableStatus", "CreateTable", _set("TableDescription.TableStatus", "ARCHIVED"), "TableStatus"),
    (
        "DynamoDB BillingMode",
        "CreateTable",
        _set("TableDescription.BillingModeSummary.BillingMode", "PROVISIONED"),
        "BillingMode",
    ),
    ("DynamoDB ItemCount", "CreateTable", _set("TableDescription.ItemCount", 42), "ItemCount"),
    (
        "DynamoDB TableSizeBytes",
        "CreateTable",
        _set("TableDescription.TableSizeBytes", 1_250_000_000),
        "TableSizeBytes",
    ),
    (
        "DynamoDB date moved by years",
        "CreateTable",
        _set("TableDescription.CreationDateTime", lambda v: v + YEARS),
        "CreationDateTime",
    ),
    ("DynamoDB attribute value", "UpdateItem", _set("Attributes.amount.N", "18"), "amount"),
    ("Lambda Runtime", "CreateFunction", _set("Runtime", "python3.11"), "Runtime"),
    ("Lambda LastUpdateStatus", "CreateFunction", _set("LastUpdateStatus", "Failed"), "LastUpdateStatus"),
    (
        "Lambda date moved by years",
        "CreateFunction",
        _set("LastModified", lambda v: v.replace("20", "23", 1)),
        "LastModified",
    ),
    (
        "SQS receive count",
        "ReceiveMessage",
        _set("Messages.0.Attributes.ApproximateReceiveCount", "3"),
        "ApproximateReceiveCount",
    ),
    (
        "SQS sent timestamp moved by a year",
        "ReceiveMessage",
        _set("Messages.0.Attributes.SentTimestamp", lambda v: str(int(v) + 365 * 86400 * 1000)),
        "SentTimestamp",
    ),
    ("SQS message body", "ReceiveMessage", _set("Messages.0.Body", "hellO"), "Body"),
    (
        "KMS ExpirationModel",
        "CreateKey",
        _set("KeyMetadata.ExpirationModel", "KEY_MATERIAL_EXPIRES"),
        "ExpirationModel",
    ),
    ("KMS KeyState", "CreateKey", _set("KeyMetadata.KeyState", "PendingDeletion"), "KeyState"),
    ("KMS Enabled", "CreateKey", _set("KeyMetadata.Enabled", False), "Enabled"),
    ("Step Functions status", "StartExecution", _set("status", "RUNNING"), "status"),
    ("Step Functions date moved by years", "StartExecution", _set("startDate", lambda v: v - YEARS), "startDate"),
]


def test_the_untampered_recording_verifies_clean(
    recorded: list[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = verify(tmp_path, recorded, capsys)
    assert (report["failed"], report["diverged"]) == (0, 0), report["divergences"] or report["failures"]
    assert report["restored"] == len(recorded)


@pytest.mark.parametrize(("name", "operation", "edit", "field"), CASES, ids=[case[0] for case in CASES])
def test_a_tampered_state_value_is_reported_as_diverged(
    recorded: list[bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    operation: str,
    edit: Callable[[Any], None],
    field: str,
) -> None:
    index = line_of(recorded, operation)
    report = verify(tmp_path, tamper(recorded, index, edit), capsys)
    assert report["diverged"] >= 1, name
    [divergence] = [d for d in report["divergences"] if d["line"] == index + 1]
    assert any(field in change["where"] for change in divergence["changes"]), divergence
    assert report["mapped"] == 0  # nothing was taken for a generated id


def test_tampered_xml_answers_diverge(
    recorded: list[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = line_of(recorded, "CreateMultipartUpload")
    report = verify(tmp_path, tamper_text(recorded, index, "<Key>big.bin</Key>", "<Key>big.bim</Key>"), capsys)
    assert [d["line"] for d in report["divergences"]] == [index + 1]
    versioned = line_of(recorded, "PutObject")
    entry = orjson.loads(recorded[versioned])
    etag = dict((k.lower(), v) for k, v in entry["response"]["headers"])["etag"]
    entry["response"]["headers"] = [
        [k, '"0cc175b9c0f1b6a831c399e269772661"' if k.lower() == "etag" else v] for k, v in entry["response"]["headers"]
    ]
    assert etag != '"0cc175b9c0f1b6a831c399e269772661"'
    lines = [*recorded[:versioned], orjson.dumps(entry), *recorded[versioned + 1 :]]
    report = verify(tmp_path, lines, capsys)
    assert [d["line"] for d in report["divergences"]] == [versioned + 1]  # a digest is never an id


# the property: perturb any value that is not a generated id


def _leaves(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key not in REQUEST_IDS:
                yield from _leaves(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _leaves(value, (*path, index))
    elif isinstance(data, str) and data[:1] in ("{", "["):
        return  # a JSON document inside a string: its own leaves are perturbed through the string
    else:
        yield path, data


def _is_generated(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    return id_shape(value) is not None or any(id_shape(part) is not None for part in re.split(r"[:/?&=#]", value))


def perturbable(lines: list[bytes]) -> list[tuple[int, tuple[Any, ...], Any]]:
    """Every (line, path, value) of a JSON answer whose value is not a generated id (nor holds one)."""
    found = []
    for index, line in enumerate(lines):
        entry = orjson.loads(line)
        text = entry["response"]["body"]
        if entry["response"].get("encoding") != "utf-8" or text[:1] != "{":
            continue
        for path, value in _leaves(orjson.loads(text)):
            if not _is_generated(value):
                found.append((index, path, value))
    return found


def _other(value: Any) -> st.SearchStrategy[Any]:
    """Values unlike ``value``: never an id-shaped string, and times moved well outside the call's window."""
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, (int, float)):
        return st.one_of(
            st.integers(-(10**12), 10**12),
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([value + 3 * 365 * 86400, value - 2]),
        ).filter(lambda other: other != value)
    texts = st.one_of(
        st.sampled_from(["ACTIVE", "ARCHIVED", "FAILED", "RUNNING", "0", "1", "true", "", "2019-01-01T00:00:00Z"]),
        st.text(max_size=12),
    )
    return texts.filter(lambda other: other != value and id_shape(other) is None)


@pytest.mark.fuzz
@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    max_examples=int(os.environ.get("REPLAY_FUZZ_EXAMPLES", "0") or 0) or 12,  # each example replays a recording
)
@given(data=st.data())
def test_any_perturbed_value_that_is_not_an_id_diverges(
    recorded: list[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    candidates = perturbable(recorded)
    assert len(candidates) > 50
    index, path, value = data.draw(st.sampled_from(candidates), label="leaf")
    replacement = data.draw(_other(value), label="replacement")

    def edit(body: Any) -> None:
        node = body
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = replacement

    report = verify(tmp_path, tamper(recorded, index, edit), capsys)
    assert report["diverged"] >= 1
    assert index + 1 in [divergence["line"] for divergence in report["divergences"]]
    assert report["mapped"] == 0
