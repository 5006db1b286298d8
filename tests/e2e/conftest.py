"""Fixtures for the end-to-end tests: real ``replay serve`` processes, real HTTP, real files.

* ``servers`` / ``module_servers``: a :class:`Servers` that starts ``python -m replay
  serve`` on a free port, waits for ``/_localstack/health`` to answer 200, captures
  stderr to a file, and at teardown stops whatever still runs with SIGTERM
  (asserting exit status 0).  :meth:`ReplayServer.kill` sends SIGKILL instead.
* ``aws`` / ``module_aws``: an :class:`AwsClients` factory of boto3 clients for a
  server (us-east-1, dummy credentials *with* a session token, so that redaction
  of ``X-Amz-Security-Token`` is exercised on every call).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig

LOG_NAME = "recorded_api_calls.json"
HEALTH_PATH = "/_localstack/health"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "secret"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}  # for child processes
# alphanumeric on purpose: it reads the same raw, percent-encoded and form-encoded
SESSION_TOKEN = "FwoGZXIvYXdzE2eSessionTokenQ7vX9kLmN3pR5tW8yZ0bC2dF4gH6jK"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

# configuration the surrounding environment must not leak into the servers under test
_SCRUBBED_ENV = (
    "DATA_DIR",
    "PERSISTENCE",
    "PERSISTENCE_BACKEND",
    "REPLAY_FSYNC",
    "MOTO_PORT",
    "REPLAY_CHECKPOINT_PERCENTAGE",
    "REPLAY_CHECKPOINT_MIN_SIZE",
    "PERSISTENCE_SERVICES",
    "PERSISTENCE_SCOPE",
    "REPLAY_CALL_TIMEOUT",
)


def free_port(exclude: Iterable[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (and not in ``exclude``)."""
    excluded = set(exclude)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in excluded:
            return port
    raise RuntimeError("no free port found")


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a ``replay`` child: ours, minus replay's settings, plus ``extra``.

    Servers start without automatic checkpoints, so that the log holds the whole history the
    recording tests read; tests of checkpoints turn them on with ``--checkpoint-percentage``
    (a flag wins over this environment variable).
    """
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["REPLAY_CHECKPOINT_PERCENTAGE"] = "0"
    env.update(extra or {})
    return env


class ReplayServer:
    """One running ``replay serve`` child process."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, data_dir: Path, stderr_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.data_dir = data_dir
        self.stderr_path = stderr_path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> list[bytes]:
        """The non-empty lines of the call log (newlines stripped); works after the server stopped too."""
        if not self.log_path.exists():
            return []
        return [line for line in self.log_path.read_bytes().split(b"\n") if line.strip()]

    def log_entries(self) -> list[dict[str, Any]]:
        """Every entry of the call log, decoded."""
        return [json.loads(line) for line in self.log_lines()]

    def log_operations(self) -> list[tuple[str, str]]:
        """``(service, operation)`` of every entry of the call log, in order."""
        return [(entry["service"], entry["operation"]) for entry in self.log_entries()]

    def health(self) -> dict[str, Any]:
        answer = requests.get(self.endpoint + HEALTH_PATH, timeout=10)
        assert answer.status_code == 200, answer.text
        document: dict[str, Any] = answer.json()
        return document

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Poll the health endpoint until it answers 200; fail with the server's stderr otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"replay serve exited with status {self.proc.returncode} before it was healthy; "
                    f"stderr:\n{self.stderr()}"
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.endpoint + HEALTH_PATH, timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"replay serve was not healthy within {timeout:g} s; stderr:\n{self.stderr()}")
            time.sleep(0.05)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> str:
        """Stop the server with ``sig``, assert it exited 0 and cleanly; returns its stderr."""
        if self.running:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"replay serve did not stop within {STOP_TIMEOUT:g} s of {sig.name}:\n{self.stderr()}")
        stderr = self.stderr()
        assert self.proc.returncode == 0, f"replay serve exited with {self.proc.returncode}; stderr:\n{stderr}"
        assert "stopped; state is on disk" in stderr, stderr
        assert "Traceback" not in stderr, stderr
        return stderr

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        if self.running:
            self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT)


