from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson
from werkzeug.test import Client

from replay.backends import DisabledBackend
from replay.serve.endpoints import COMPACT_PATH, HEALTH_PATH, ControlEndpoints

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def test_health_is_503_until_open_then_200() -> None:
    endpoints = ControlEndpoints(DisabledBackend(), lambda: ["s3", "sqs"], version="9.9")
    client = Client(endpoints)
    before = client.get(HEALTH_PATH)
    assert before.status_code == 503
    assert orjson.loads(before.data)["status"] == "restoring"
    endpoints.open(hello)
    after = client.get(HEALTH_PATH)
    assert after.status_code == 200
    document = orjson.loads(after.data)
    assert document["features"] == {"persistence": "disabled", "initScripts": "initializing"}  # no ready.d run
    assert document["services"] == {"s3": "available", "sqs": "available"}
    assert document["version"] == "9.9" and document["edition"] == "community"
    head = client.head(HEALTH_PATH)
    assert head.status_code == 200 and head.data == b""


def test_requests_wait_for_the_restore_instead_of_failing() -> None:
    endpoints = ControlEndpoints(DisabledBackend())
    answers: list[bytes] = []
    waiting = threading.Thread(target=lambda: answers.append(Client(endpoints).get("/anything").data))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and answers == []  # held, not refused
    endpoints.open(hello)
    waiting.join(5)
    assert answers == [b"hello"]


def test_wait_idle_sees_requests_in_flight() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        started.set()
        release.wait(5)
        return [b"done"]

    endpoints = ControlEndpoints(DisabledBackend())
    endpoints.open(slow)
    worker = threading.Thread(target=lambda: Client(endpoints).get("/").close())
    worker.start()
    assert started.wait(5)
    assert endpoints.wait_idle(0.1) is False
    release.set()
    worker.join(5)
    assert endpoints.wait_idle(1) is True


class Compacting(DisabledBackend):
    def __init__(self, outcome: dict[str, object] | Exception) -> None:
        self.outcome = outcome

    def compact(self) -> dict[str, object]:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def test_compact_endpoint_answers_what_the_backend_did() -> None:
    endpoints = ControlEndpoints(Compacting({"kind": "checkpoint", "checkpoint": "000003"}))
    endpoints.open(hello)
    client = Client(endpoints)
    done = client.post(COMPACT_PATH)
    assert done.status_code == 200
    assert orjson.loads(done.data) == {"status": "ok", "kind": "checkpoint", "checkpoint": "000003"}
    assert client.get(COMPACT_PATH).status_code == 405


def test_compact_endpoint_says_why_it_could_not() -> None:
    endpoints = ControlEndpoints(DisabledBackend())
    endpoints.open(hello)
    refused = Client(endpoints).post(COMPACT_PATH)
    assert refused.status_code == 409
    assert orjson.loads(refused.data) == {
        "status": "error",
        "message": "persistence is disabled: there is nothing to compact",
    }
    broken = ControlEndpoints(Compacting(OSError("disk full")))
    broken.open(hello)
    failed = Client(broken).post(COMPACT_PATH)
    assert failed.status_code == 500 and orjson.loads(failed.data)["message"] == "disk full"
