"""A first run without surprises, over the real ``replay`` command: a port that cannot be bound is one line,
``--log-level`` goes before or after the command, ``verify`` draws progress on a terminal, an ETA never
says ``0 s left`` with work to do, and ``compact`` reports sizes that measure the same thing."""

from __future__ import annotations

import errno
import io
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
import responses

from replay.cli.commands import _ProgressLine, error_line, main
from replay.config import FsyncPolicy
from replay.record.entry import Entry, Request, Response, encode_entry
from replay.record.log import CallLog
from replay.restore.replayer import Progress
from replay.storage.datadir import LOCK_FILE_NAME, DataDirLock, owner

LOG_NAME = "recorded_api_calls.json"
TARGET = "http://emu.test:4566"

# environment variables that would change what `replay serve` binds or where it keeps state
_SERVE_ENV = ("DATA_DIR", "GATEWAY_LISTEN", "REPLAY_FSYNC", "PERSISTENCE", "PERSISTENCE_BACKEND", "INIT_DIR")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _SERVE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def child_env(**more: str) -> dict[str, str]:
    """The environment of a `replay` child process: this one's, without what would change where it serves."""
    env = {name: value for name, value in os.environ.items() if name not in _SERVE_ENV}
    return {**env, **more}


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("replay: error: ")
    assert not lines[0].removeprefix("replay: error: ").startswith("replay"), err
    assert "[Errno" not in lines[0], err
    return lines[0]


def note(body: bytes) -> Entry:
    return Entry(1_700_000_000.0, "notes", "AddNote", Request("POST", "/notes", "", [], body), Response(200, [], b""))


def write_log(directory: Path, entries: list[Entry]) -> Path:
    path = directory / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        for item in entries:
            log.append(encode_entry(item))
    return path


def assert_released(data_dir: Path) -> None:
    """Nobody holds ``data_dir``: no lock file left, and a new owner can take it at once."""
    assert owner(data_dir) is None
    assert not (data_dir / LOCK_FILE_NAME).exists()
    DataDirLock(data_dir, command="test").release()


