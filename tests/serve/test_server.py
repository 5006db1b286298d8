"""The server in-process, on a real socket, around a tiny WSGI app."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from replay.config import Config
from replay.errors import ConfigError
from replay.serve.emulators import Emulator, load_emulator
from replay.serve.server import Server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

import pytest


class Counter:
    def __init__(self) -> None:
        self.value = 0

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "POST":
            self.value += 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(self.value).encode()]


def run(server: Server) -> threading.Thread:
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    for _ in range(100):
        try:
            if requests.get(server.url + "/_localstack/health", timeout=1).status_code == 200:
                return thread
        except requests.ConnectionError:
            pass
        threading.Event().wait(0.05)
    raise AssertionError("server did not become healthy")


def test_state_survives_a_restart_on_another_port(tmp_path: Path) -> None:
    config = Config(port=0, data_dir=tmp_path / "volume")
    first = Server(config, Emulator(Counter()))
    thread = run(first)
    for _ in range(3):
        assert requests.post(first.url + "/count", timeout=5).ok
    assert requests.get(first.url + "/count", timeout=5).text == "3"
    first.stop()
    thread.join(10)
    assert not thread.is_alive()

    counter = Counter()
    second = Server(config, Emulator(counter))
    assert second.port != 0
    thread = run(second)
    assert counter.value == 3  # restored before the first request
    health = requests.get(second.url + "/_localstack/health", timeout=5).json()
    assert health["features"] == {"persistence": "initialized", "initScripts": "initialized"}
    assert health["persistence"]["restored"] == 3
    second.stop()
    thread.join(10)


def test_persistence_off_records_nothing(tmp_path: Path) -> None:
    server = Server(Config(port=0, data_dir=tmp_path / "volume", persistence=False), Emulator(Counter()))
    thread = run(server)
    requests.post(server.url + "/count", timeout=5)
    assert requests.get(server.url + "/_localstack/health", timeout=5).json()["features"] == {
        "persistence": "disabled",
        "initScripts": "initialized",
    }
    server.stop()
    thread.join(10)
    assert not (tmp_path / "volume").exists()


def test_load_emulator_by_import_path() -> None:
    assert callable(load_emulator("tests.serve.test_server:Counter").app)
    for bad in ("nonexistent.module:app", "tests.serve.test_server:missing", "no-colon"):
        with pytest.raises(ConfigError):
            load_emulator(bad)


def test_a_port_in_use_fails_the_start_and_leaves_the_data_dir_free(tmp_path: Path) -> None:
    """A start that cannot bind has opened no log, and releases the data dir's lock for the next server."""
    import socket

    from replay.config import LOG_FILE_NAME

    data = tmp_path / "volume"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = Config(host="127.0.0.1", port=taken.getsockname()[1], data_dir=data)
        with pytest.raises((OSError, SystemExit)):  # werkzeug says why on stderr and exits 1
            Server(config, Emulator(Counter()))
    assert not (data / LOG_FILE_NAME).exists()  # the backend opens its log only when it restores
    server = Server(Config(port=0, data_dir=data), Emulator(Counter()))  # the data dir is free for the next one
    thread = run(server)
    assert requests.post(server.url + "/count", timeout=5).ok
    server.stop()
    thread.join(10)
    assert not thread.is_alive()
