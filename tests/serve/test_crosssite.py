"""Control endpoints refuse other sites' pages and rebound DNS names; AWS calls are not affected."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests

from replay.config import Config
from replay.serve.crosssite import ControlAccess

if TYPE_CHECKING:
    from conftest import InProcessServer

ACCESS = ControlAccess(
    "127.0.0.1", allowed_hosts=["replay.internal", "*.corp.test"], extra_origins=["https://tool.test"]
)


@pytest.mark.parametrize(
    ("path", "host", "origin"),
    [
        ("/_localstack/state/reset", "localhost:4566", None),
        ("/_localstack/state/reset", "127.0.0.1:4566", "http://localhost:3000"),
        ("/_localstack/state/reset", "[::1]:4566", "http://127.0.0.1:8080"),
        ("/_localstack/state/reset", "localhost.localstack.cloud:4566", "https://app.localstack.cloud"),
        ("/_replay/compact", "api.localhost.localstack.cloud", None),
        ("/_replay/export", "replay.internal:4566", "https://tool.test"),
        ("/moto-api/reset", "ci.corp.test", None),
        ("/_localstack/state/save", None, None),  # HTTP/1.0, no Host
        ("/bucket/key", "evil.example", "https://evil.example"),  # not a control path: AWS calls pass
        ("/", "bucket.s3.amazonaws.com", None),
    ],
)
def test_allowed(path: str, host: str | None, origin: str | None) -> None:
    assert ACCESS.refusal(path, host, origin) is None


@pytest.mark.parametrize(
    ("path", "host", "origin", "needle"),
    [
        ("/_localstack/state/reset", "localhost:4566", "https://evil.example", "Origin 'https://evil.example'"),
        ("/_localstack/state/reset", "localhost:4566", "null", "Origin 'null'"),
        ("/moto-api/reset", "127.0.0.1:4566", "http://evil.localhost.evil.example", "Origin"),
        ("/_replay/export", "rebound.evil.example:4566", None, "Host 'rebound.evil.example:4566'"),
        ("/_localstack/state/save", "10.0.0.5:4566", None, "REPLAY_ALLOWED_HOSTS"),
        ("/_localstack/health", "evil.example", None, "Host"),  # POSTs to health are control calls
    ],
)
def test_refused(path: str, host: str | None, origin: str | None, needle: str) -> None:
    reason = ACCESS.refusal(path, host, origin)
    assert reason is not None and needle in reason


def test_origin_checks_can_be_turned_off_and_the_settings_are_read() -> None:
    config = Config.load(
        {},
        {
            "DISABLE_CORS_CHECKS": "1",
            "REPLAY_ALLOWED_HOSTS": "replay.internal, *.corp.test",
            "EXTRA_CORS_ALLOWED_ORIGINS": "https://a.test,https://b.test",
        },
    )
    assert not config.cors_checks
    assert config.allowed_hosts == ("replay.internal", "*.corp.test")
    assert config.extra_origins == ("https://a.test", "https://b.test")
    open_origins = ControlAccess(check_origins=config.cors_checks)
    assert open_origins.refusal("/_localstack/state/reset", "localhost", "https://evil.example") is None
    assert open_origins.refusal("/_localstack/state/reset", "evil.example", None) is not None  # Host still checked


def test_a_web_page_cannot_wipe_the_state_but_a_local_client_can(in_process_server: InProcessServer) -> None:
    sqs = in_process_server.client("sqs")
    sqs.create_queue(QueueName="kept")
    url = in_process_server.endpoint
    for headers in ({"Origin": "https://evil.example"}, {"Host": "rebound.evil.example"}):
        for path in ("/_localstack/state/reset", "/moto-api/reset", "/_replay/compact"):
            answer = requests.post(url + path, headers=headers, timeout=10)
            assert answer.status_code == 403, (path, headers, answer.text)
            assert answer.json()["error"] == "forbidden"
    assert [u.rsplit("/", 1)[1] for u in sqs.list_queues()["QueueUrls"]] == ["kept"]
    s3 = in_process_server.client("s3")
    s3.create_bucket(Bucket="pages")  # AWS calls are not checked
    answer = requests.post(url + "/_localstack/state/reset", headers={"Origin": "http://localhost:3000"}, timeout=10)
    assert answer.status_code == 200
    assert "QueueUrls" not in sqs.list_queues()