class Servers:
    """Starts ``replay serve`` children; :meth:`close` stops the ones still running.

    :param workdir: the children's working directory, and where their stderr files go.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[ReplayServer] = []

    def command(self, port: int, data_dir: Path, args: Iterable[str]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "replay",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *args,
        ]

    def spawn(
        self, port: int, data_dir: Path, args: Iterable[str], env: Mapping[str, str] | None = None
    ) -> ReplayServer:
        """Launch ``replay serve`` on ``port`` (its stderr to a file of the workdir); not waited for."""
        stderr_path = self.workdir / f"replay-serve-{len(self.started) + 1}-{port}.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                self.command(port, data_dir, args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=server_env(env),
                cwd=self.workdir,
            )
        return ReplayServer(proc, port, data_dir, stderr_path)

    def start(
        self,
        data_dir: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        avoid_ports: Iterable[int] = (),
    ) -> ReplayServer:
        """Start a server on a free port (not one of ``avoid_ports``) and wait until it is healthy."""
        avoided = {server.port for server in self.started} | set(avoid_ports)
        for _attempt in range(3):
            port = free_port(avoided)
            server = self.spawn(port, data_dir, args, env)
            self.started.append(server)
            try:
                server.wait_healthy()
            except pytest.fail.Exception:
                if server.proc.returncode is not None and "Address already in use" in server.stderr():
                    avoided.add(port)  # lost a race for the port: take another one
                    continue
                raise
            return server
        pytest.fail("could not bind a free port in 3 attempts")

    def run(
        self, data_dir: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``replay serve`` expecting it to exit by itself (bad configuration, corrupt log)."""
        return subprocess.run(
            self.command(free_port(), data_dir, args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=server_env(env),
            cwd=self.workdir,
            timeout=timeout,
            check=False,
        )

    def close(self) -> None:
        """SIGTERM every server still running and check that each exited 0."""
        failures: list[str] = []
        for server in self.started:
            if server.running:
                try:
                    server.stop()
                except AssertionError as exc:
                    failures.append(str(exc))
        assert not failures, "\n\n".join(failures)


def replay_cli(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m replay ARGS`` to its end (``inspect``, ``verify``, ``export`` ...), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "replay", *args],
        capture_output=True,
        text=True,
        env=server_env(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``3m``) mounted at ``mount`` (made if missing), unmounted at the end; the test is
    skipped where mounting is not allowed."""
    mount.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


class AwsClients:
    """Makes boto3 clients for a server; :meth:`close` closes them all."""

    session_token = SESSION_TOKEN

    def __init__(self) -> None:
        self.clients: list[Any] = []

    def __call__(self, service: str, server: ReplayServer | str, **config: Any) -> Any:
        """A ``service`` client for ``server`` (or an endpoint URL); ``config`` adds botocore options."""
        endpoint = server.endpoint if isinstance(server, ReplayServer) else server
        options = BotoConfig(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1, "mode": "standard"},  # a retried mutation would be recorded twice
            connect_timeout=5,
            read_timeout=60,
        )
        if config:
            options = options.merge(BotoConfig(**config))
        session = boto3.session.Session()  # one per client: clients may be made and used from threads
        client = session.client(
            service,
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            aws_session_token=SESSION_TOKEN,
            config=options,
        )
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    yield started
    started.close()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    started = Servers(tmp_path_factory.mktemp("servers"))
    yield started
    started.close()


@pytest.fixture
def aws() -> Iterator[AwsClients]:
    clients = AwsClients()
    yield clients
    clients.close()


@pytest.fixture(scope="module")
def module_aws() -> Iterator[AwsClients]:
    clients = AwsClients()
    yield clients
    clients.close()
