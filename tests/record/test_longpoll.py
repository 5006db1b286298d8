"""Long polls behind ``replay serve`` wait in real time and hold nothing while they wait.

moto behind an in-process ``replay serve`` (seeded, clock frozen inside recorded calls), driven by boto3.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import requests
from botocore.exceptions import ClientError

from replay.record.entry import Request
from replay.record.longpoll import requested_wait, without_wait

if TYPE_CHECKING:
    from conftest import InProcessServer


def entries(server: InProcessServer) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in server.log_path.read_bytes().splitlines() if line]


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@pytest.mark.timing
def test_a_long_poll_on_an_empty_queue_returns_after_its_wait(in_process_server: InProcessServer) -> None:
    sqs = in_process_server.client("sqs")
    url = sqs.create_queue(QueueName="empty")["QueueUrl"]
    answer, took = timed(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2))
    assert "Messages" not in answer
    assert 1.9 <= took <= 3.0, took
    assert [entry["operation"] for entry in entries(in_process_server)] == ["CreateQueue"]  # nothing changed


@pytest.mark.timing
def test_the_queue_default_wait_applies_when_the_request_names_none(in_process_server: InProcessServer) -> None:
    sqs = in_process_server.client("sqs")
    url = sqs.create_queue(QueueName="slow", Attributes={"ReceiveMessageWaitTimeSeconds": "2"})["QueueUrl"]
    _, took = timed(lambda: sqs.receive_message(QueueUrl=url))
    assert 1.9 <= took <= 3.0, took
    quick = sqs.create_queue(QueueName="quick")["QueueUrl"]
    _, took = timed(lambda: sqs.receive_message(QueueUrl=quick))
    assert took < 1.0, took


@pytest.mark.timing
def test_a_message_sent_during_a_long_poll_is_delivered_at_once_and_recorded_exactly(
    in_process_server: InProcessServer,
) -> None:
    sqs = in_process_server.client("sqs")
    url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    got: dict[str, Any] = {}

    sender = in_process_server.client("sqs")  # made before the poll: a busy machine takes a while to build one

    def poll() -> None:
        got["answer"] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)
        got["answered"] = time.monotonic()

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    sent = time.monotonic()
    sender.send_message(QueueUrl=url, MessageBody="late")
    poller.join(timeout=5)
    assert not poller.is_alive()
    assert [message["Body"] for message in got["answer"]["Messages"]] == ["late"]
    # delivered within the next attempt (a second apart), not at the end of the 10 s wait
    assert got["answered"] - sent < 1.5, got["answered"] - sent
    [receive] = [entry for entry in entries(in_process_server) if entry["operation"] == "ReceiveMessage"]
    assert orjson.loads(receive["request"]["body"])["WaitTimeSeconds"] == 0  # the attempt that got it: instant
    assert "waited" not in receive


@pytest.mark.timing
def test_other_calls_and_checkpoints_do_not_wait_for_a_long_poll(in_process_server: InProcessServer) -> None:
    sqs = in_process_server.client("sqs")
    waiting = sqs.create_queue(QueueName="waiting")["QueueUrl"]
    busy = sqs.create_queue(QueueName="busy")["QueueUrl"]

    def latencies(count: int) -> list[float]:
        return [timed(lambda: sqs.send_message(QueueUrl=busy, MessageBody="x"))[1] for _ in range(count)]

    idle = statistics.median(latencies(15))
    polls = [
        threading.Thread(
            target=lambda: in_process_server.client("sqs").receive_message(QueueUrl=waiting, WaitTimeSeconds=4)
        )
        for _ in range(3)
    ]
    for poll in polls:
        poll.start()
    time.sleep(0.3)
    during = statistics.median(latencies(15))
    saved, took = timed(lambda: requests.post(in_process_server.endpoint + "/_localstack/state/save", timeout=10))
    for poll in polls:
        poll.join(timeout=10)
    assert saved.status_code == 200 and b'"ok"' in saved.content, saved.text
    assert took < 1.0, f"the checkpoint waited {took:.2f} s for long polls"
    assert during < idle + 0.5, (idle, during)  # nothing waits for the polls (4 s, attempts a second apart)


@pytest.mark.timing
def test_stopping_the_server_ends_long_polls_at_once(in_process_server: InProcessServer) -> None:
    sqs = in_process_server.client("sqs")
    url = sqs.create_queue(QueueName="stopping")["QueueUrl"]
    got: dict[str, Any] = {}

    def poll() -> None:
        got["answer"], got["took"] = timed(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    _, took = timed(in_process_server.stop)
    poller.join(timeout=5)
    assert took < 2.0, took
    assert "Messages" not in got["answer"]
    assert got["took"] < 3.0


@pytest.mark.parametrize(
    ("request_", "wait"),
    [
        (
            Request(
                "POST",
                "/",
                "",
                [("Content-Type", "application/x-amz-json-1.0")],
                b'{"QueueUrl": "q", "WaitTimeSeconds": 7}',
            ),
            7,
        ),
        (Request("POST", "/", "", [("Content-Type", "application/x-amz-json-1.0")], b'{"QueueUrl": "q"}'), None),
        (
            Request(
                "POST",
                "/",
                "",
                [("Content-Type", "application/x-www-form-urlencoded")],
                b"Action=ReceiveMessage&WaitTimeSeconds=3",
            ),
            3,
        ),
        (Request("GET", "/q", "Action=ReceiveMessage&WaitTimeSeconds=5", [], b""), 5),
    ],
)
def test_the_wait_a_request_names(request_: Request, wait: int | None) -> None:
    assert requested_wait(request_) == wait
    assert requested_wait(without_wait(request_)) == 0


@pytest.mark.parametrize("wait", ["99", "-1", "x"])
def test_a_wait_that_is_not_valid_goes_to_the_emulator_as_sent(wait: str) -> None:
    request = Request(
        "POST", "/", "", [("Content-Type", "application/x-www-form-urlencoded")], f"WaitTimeSeconds={wait}".encode()
    )
    with pytest.raises(ValueError):
        requested_wait(request)


def test_moto_refuses_a_wait_out_of_range_behind_replay_as_it_does_alone(in_process_server: InProcessServer) -> None:
    sqs = in_process_server.client("sqs")
    url = sqs.create_queue(QueueName="strict")["QueueUrl"]
    with pytest.raises(ClientError) as refused:
        sqs.receive_message(QueueUrl=url, WaitTimeSeconds=21)
    assert "WaitTimeSeconds" in str(refused.value)
    with pytest.raises(ClientError):
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11, WaitTimeSeconds=5)
