"""`replay.cli.commands.main` in-process: `restore` against `responses`-mocked HTTP, `serve` config errors."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
import responses

from replay.cli.commands import main
from replay.config import FsyncPolicy
from replay.record.entry import Entry, Request, Response, encode_entry
from replay.record.log import CallLog, encode_header

LOG_NAME = "recorded_api_calls.json"
TARGET = "http://emu.test:4566"
ANY_URL = re.compile(r"http://emu\.test:4566/.*")


def entry(path: str, operation: str, body: bytes) -> Entry:
    return Entry(
        1_700_000_000.0,
        "notes",
        operation,
        Request("POST", path, "", [("Content-Type", "text/plain")], body),
        Response(200, [], b""),
    )


def write_log(directory: Path, entries: list[Entry]) -> Path:
    path = directory / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        for item in entries:
            log.append(encode_entry(item))
    return path


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep DATA_DIR / REPLAY_FSYNC from the outer environment out, and run in an empty directory."""
    for name in ("DATA_DIR", "REPLAY_FSYNC", "PERSISTENCE", "PERSISTENCE_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def one_error_line(err: str) -> str:
    """The one line an error leaves on stderr: ``replay: error:`` once, then no ``replay`` prefix, no raw errno."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("replay: error: ")
    assert not lines[0].removeprefix("replay: error: ").startswith("replay"), err  # not "replay: error: replay: ..."
    assert "[Errno" not in lines[0], err
    return lines[0]


# --- restore ---------------------------------------------------------------------------------


def test_restore_all_good_exits_0_with_json_summary(
    tmp_path: Path, http: responses.RequestsMock, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_log(tmp_path, [entry("/notes", "AddNote", b"a"), entry("/notes", "AddNote", b"b")])
    http.add(responses.POST, ANY_URL, body=b"added")

    status = main(["restore", "--target", TARGET, "--json", "--quiet", str(path)])

    assert status == 0
    out, err = capsys.readouterr()
    assert "replay: error" not in err
    summary = orjson.loads(out)
    assert out.endswith("\n") and out.count("\n") == 1
    assert (summary["restored"], summary["failed"], summary["total"]) == (2, 0, 2)
    assert summary["failures"] == []
    assert summary["path"] == str(path)
    assert [(c.request.url, c.request.body) for c in http.calls] == [
        (TARGET + "/notes", b"a"),
        (TARGET + "/notes", b"b"),
    ]


def test_restore_with_5xx_exits_1_and_lists_failures(
    tmp_path: Path, http: responses.RequestsMock, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = write_log(
        tmp_path,
        [entry("/notes", "AddNote", b"a"), entry("/broken", "Break", b"b"), entry("/notes", "AddNote", b"c")],
    )
    http.add(responses.POST, TARGET + "/notes", body=b"added")
    http.add(responses.POST, TARGET + "/broken", body=b"internal failure", status=500)

    with caplog.at_level(logging.INFO):
        status = main(["restore", "--target", TARGET, "--json", str(path)])

    assert status == 1
    summary = orjson.loads(capsys.readouterr().out)
    assert (summary["restored"], summary["failed"]) == (2, 1)
    assert summary["failures"] == [
        {
            "line": 2,
            "service": "notes",
            "operation": "Break",
            "status": 500,
            "recorded_status": 200,
            "message": "internal failure",
        }
    ]
    assert any(f"{path}:2: notes.Break failed on replay with status 500" in m for m in caplog.messages)
    assert len(http.calls) == 3  # the failure did not stop the restore
    assert any(m.startswith(f"restoring into {TARGET}: 3 calls, 100% of the log") for m in caplog.messages)


def test_restore_unreachable_target_exits_1_with_one_line(
    tmp_path: Path, http: responses.RequestsMock, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_log(tmp_path, [entry("/notes", "AddNote", b"a")])
    http.add(responses.POST, ANY_URL, body=requests.ConnectionError("connection refused"))

    status = main(["restore", "--target", TARGET, "--retries", "0", "--json", "--quiet", str(path)])

    assert status == 1
    out, err = capsys.readouterr()
    assert out == ""  # no summary for a restore that could not run
    line = one_error_line(err)
    assert TARGET in line
    assert "connection refused" in line


def test_restore_missing_log_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing-here" / LOG_NAME
    status = main(["restore", "--target", TARGET, str(missing)])
    assert status == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert one_error_line(err) == f"replay: error: no call log at {missing}: no such file or directory"


def test_restore_corrupt_log_exits_1_naming_file_and_line(
    tmp_path: Path, http: responses.RequestsMock, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / LOG_NAME
    path.write_bytes(
        encode_entry(entry("/notes", "AddNote", b"a"))
        + b"not an entry\n"
        + encode_entry(entry("/notes", "AddNote", b"c"))
    )
    http.add(responses.POST, ANY_URL, body=b"added")

    status = main(["restore", "--target", TARGET, "--json", "--quiet", str(path)])

    assert status == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert one_error_line(err).startswith(f"replay: error: {path}:2: malformed entry")
    assert [c.request.body for c in http.calls] == [b"a"]  # nothing past the bad line


def test_restore_resolves_a_data_dir_to_its_log(
    tmp_path: Path, http: responses.RequestsMock, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = tmp_path / "volume"
    path = write_log(volume, [entry("/notes", "AddNote", b"from the data dir")])
    http.add(responses.POST, ANY_URL, body=b"added")

    status = main(["restore", "--target", TARGET, "--json", "--quiet", str(volume)])

    assert status == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["path"] == str(path)
    assert summary["restored"] == 1
    assert [c.request.body for c in http.calls] == [b"from the data dir"]


def test_restore_of_a_checkpointed_data_dir_sends_its_calls_then_the_log_since(
    tmp_path: Path, http: responses.RequestsMock, capsys: pytest.CaptureFixture[str]
) -> None:
    from replay.storage.checkpoint import Checkpoint, Manifest, write_manifest

    volume = tmp_path / "volume"
    base = Checkpoint(volume, "000003").base_log
    write_log(base.parent, [entry("/notes", "AddNote", b"folded")]).rename(base)
    write_manifest(volume, Manifest("000003", ("notes",), 1, 9, 10, 0.0, {}, "000002", 0))
    log = volume / LOG_NAME
    log.write_bytes(encode_header("000003") + encode_entry(entry("/notes", "AddNote", b"since")))
    http.add(responses.POST, ANY_URL, body=b"added")

    assert main(["restore", "--target", TARGET, "--json", "--quiet", str(volume)]) == 0
    assert [c.request.body for c in http.calls] == [b"folded", b"since"]
    summary = orjson.loads(capsys.readouterr().out)
    assert (summary["path"], summary["restored"]) == (str(log), 2)


def test_restore_defaults_to_DATA_DIR(
    tmp_path: Path, http: responses.RequestsMock, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = tmp_path / "elsewhere"
    path = write_log(volume, [entry("/notes", "AddNote", b"x")])
    monkeypatch.setenv("DATA_DIR", str(volume))
    http.add(responses.POST, ANY_URL, body=b"added")

    assert main(["restore", "--target", TARGET, "--json", "--quiet"]) == 0
    assert orjson.loads(capsys.readouterr().out)["path"] == str(path)


def test_restore_empty_log_exits_0(
    tmp_path: Path, http: responses.RequestsMock, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / LOG_NAME
    path.write_bytes(b"")
    assert main(["restore", "--target", TARGET, "--json", "--quiet", str(path)]) == 0
    assert orjson.loads(capsys.readouterr().out)["total"] == 0
    assert len(http.calls) == 0


# --- serve: configuration errors, before anything is bound or created ------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port held open here: binding it again would fail with an OSError (exit 1, not 2)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_serve_bad_fsync_flag_exits_2_before_binding(
    tmp_path: Path, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "volume"
    status = main(["serve", "--port", str(busy_port), "--data-dir", str(data_dir), "--fsync", "sometimes"])
    assert status == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--fsync" in line
    assert "'sometimes'" in line
    assert "always, everysec, no" in line
    assert not data_dir.exists()


def test_serve_bad_REPLAY_FSYNC_exits_2_before_binding(
    tmp_path: Path, busy_port: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLAY_FSYNC", "bad")
    data_dir = tmp_path / "volume"
    status = main(["serve", "--port", str(busy_port), "--data-dir", str(data_dir)])
    assert status == 2
    line = one_error_line(capsys.readouterr().err)
    assert "REPLAY_FSYNC" in line
    assert "'bad'" in line
    assert "always, everysec, no" in line
    assert not data_dir.exists()


def test_serve_fsync_flag_wins_over_a_bad_environment_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a good flag overrides REPLAY_FSYNC; the next bad value (--port) still fails before binding
    monkeypatch.setenv("REPLAY_FSYNC", "bad")
    status = main(["serve", "--fsync", "always", "--port", "70000", "--data-dir", str(tmp_path / "v")])
    assert status == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--port" in line
    assert "REPLAY_FSYNC" not in line


def sns_call(body: bytes, answer: bytes) -> Entry:
    headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
    return Entry(1_700_000_000.0, "sns", "op", Request("POST", "/", "", headers, body), Response(200, [], answer))


OLD_SUBSCRIPTION = "arn:aws:sns:us-east-1:123456789012:t:4f1c2d3e-0a1b-4c5d-8e9f-001122334455"
NEW_SUBSCRIPTION = "arn:aws:sns:us-east-1:123456789012:t:9a8b7c6d-5e4f-4a3b-9c2d-665544332211"


@pytest.mark.parametrize(("flags", "expected_arn"), [([], NEW_SUBSCRIPTION), (["--no-mapping"], OLD_SUBSCRIPTION)])
def test_restore_rewrites_ids_the_target_generated_anew_unless_told_not_to(
    tmp_path: Path,
    http: responses.RequestsMock,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    expected_arn: str,
) -> None:
    subscribe = sns_call(
        b"Action=Subscribe&TopicArn=t", f"<R><SubscriptionArn>{OLD_SUBSCRIPTION}</SubscriptionArn></R>".encode()
    )
    unsubscribe = sns_call(
        b"Action=Unsubscribe&SubscriptionArn=" + OLD_SUBSCRIPTION.replace(":", "%3A").encode(), b"<R/>"
    )
    log = write_log(tmp_path, [subscribe, unsubscribe])
    http.add(responses.POST, ANY_URL, body=f"<R><SubscriptionArn>{NEW_SUBSCRIPTION}</SubscriptionArn></R>".encode())
    http.add(responses.POST, ANY_URL, body=b"<R/>")
    assert main(["restore", "--target", TARGET, "--quiet", "--json", *flags, str(log)]) == 0
    sent = http.calls[1].request.body
    assert sent == b"Action=Unsubscribe&SubscriptionArn=" + expected_arn.replace(":", "%3A").encode()
    assert orjson.loads(capsys.readouterr().out)["mapped"] == (0 if flags else 2)


def record_moto_log(directory: Path) -> Path:
    """A real moto history, recorded in-process with seeding, as `replay serve` records it."""
    from replay.record.middleware import RecordingMiddleware
    from replay.restore.transport import WSGITransport
    from replay.serve.emulators import moto_emulator

    emulator = moto_emulator()
    assert emulator.reset is not None
    emulator.reset()
    path = directory / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        transport = WSGITransport(RecordingMiddleware(emulator.app, log, seeder=emulator.seeder))
        scope = "AK/20240101/us-east-1/sqs/aws4_request"
        headers = [
            ("Authorization", f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host"),
            ("Content-Type", "application/x-amz-json-1.0"),
        ]
        for target, body in [
            ("CreateQueue", {"QueueName": "verify"}),
            ("SendMessage", {"QueueUrl": "http://localhost/123456789012/verify", "MessageBody": "m"}),
            ("GetQueueAttributes", {"QueueUrl": "http://localhost/123456789012/verify", "AttributeNames": ["All"]}),
        ]:
            request = Request("POST", "/", "", [*headers, ("X-Amz-Target", f"AmazonSQS.{target}")], orjson.dumps(body))
            assert transport.send(request).ok
    emulator.reset()
    return path


def test_verify_a_converging_log_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = record_moto_log(tmp_path)
    assert main(["verify", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out == f"{log}: 2 calls replayed, 2 restored, 0 failed, 0 diverged, 0 generated values mapped: converged\n"
    assert main(["verify", "--json", str(log)]) == 0
    assert orjson.loads(capsys.readouterr().out)["diverged"] == 0


def test_verify_reports_a_divergence_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = record_moto_log(tmp_path)
    lines = log.read_bytes().splitlines(keepends=True)
    sent = orjson.loads(lines[1])
    answer = orjson.loads(sent["response"]["body"])
    answer["MD5OfMessageBody"] = "0" * 32  # as if the emulator had answered something else back then
    sent["response"]["body"] = orjson.dumps(answer).decode()
    log.write_bytes(lines[0] + orjson.dumps(sent) + b"\n")
    before = log.read_bytes()
    assert main(["verify", str(log)]) == 1
    out = capsys.readouterr().out
    assert "line  service  operation    what differed" in out
    assert "2     sqs      SendMessage  body.MD5OfMessageBody: '00000000000000000000000000000000' -> " in out
    assert out.rstrip().endswith("1 diverged, 0 generated values mapped: diverged")
    assert log.read_bytes() == before  # verify never writes
    assert not (tmp_path / "replay_report.json").exists()


# --- compact ---------------------------------------------------------------------------------

SQS_HEADERS = [
    ("Authorization", "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host"),
    ("Content-Type", "application/x-amz-json-1.0"),
]


def sqs_calls(transport: object, calls: list[tuple[str, dict[str, object]]]) -> None:
    from replay.restore.transport import WSGITransport

    assert isinstance(transport, WSGITransport)
    for target, body in calls:
        request = Request("POST", "/", "", [*SQS_HEADERS, ("X-Amz-Target", f"AmazonSQS.{target}")], orjson.dumps(body))
        assert transport.send(request).ok, target


CHURN: list[tuple[str, dict[str, object]]] = [
    ("CreateQueue", {"QueueName": "gone"}),
    ("SendMessage", {"QueueUrl": "http://localhost/123456789012/gone", "MessageBody": "m"}),
    ("DeleteQueue", {"QueueUrl": "http://localhost/123456789012/gone"}),
    ("CreateQueue", {"QueueName": "kept"}),
    ("SendMessage", {"QueueUrl": "http://localhost/123456789012/kept", "MessageBody": "k"}),
]


def test_compact_offline_drops_undone_calls_and_restores_the_same_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from replay.record.middleware import RecordingMiddleware
    from replay.restore.transport import WSGITransport
    from replay.serve.emulators import moto_emulator

    emulator = moto_emulator()
    assert emulator.reset is not None
    emulator.reset()
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        sqs_calls(WSGITransport(RecordingMiddleware(emulator.app, log, seeder=emulator.seeder)), CHURN)
    emulator.reset()
    before = path.read_bytes().splitlines(keepends=True)

    assert main(["compact", "--json", str(tmp_path)]) == 0
    done = orjson.loads(capsys.readouterr().out)
    assert (done["kind"], done["read"], done["kept"], done["dropped"]) == ("log", 5, 2, 3)
    assert path.read_bytes() == b"".join(before[3:])  # the kept lines, byte for byte
    assert (done["bytes_before"], done["bytes_after"]) == (len(b"".join(before)), path.stat().st_size)
    assert sum(done["by_rule"].values()) == 3
    assert main(["verify", str(tmp_path)]) == 0  # the compacted log replays cleanly
    assert "2 calls replayed, 2 restored, 0 failed, 0 diverged" in capsys.readouterr().out

    assert main(["compact", str(tmp_path)]) == 0  # nothing left to drop; the table says so
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: 2 calls -> 2 (0 dropped)")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no lock or temporary left


def test_compact_asks_the_server_that_holds_the_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    from replay.config import Config
    from replay.restore.transport import HTTPTransport
    from replay.serve.emulators import moto_emulator
    from replay.serve.server import Server

    data = tmp_path / "data"
    server = Server(Config(port=0, data_dir=data, checkpoint_percentage=0), moto_emulator())
    thread = threading.Thread(target=server.serve)
    thread.start()
    try:
        transport = HTTPTransport(server.url)
        for target, body in CHURN:
            request = Request(
                "POST", "/", "", [*SQS_HEADERS, ("X-Amz-Target", f"AmazonSQS.{target}")], orjson.dumps(body)
            )
            assert transport.send(request).ok
        transport.close()
        assert main(["compact", "--json", str(data)]) == 0
        done = orjson.loads(capsys.readouterr().out)
        assert done["kind"] == "checkpoint" and done["checkpoint"] == "000001" and "sqs" in done["services"]
        assert done["base"]["read"] == 5 and done["base"]["kept"] == 2  # its calls.json is compacted too
        assert main(["compact", str(data)]) == 0
        assert capsys.readouterr().out.startswith("checkpoint 000002: ")
        assert main(["serve", "--data-dir", str(data), "--port", "0"]) == 1  # one server per data dir
        assert f"{data} is in use by another replay (pid " in capsys.readouterr().err
    finally:
        server.stop()
        thread.join(30)
    assert main(["compact", "--json", str(data)]) == 0  # now offline: the log since the checkpoint
    assert orjson.loads(capsys.readouterr().out)["kind"] == "log"
    assert main(["verify", str(data)]) == 0  # the checkpoint's calls, then the log's: they converge
    assert "2 calls replayed, 2 restored, 0 failed, 0 diverged" in capsys.readouterr().out


def test_compact_errors_are_one_line_and_change_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compact", str(tmp_path / "missing")]) == 1
    assert "no call log at" in one_error_line(capsys.readouterr().err)
    data = tmp_path / "data"
    data.mkdir()
    (data / LOG_NAME).write_bytes(b'{"v":1,"checkpoint":"000009"}\n')
    assert main(["compact", str(data)]) == 1
    assert "continues checkpoint 000009, but the data dir has no checkpoints" in one_error_line(capsys.readouterr().err)
    (data / LOG_NAME).write_bytes(b"garbage\n" + encode_entry(entry("/n", "Add", b"x")))
    assert main(["compact", str(data)]) == 1
    assert f"{data / LOG_NAME}:1: malformed entry" in one_error_line(capsys.readouterr().err)
    assert (data / LOG_NAME).read_bytes().startswith(b"garbage\n")
    assert sorted(p.name for p in data.iterdir()) == [LOG_NAME]


# --- inspect ---------------------------------------------------------------------------------


def test_inspect_summarises_lists_and_filters_without_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "volume"
    log = write_log(data, [entry("/notes", "AddNote", b"a"), entry("/notes/1", "EditNote", b"b")])
    before = sorted((p.name, p.stat().st_mtime_ns) for p in data.iterdir())

    assert main(["inspect", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{log}: replay backend, 2 calls, {log.stat().st_size:,} bytes, 2023-11-14 22:13:20 UTC .. ")
    assert "notes    AddNote        1" in out and "notes    EditNote       1" in out
    assert "last restore: none recorded" in out

    assert main(["inspect", "--json", str(log)]) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert document["calls"] == 2 and document["services"] == {"notes": {"AddNote": 1, "EditNote": 1}}

    assert main(["inspect", "--calls", "--operation", "EditNote", str(data)]) == 0
    assert (
        capsys.readouterr().out
        == "2023-11-14T22:13:20.000Z  notes            EditNote                         200  /notes/1\n"
    )
    assert main(["inspect", "--calls", "--json", "--since", "2023-11-14T22:13:20Z", str(data)]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["operation"], line["line"]) for line in lines] == [("AddNote", 1), ("EditNote", 2)]
    assert main(["inspect", "--calls", "--since", "1800000000", str(data)]) == 0
    assert capsys.readouterr().out == ""
    assert sorted((p.name, p.stat().st_mtime_ns) for p in data.iterdir()) == before  # never writes


def test_inspect_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "missing")]) == 1
    assert "no call log at" in one_error_line(capsys.readouterr().err)
    log = write_log(tmp_path, [entry("/n", "Add", b"x")])
    assert main(["inspect", "--calls", "--since", "yesterday", str(log)]) == 2
    assert "invalid value for --since: 'yesterday' (an ISO 8601 time" in one_error_line(capsys.readouterr().err)
    foreign = tmp_path / "foreign.json"
    foreign.write_bytes(b"PK\x03\x04 not a log\n" + encode_entry(entry("/n", "Add", b"x")))
    assert main(["inspect", str(foreign)]) == 1
    assert f"{foreign} is not a replay call log, a LocalStack log or a replay archive" in one_error_line(
        capsys.readouterr().err
    )
    torn_middle = tmp_path / "middle.json"
    torn_middle.write_bytes(encode_entry(entry("/n", "Add", b"x")) + b"garbage\n" + encode_entry(entry("/n", "A", b"")))
    assert main(["inspect", str(torn_middle)]) == 1
    assert f"{torn_middle}:2: malformed entry" in one_error_line(capsys.readouterr().err)


# --- export / import -------------------------------------------------------------------------------------------


def test_export_import_inspect_round_trip_for_people_and_machines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "volume"
    write_log(source, [entry("/notes", "AddNote", b"a"), entry("/notes", "AddNote", b"b")])

    assert main(["export", "state.replay"]) == 0  # ./volume by default
    out = capsys.readouterr().out
    assert out.startswith(f"exported {source.name} (replay archive: 2 calls, 1 files, ")
    assert out.endswith(
        " bytes, unsigned) to state.replay (" + f"{(tmp_path / 'state.replay').stat().st_size:,} bytes)\n"
    )
    assert main(["inspect", "state.replay"]) == 0
    assert capsys.readouterr().out.startswith("state.replay: replay archive: 2 calls, 1 files, ")

    assert main(["inspect", "--json", "state.replay"]) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert (document["kind"], document["calls"], document["signed"]) == ("replay", 2, False)

    assert main(["import", "--json", "state.replay", "--data-dir", "copy"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["kind"] == "replay" and report["calls"] == 2 and report["data_dir"] == str(tmp_path / "copy")
    assert (tmp_path / "copy" / LOG_NAME).read_bytes() == (source / LOG_NAME).read_bytes()
    assert main(["inspect", "--json", "copy"]) == 0
    assert orjson.loads(capsys.readouterr().out)["services"] == {"notes": {"AddNote": 2}}


def test_signing_with_a_key_file_or_REPLAY_ARCHIVE_KEY(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_log(tmp_path / "volume", [entry("/notes", "AddNote", b"a")])
    (tmp_path / "team.key").write_bytes(b"0123456789abcdef-team\n")
    assert main(["export", "--json", "--key-file", "team.key", "signed.replay"]) == 0
    assert orjson.loads(capsys.readouterr().out)["signed"] is True
    monkeypatch.setenv("REPLAY_ARCHIVE_KEY", "another-key-0123456789")
    assert main(["import", "signed.replay", "--data-dir", "a"]) == 1
    assert "its signature does not match the archive key given" in one_error_line(capsys.readouterr().err)
    monkeypatch.setenv("REPLAY_ARCHIVE_KEY", "0123456789abcdef-team")
    assert main(["import", "signed.replay", "--data-dir", "b"]) == 0
    assert "imported signed.replay (replay, 1 calls) into" in capsys.readouterr().out
    assert main(["import", "--key-file", "short.key", "signed.replay", "--data-dir", "c"]) == 2
    assert "invalid value for --key-file: " in one_error_line(capsys.readouterr().err)
    (tmp_path / "short.key").write_bytes(b"short")
    assert main(["import", "--key-file", "short.key", "signed.replay", "--data-dir", "c"]) == 2
    assert "an archive key of at least 16 bytes" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def tree(path: Path) -> list[tuple[str, int, int]]:
    """Every file and directory under ``path``: files with size and mtime (a lock taken and let go touches a
    directory's mtime, nothing else)."""
    return sorted(
        (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (str(p), 0, 0)
        for p in path.rglob("*")
    )


def test_every_command_fails_in_one_line_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(tmp_path / "volume", [entry("/notes", "AddNote", b"a")])
    (tmp_path / "foreign.txt").write_text("hello, not a log\n")
    (tmp_path / "bad.replay").write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / LOG_NAME).write_bytes(b'{"a": "sqs", "m": "POST", "p": "/", "d": "", "h": {}}\n')
    assert main(["export", "good.replay"]) == 0
    capsys.readouterr()
    before = tree(tmp_path)
    cases = {
        # a missing path
        ("restore", "--target", TARGET, "missing"): (1, "no call log at missing"),
        ("verify", "missing"): (1, "no call log at missing"),
        ("compact", "missing"): (1, "no call log at missing"),
        ("inspect", "missing"): (1, "no call log at missing"),
        ("export", "x.replay", "--data-dir", "missing"): (1, "no call log at missing"),
        ("import", "missing.replay", "--data-dir", "fresh"): (1, "no call log at missing.replay"),
        # a foreign file
        ("restore", "--target", TARGET, "foreign.txt"): (1, "is not a replay call log, a LocalStack log"),
        ("verify", "foreign.txt"): (1, "is not a replay call log, a LocalStack log or a replay archive"),
        ("compact", "foreign.txt"): (1, "is not a replay call log, a LocalStack log or a replay archive"),
        ("inspect", "foreign.txt"): (1, "is not a replay call log, a LocalStack log or a replay archive"),
        ("import", "foreign.txt", "--data-dir", "fresh"): (1, "is not a replay call log, a LocalStack log"),
        ("export", "x.replay", "--data-dir", "foreign.txt"): (1, "is not a replay call log"),
        ("export", "x.replay", "--data-dir", "good.replay"): (1, "good.replay is an archive already"),
        ("serve", "--port", "0", "--data-dir", "foreign.txt"): (1, "foreign.txt is a file, not a data dir"),
        ("serve", "--port", "0", "--data-dir", "old"): (1, "a LocalStack record, not a replay entry: convert"),
        # a bad archive
        ("import", "bad.replay", "--data-dir", "fresh"): (1, "bad.replay: not imported (corrupt)"),
        ("inspect", "bad.replay"): (1, "bad.replay: not imported (corrupt)"),
        ("verify", "good.replay"): (1, "good.replay holds an archive, not a call log; `replay import` it first"),
        ("compact", "good.replay"): (1, "good.replay holds an archive, not a call log; `replay import` it first"),
        ("import", "good.replay", "--data-dir", "volume"): (1, "volume is not empty: import into a fresh data dir"),
        # a bad option
        ("export",): (2, "the following arguments are required: ARCHIVE (see `replay export --help`)"),
        ("import", "good.replay", "--bogus"): (2, "unrecognized arguments: --bogus"),
        ("export", "x.replay", "--backend", "pods"): (2, "argument --backend: invalid choice: 'pods'"),
        ("inspect", "--since", "soon", "volume"): (2, "invalid value for --since: 'soon'"),
        ("serve", "--fsync", "sometimes"): (2, "invalid value for --fsync: 'sometimes'"),
        ("restore", "--timeout", "long", "--target", TARGET): (2, "argument --timeout: invalid float value"),
    }
    for argv, (status, message) in cases.items():
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse exits for usage errors
            code = int(exc.code or 0)
        err = capsys.readouterr().err
        assert code == status, (argv, err)
        assert message in one_error_line(err), (argv, err)
        assert tree(tmp_path) == before, argv


NOISY_APP = """
import os


def app(environ, start_response):
    print("the emulator talks on stdout")
    os.write(1, b"and writes to the descriptor too\\n")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"Status": "ACTIVE"}']
"""


def test_verify_json_prints_exactly_one_document_whatever_the_emulator_prints(tmp_path: Path) -> None:
    (tmp_path / "noisy_emulator.py").write_text(NOISY_APP)
    answer = Response(200, [("Content-Type", "application/json")], b'{"Status": "ACTIVE"}')
    call = Entry(1_700_000_000.0, "noisy", "Create", Request("POST", "/x", "", [], b"{}"), answer)
    log = write_log(tmp_path, [call, call])
    done = subprocess.run(
        [sys.executable, "-m", "replay", "verify", "--app", "noisy_emulator:app", "--json", str(log)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)  # one JSON document, nothing else
    assert (report["restored"], report["diverged"]) == (2, 0)
    assert done.stdout.count("\n") == 1
    assert done.stderr.count("the emulator talks on stdout") == 2
    assert "and writes to the descriptor too" in done.stderr


def test_inspect_names_the_backend_and_describes_a_snapshot_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pickle

    from replay.share.sources import snapshot_path
    from replay.storage.snapshot import load_key, write_snapshot

    data = tmp_path / "volume"
    key = load_key(data / "state")
    write_snapshot(snapshot_path(data, "sqs"), "sqs", pickle.dumps({"queues": {}}), key)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert main(["inspect", str(data), "--json"]) == 0
    described = orjson.loads(capsys.readouterr().out)
    assert described["backend"] == "snapshot" and list(described["services"]) == ["sqs"] and described["key"]
    assert main(["inspect", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{data}: snapshot backend, 1 services with a snapshot") and "sqs" in out
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    log_dir = tmp_path / "replayed"
    write_log(log_dir, [entry("/notes", "AddNote", b"a")])
    assert main(["inspect", str(log_dir), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["backend"] == "replay"


def test_os_errors_are_one_line_naming_the_path_without_an_errno() -> None:
    from replay.cli.commands import describe_os_error

    assert describe_os_error(PermissionError(13, "Permission denied", "/x/volume")) == "/x/volume: Permission denied"
    assert describe_os_error(OSError(18, "Invalid cross-device link", "/a", None, "/b")) == (
        "/a -> /b: Invalid cross-device link"
    )
    assert describe_os_error(OSError(28, "No space left on device")) == "No space left on device"


def test_a_data_dir_that_is_a_directory_of_the_wrong_kind_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "volume"
    (data / "recorded_api_calls.json").mkdir(parents=True)  # a directory where the log should be
    assert main(["verify", str(data)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[Errno" not in err and str(data) in err, err