# --- a port that cannot be bound ---------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["--log-level", "DEBUG", "serve"],
        ["serve", "--log-level", "DEBUG"],
    ],
    ids=["default", "log-level-before", "log-level-after"],
)
def test_serve_on_a_busy_port_is_one_line_naming_it_and_lets_the_data_dir_go(
    tmp_path: Path, busy_port: int, argv: list[str]
) -> None:
    data_dir = tmp_path / "volume"
    done = subprocess.run(
        [sys.executable, "-m", "replay", *argv, "--port", str(busy_port), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=child_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # the work failed (as when the data dir is in use), not the usage
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert "Address already in use" not in done.stderr  # werkzeug's own two lines are not there
    assert "Either identify and stop that program" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("replay: error")]
    line = one_error_line("\n".join(errors))
    if argv == ["serve"]:
        assert done.stderr == line + "\n"  # at DEBUG, what the start logged comes before it
    assert f"port {busy_port} on 127.0.0.1 is in use by another program" in line
    assert "--port" in line and "GATEWAY_LISTEN" in line
    assert_released(data_dir)


def serve_failing(tmp_path: Path, *argv: str, **env: str) -> str:
    """The one error line of a `replay serve` child that could not start (exit status 1)."""
    done = subprocess.run(
        [sys.executable, "-m", "replay", "serve", "--data-dir", str(tmp_path / "volume"), *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=child_env(**env),
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert_released(tmp_path / "volume")
    return one_error_line(done.stderr)


def test_serve_names_the_busy_one_of_the_GATEWAY_LISTEN_addresses(tmp_path: Path, busy_port: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    line = serve_failing(tmp_path, GATEWAY_LISTEN=f"127.0.0.1:{free},127.0.0.1:{busy_port}")
    assert f"port {busy_port} on 127.0.0.1 is in use by another program" in line
    assert str(free) not in line


def test_serve_on_an_address_not_of_this_machine_says_so(tmp_path: Path) -> None:
    line = serve_failing(tmp_path, "--host", "192.0.2.1", "--port", "4566")  # TEST-NET-1: nobody's address
    assert line == (
        "replay: error: cannot listen on 192.0.2.1:4566: 192.0.2.1 is not an address of this machine; "
        "choose another with --host (or the GATEWAY_LISTEN variable)"
    )


def test_serve_on_a_privileged_port_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unprivileged user's bind of port 80 (simulated: these tests may run as root), through werkzeug's
    own handling of it, which prints the reason and exits."""
    from werkzeug.serving import BaseWSGIServer

    def refuse(self: BaseWSGIServer) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(BaseWSGIServer, "server_bind", refuse)
    data_dir = tmp_path / "volume"
    assert main(["serve", "--port", "80", "--data-dir", str(data_dir)]) == 1
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert out == ""
    assert "port 80 on 127.0.0.1 is a privileged port (below 1024)" in line
    assert "choose a port from 1024 up with --port N (or the GATEWAY_LISTEN variable" in line
    assert_released(data_dir)


def test_serve_names_the_port_when_the_server_lets_the_os_error_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A werkzeug that raises the OSError instead of printing it and exiting: the same one line."""
    import replay.serve.server

    def make_server(host: str, port: int, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EADDRINUSE, "Address already in use")

    monkeypatch.setattr(replay.serve.server, "make_server", make_server)
    data_dir = tmp_path / "volume"
    assert main(["serve", "--port", "4599", "--data-dir", str(data_dir)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "port 4599 on 127.0.0.1 is in use by another program" in line
    assert_released(data_dir)


def test_error_lines_carry_one_prefix_and_no_errno() -> None:
    assert error_line("replay: error: x") == "replay: error: x\n"
    assert error_line("replay: cannot\n  restore it\n") == "replay: error: cannot restore it\n"
    assert error_line("cannot reach u: Failed ([Errno 111] Connection refused)") == (
        "replay: error: cannot reach u: Failed (Connection refused)\n"
    )


def test_usage_errors_name_the_command_once(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in [
        ([], "replay: error: the following arguments are required: COMMAND (see `replay --help`)"),
        (["export"], "replay: error: the following arguments are required: ARCHIVE (see `replay export --help`)"),
        (["inspect", "--bogus"], "replay: error: unrecognized arguments: --bogus (see `replay --help`)"),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert one_error_line(capsys.readouterr().err) == expected


def test_an_unreachable_target_is_one_line_without_an_errno(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write_log(tmp_path, [note(b"a")])
    assert main(["restore", "--quiet", "--retries", "0", "--target", f"http://127.0.0.1:{port}", str(tmp_path)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot reach http://127.0.0.1:{port}" in line and "Connection refused" in line


def test_compact_of_a_data_dir_whose_server_cannot_be_reached_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = tmp_path / "volume"
    write_log(data, [note(b"a")])
    with DataDirLock(data, command="replay serve", url=f"http://127.0.0.1:{port}"):
        assert main(["compact", str(data)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == (
        f"replay: error: cannot reach the server holding {data} at http://127.0.0.1:{port}: Connection refused"
    )


# --- --log-level before or after the command -----------------------------------------------------

COMMANDS = {
    "serve": ["serve", "--port", "0", "--data-dir", "volume"],
    "restore": ["restore", "--target", TARGET, "missing"],
    "verify": ["verify", "missing"],
    "compact": ["compact", "missing"],
    "inspect": ["inspect", "missing"],
    "export": ["export", "x.replay", "--data-dir", "missing"],
    "import": ["import", "x.replay", "--data-dir", "fresh"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("where", ["before", "after"])
def test_log_level_is_taken_before_or_after_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, where: str
) -> None:
    argv = COMMANDS[command]
    option = ["--log-level", "LOUD"]
    given = [*option, *argv] if where == "before" else [argv[0], *option, *argv[1:]]
    assert main(given) == 2  # the level is read (and refused) before the command does anything
    assert "invalid value for --log-level: 'LOUD'" in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_log_level_after_the_command_wins_over_the_one_before(tmp_path: Path) -> None:
    log = write_log(tmp_path, [note(b"a")])
    (tmp_path / "notes_emulator.py").write_text(NOTES_APP)

    def verify(*flags: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "replay", *flags, str(log)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=child_env(PYTHONPATH=str(tmp_path)),
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    app = ["--app", "notes_emulator:app"]
    assert "verifying " in verify("verify", *app)  # INFO: the progress, logged on a non-terminal
    assert "verifying " not in verify("--log-level", "WARNING", "verify", *app)
    assert "verifying " not in verify("verify", "--log-level", "WARNING", *app)
    assert "verifying " in verify("--log-level", "WARNING", "verify", "--log-level", "INFO", *app)
    assert "verifying " not in verify("verify", "--quiet", *app)


# --- progress ------------------------------------------------------------------------------------

NOTES_APP = """
import time


def app(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    time.sleep(float(environ.get("HTTP_X_SLEEP") or 0))
    start_response("200 OK", [])
    return [b""]
"""


def slow_note(n: int) -> Entry:
    request = Request("POST", "/notes", "", [("X-Sleep", "0.03")], str(n).encode())
    return Entry(1_700_000_000.0, "notes", "AddNote", request, Response(200, [], b""))


def read_terminal(master: int) -> bytes:
    """Everything written to the pseudo-terminal until its last writer closed it."""
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child is gone
            return seen
        if not chunk:
            return seen
        seen += chunk


@pytest.mark.timing
def test_verify_draws_its_progress_on_a_terminal_and_never_says_0_s_left(tmp_path: Path) -> None:
    (tmp_path / "notes_emulator.py").write_text(NOTES_APP)
    log = write_log(tmp_path, [slow_note(n) for n in range(60)])  # about 2 s: several lines, with an ETA
    master, terminal = pty.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "replay", "verify", "--app", "notes_emulator:app", str(log)],
            stdout=subprocess.PIPE,
            stderr=terminal,
            cwd=tmp_path,
            env=child_env(PYTHONPATH=str(tmp_path)),
        )
        os.close(terminal)
        drawn: list[bytes] = []
        reader = threading.Thread(target=lambda: drawn.append(read_terminal(master)))
        reader.start()
        out, _ = child.communicate(timeout=120)
        reader.join(30)
    finally:
        os.close(master)
    assert child.returncode == 0
    assert out.decode().endswith(
        "60 calls replayed, 60 restored, 0 failed, 0 diverged, 0 generated values mapped: converged\n"
    )
    screen = drawn[0].decode()
    updates = [part for part in screen.split("\r\x1b[K") if part.startswith("verifying ")]
    assert len(updates) >= 3, screen  # redrawn in place, not logged line after line
    assert not any("INFO" in update for update in updates)
    assert all(" 0 s left" not in update for update in updates), updates
    assert any(re.search(r"about [1-9]\d* s left", update) for update in updates), updates
    last = updates[-1]
    assert re.fullmatch(r"verifying \S+: 60 calls, 100% of the log, \d+ calls/s, done in \d+\.\d s\r?\n", last), last
    assert all("100%" not in update for update in updates[:-1])


def test_the_progress_line_never_says_0_s_left_or_100_percent_with_work_left() -> None:
    stream = FakeTerminal()
    line = _ProgressLine(stream, "restoring")
    size = 1_000_000
    line(Progress(calls=999, position=size - 3, size=size, elapsed=60.0))  # a rate that leaves 0.0002 s
    assert stream.getvalue() == "\r\x1b[Krestoring: 999 calls, 99% of the log, 17 calls/s, about 1 s left"
    line(Progress(calls=1, position=size // 2, size=size, elapsed=0.2))  # too little to go by: no ETA
    assert stream.getvalue().endswith("restoring: 1 calls, 50% of the log, 5 calls/s")
    line(Progress(calls=0, position=0, size=size, elapsed=0.2))  # nothing done: a rate of 0, no ETA
    assert stream.getvalue().endswith("restoring: 0 calls, 0% of the log, 0 calls/s")
    line(Progress(calls=1000, position=size, size=size, elapsed=61.23))
    assert stream.getvalue().endswith("restoring: 1000 calls, 100% of the log, 16 calls/s, done in 61.2 s\n")


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_restore_ends_its_progress_line_before_the_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_log(tmp_path, [note(b"a"), note(b"b")])
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    answers = iter([True, False])

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        if next(answers):
            time.sleep(0.3)  # long enough for a progress line to be drawn after it
            return 200, {}, b""
        raise requests.ConnectionError("connection refused")

    with responses.RequestsMock() as http:
        http.add_callback(responses.POST, f"{TARGET}/notes", callback=answer)
        assert main(["restore", "--retries", "0", "--target", TARGET, str(tmp_path)]) == 1
    screen = terminal.getvalue()
    drawn, _, error = screen.rpartition("\n" + "replay: error: ")
    assert drawn.startswith("\r\x1b[Krestoring into http://emu.test:4566: 1 calls, ") and "\n" not in drawn, screen
    one_error_line("replay: error: " + error)


# --- compact ---------------------------------------------------------------------------------------


def test_compact_says_plainly_when_there_is_nothing_to_compact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / LOG_NAME).write_bytes(b"")
    assert main(["compact", str(empty)]) == 0
    assert (
        capsys.readouterr().out == f"{empty / LOG_NAME}: nothing to compact: no calls in the log (0 bytes, as before)\n"
    )


def test_compact_after_a_checkpoint_with_no_calls_since_never_says_0_bytes_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from replay.config import Config
    from replay.serve.emulators import moto_emulator
    from replay.serve.server import Server

    data = tmp_path / "data"
    server = Server(Config(port=0, data_dir=data, checkpoint_percentage=0), moto_emulator())
    thread = threading.Thread(target=server.serve)
    thread.start()
    try:
        headers = {
            "Authorization": "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host",
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.CreateQueue",
        }
        deadline = time.monotonic() + 60
        while True:  # requests wait for the restore; the first one may come before the socket serves
            try:
                answer = requests.post(server.url + "/", data=b'{"QueueName": "q"}', headers=headers, timeout=30)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert answer.ok, answer.text
        assert main(["compact", "--json", str(data)]) == 0  # served: a checkpoint; the log keeps its header only
        assert orjson.loads(capsys.readouterr().out)["kind"] == "checkpoint"
    finally:
        server.stop()
        thread.join(30)
    log = data / LOG_NAME
    size = log.stat().st_size
    assert size > 0 and log.read_bytes().startswith(b'{"v":1,"checkpoint":')
    assert main(["compact", "--json", str(data)]) == 0
    done = orjson.loads(capsys.readouterr().out)
    assert (done["kind"], done["read"], done["kept"]) == ("log", 0, 0)
    assert done["bytes_before"] == size and done["bytes_after"] == log.stat().st_size
    assert main(["compact", str(data)]) == 0
    out = capsys.readouterr().out
    assert out == f"{log}: nothing to compact: no calls in the log ({log.stat().st_size:,} bytes, as before)\n"


def test_ctrl_c_ends_a_command_with_one_line_and_status_130(tmp_path: Path) -> None:
    started = tmp_path / "started"
    (tmp_path / "notes_emulator.py").write_text(
        NOTES_APP.replace(
            '    start_response("200 OK", [])',
            f'    open({str(started)!r}, "w").close()\n    start_response("200 OK", [])',
        )
    )
    log = write_log(tmp_path, [slow_note(n) for n in range(400)])  # about 12 s
    child = subprocess.Popen(
        [sys.executable, "-m", "replay", "verify", "--app", "notes_emulator:app", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=child_env(PYTHONPATH=str(tmp_path)),
    )
    deadline = time.monotonic() + 60
    while not started.exists():  # the replay is under way (not still importing)
        assert child.poll() is None and time.monotonic() < deadline, "the replay did not start"
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err.decode()
    assert err.decode().splitlines()[-1] == "replay: error: interrupted"
    assert out == b""
