"""Fixtures shared by the in-process tests that drive moto."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig
from hypothesis import settings

from replay.serve.emulators import Emulator, moto_emulator

# Property tests (marker ``fuzz``): a bounded, seeded sample by default (what CI runs); the full run is
# ``REPLAY_FUZZ_EXAMPLES=500 python -m pytest -m fuzz``, with fresh random examples every time.
_EXAMPLES = int(os.environ.get("REPLAY_FUZZ_EXAMPLES", "0") or 0)
settings.register_profile("bounded", max_examples=30, derandomize=True, deadline=None)
settings.register_profile("full", max_examples=max(_EXAMPLES, 1), deadline=None)
settings.load_profile("full" if _EXAMPLES else "bounded")


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    """moto's server app with its seeder, reset and state adapter (one per test module)."""
    return moto_emulator()


@pytest.fixture
def fresh(emulator: Emulator) -> Iterator[Emulator]:
    """moto, empty before the test and emptied again after it (its state is process-global)."""
    from replay.adapters import moto as moto_adapter

    assert emulator.reset is not None
    emulator.reset()
    yield emulator
    moto_adapter._DEFERRED.clear()  # a test that failed before closing its backend leaves nothing to load later
    emulator.reset()


class InProcessServer:
    """``replay serve`` (moto, record-and-replay backend) on a thread of this process, on a free port."""

    def __init__(self, data_dir: Path) -> None:
        from replay.config import Config
        from replay.serve.emulators import moto_emulator
        from replay.serve.server import Server

        config = Config.load({"host": "127.0.0.1", "port": 0, "data_dir": data_dir, "checkpoint_percentage": 0})
        self.data_dir = data_dir
        self.server = Server(config, moto_emulator())
        self.endpoint = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve, name="in-process-replay", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while requests.get(self.endpoint + "/_localstack/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the in-process server did not become healthy"
            time.sleep(0.02)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "recorded_api_calls.json"

    def client(self, service: str) -> Any:
        """A boto3 client for this server (us-east-1, test credentials, path-style S3, no retries)."""
        session = boto3.session.Session()
        return session.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the in-process server did not stop"


@pytest.fixture(scope="session")
def start_server() -> type[InProcessServer]:
    """Starts more in-process servers: ``start_server(data_dir)`` (stop each one yourself)."""
    return InProcessServer


@pytest.fixture
def in_process_server(tmp_path: Path, fresh: Emulator) -> Iterator[InProcessServer]:
    """A recording server in this process over empty moto; stopped (log closed) at the end."""
    server = InProcessServer(tmp_path / "volume")
    try:
        yield server
    finally:
        if server.thread.is_alive():
            server.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real ``moto_server`` process on a free port: an S3 store of its own (replicas go there)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(requests.RequestException):
            requests.get(url + "/moto-api/", timeout=1)
            break
        assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def replica_store(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client of :func:`s3_endpoint` with the bucket ``replicas``; credentials for replay to reach it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEAM")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    store = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    if "replicas" not in {bucket["Name"] for bucket in store.list_buckets()["Buckets"]}:
        store.create_bucket(Bucket="replicas")
    return store
