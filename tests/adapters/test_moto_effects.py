"""Receives that return nothing but change state are recorded, so a restart equals the live state.

moto behind an in-process ``replay serve``, driven by boto3; the restart is a second in-process server on
the same data dir after moto was emptied.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import orjson

from replay.cli.commands import main

if TYPE_CHECKING:
    import pytest
    from conftest import InProcessServer

    from replay.serve.emulators import Emulator


def operations(server: InProcessServer) -> list[tuple[str, bool]]:
    """(operation, returned messages?) of every entry in the log."""
    found = []
    for line in server.log_path.read_bytes().splitlines():
        entry = orjson.loads(line)
        found.append((entry["operation"], '"Messages"' in entry["response"]["body"]))
    return found


def queue_state(server: InProcessServer, url: str) -> dict[str, Any]:
    sqs = server.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    keep = (
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )
    return {name: attributes[name] for name in keep}


def restart(server: InProcessServer, fresh: Emulator, start_server: type[InProcessServer]) -> InProcessServer:
    server.stop()
    assert fresh.reset is not None
    fresh.reset()
    return start_server(server.data_dir)


def test_an_empty_receive_that_moved_a_message_to_the_dead_letter_queue_is_recorded(
    in_process_server: InProcessServer,
    fresh: Emulator,
    start_server: type[InProcessServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sqs = in_process_server.client("sqs")
    dlq = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    jobs = sqs.create_queue(QueueName="jobs", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    sqs.send_message(QueueUrl=jobs, MessageBody="poison")
    [first] = sqs.receive_message(QueueUrl=jobs, VisibilityTimeout=0)["Messages"]
    assert first["Body"] == "poison"
    assert "Messages" not in sqs.receive_message(QueueUrl=jobs)  # the redrive: nothing returned, a message moved
    assert "Messages" not in sqs.receive_message(QueueUrl=jobs)  # nothing left to move: not recorded
    live = {"jobs": queue_state(in_process_server, jobs), "dlq": queue_state(in_process_server, dlq)}
    assert live["dlq"]["ApproximateNumberOfMessages"] == "1"
    assert operations(in_process_server)[-2:] == [("ReceiveMessage", True), ("ReceiveMessage", False)]

    again = restart(in_process_server, fresh, start_server)
    try:
        assert {"jobs": queue_state(again, jobs), "dlq": queue_state(again, dlq)} == live
        [moved] = again.client("sqs").receive_message(QueueUrl=dlq)["Messages"]
        assert moved["Body"] == "poison"
    finally:
        again.stop()
    assert main(["verify", str(again.data_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["failed"], report["diverged"]) == (0, 0), report


def test_receive_counts_and_visibility_survive_a_restart(
    in_process_server: InProcessServer, fresh: Emulator, start_server: type[InProcessServer]
) -> None:
    sqs = in_process_server.client("sqs")
    url = sqs.create_queue(QueueName="counted", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    sqs.receive_message(QueueUrl=url)
    time.sleep(1.2)  # visible again
    [message] = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], VisibilityTimeout=300)["Messages"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "2"
    live = queue_state(in_process_server, url)
    assert live["ApproximateNumberOfMessagesNotVisible"] == "1"

    again = restart(in_process_server, fresh, start_server)
    try:
        assert queue_state(again, url) == live
        again.client("sqs").change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )  # the receipt handle from before the restart still works
        [back] = again.client("sqs").receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]
        assert back["Attributes"]["ApproximateReceiveCount"] == "3"
    finally:
        again.stop()
