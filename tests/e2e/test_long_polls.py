"""Long polls behind real ``replay serve`` processes: real waits, nothing held, quick stops, short starts."""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from conftest import AwsClients, Servers

pytestmark = pytest.mark.e2e


def test_sigterm_during_a_long_poll_stops_the_server_within_two_seconds(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    server = servers.start(tmp_path / "volume", "--checkpoint-percentage", "100")  # the defaults: a checkpoint at stop
    sqs = aws("sqs", server)
    url = sqs.create_queue(QueueName="waiting")["QueueUrl"]
    got: dict[str, Any] = {}

    def poll() -> None:
        got["answer"] = aws("sqs", server).receive_message(QueueUrl=url, WaitTimeSeconds=20)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(1.0)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=10)
    took = time.monotonic() - started
    poller.join(timeout=5)
    assert took < 2.0, f"SIGTERM during a long poll took {took:.2f} s"
    assert server.proc.returncode == 0, server.stderr()
    assert "Messages" not in got["answer"]  # the poll got its (empty) answer before the server went
    again = servers.start(tmp_path / "volume")
    assert aws("sqs", again).get_queue_url(QueueName="waiting")["QueueUrl"].endswith("/waiting")


def test_a_snapshot_save_does_not_wait_for_a_long_poll(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    server = servers.start(tmp_path / "volume", "--backend", "snapshot", env={"SNAPSHOT_SAVE_STRATEGY": "MANUAL"})
    sqs = aws("sqs", server)
    url = sqs.create_queue(QueueName="waiting")["QueueUrl"]
    other = sqs.create_queue(QueueName="busy")["QueueUrl"]
    poller = threading.Thread(target=lambda: aws("sqs", server).receive_message(QueueUrl=url, WaitTimeSeconds=5))
    poller.start()
    time.sleep(0.5)
    started = time.monotonic()
    saved = requests.post(server.endpoint + "/_localstack/state/sqs/save", timeout=10)
    sqs.send_message(QueueUrl=other, MessageBody="x")  # the same service keeps answering
    took = time.monotonic() - started
    poller.join(timeout=10)
    assert saved.status_code == 200 and '"ok"' in saved.text, saved.text
    assert took < 1.5, f"the save and a call to another queue took {took:.2f} s during a long poll"


def test_a_log_full_of_receives_does_not_make_starts_slow(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    """LocalStack #3881: recorded long polls made starts take hours.  Here empty polls are not recorded at all,
    receives that got messages are instant attempts, and checkpoints fold them away: after a kill -9 a start
    replays only the calls since the last checkpoint."""
    data_dir = tmp_path / "volume"
    server = servers.start(data_dir, "--checkpoint-percentage", "100", "--checkpoint-min-size", "64kb")
    sqs = aws("sqs", server)
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    for _ in range(5):
        assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)  # empty long polls
    size_after_polls = (data_dir / "recorded_api_calls.json").stat().st_size
    for round_ in range(300):
        sqs.send_message(QueueUrl=url, MessageBody=f"job {round_}")
        [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)["Messages"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    deadline = time.monotonic() + 20
    while not list((data_dir / "checkpoints").glob("0*")):
        assert time.monotonic() < deadline, "no checkpoint was taken"
        time.sleep(0.2)
    server.kill()

    started = time.monotonic()
    again = servers.start(data_dir, "--checkpoint-percentage", "100", "--checkpoint-min-size", "64kb")
    took = time.monotonic() - started
    replayed = [int(n) for n in re.findall(r"(\d+) replayed from the log since it", again.stderr())]
    assert replayed and replayed[-1] < 600, again.stderr()  # the tail since the checkpoint, not 900+ calls
    assert took < 10.0, took
    assert size_after_polls < 2000  # five empty long polls left nothing in the log
    sqs = aws("sqs", again)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"


HANGING_APP = """
import threading

NEVER = threading.Event()


def app(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        NEVER.wait()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]
"""


def test_a_restore_that_cannot_make_progress_stops_with_one_line_naming_the_log_line(
    servers: Servers, tmp_path: Path
) -> None:
    from replay.record.entry import Entry, Request, Response, encode_entry

    (tmp_path / "hanging_app.py").write_text(HANGING_APP)
    data_dir = tmp_path / "volume"
    data_dir.mkdir()
    log = data_dir / "recorded_api_calls.json"
    calls = [("/ok", "Fine"), ("/hang", "Hang"), ("/ok", "Fine")]
    log.write_bytes(
        b"".join(
            encode_entry(Entry(1.0, "svc", name, Request("POST", path, "", [], b"{}"), Response(200, [], b"{}")))
            for path, name in calls
        )
    )
    before = log.read_bytes()
    started = time.monotonic()
    done = servers.run(
        data_dir, "--app", "hanging_app:app", env={"PYTHONPATH": str(tmp_path), "REPLAY_CALL_TIMEOUT": "1"}
    )
    assert time.monotonic() - started < 20
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"replay: error: {log}:2: svc.Hang did not finish within 1 s on replay"), done.stderr
    assert log.read_bytes() == before  # nothing recorded was touched
