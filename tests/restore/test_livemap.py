"""LiveIdMapping: old ids in, new ids to the emulator; new ids out, old ids to the client; bytes kept."""

from __future__ import annotations

from typing import Any

from werkzeug.test import Client

from replay.restore.livemap import LiveIdMapping
from replay.restore.mapping import IdMapping

OLD = "4f1c2a9e-5d3b-4c8e-9f7a-1b2c3d4e5f60"
NEW = "9a8b7c6d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"


def _mapping() -> IdMapping:
    mapping = IdMapping()
    mapping.learn([(OLD, NEW)])
    return mapping


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers what it was asked, naming the new id; with an opaque body for /blob."""
    seen = [environ["PATH_INFO"], environ["QUERY_STRING"].split("=")[-1], environ.get("HTTP_X_REF", "")]
    assert seen == [f"/things/{NEW}", NEW, NEW] or environ["PATH_INFO"] == "/blob"
    body_in = environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/blob":
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "36")])
        return [NEW.encode()]
    document = b'{"seen": "%s",  "id":"%s", "body": %s}\n' % (seen[0].encode(), NEW.encode(), body_in or b"null")
    headers = [("Content-Type", "application/json"), ("Location", f"/things/{NEW}")]
    start_response("200 OK", [*headers, ("Content-Length", str(len(document)))])
    return [document]


def test_requests_name_new_ids_and_answers_show_old_ones_in_place() -> None:
    client = Client(LiveIdMapping(_echo, _mapping()))
    answer = client.post(f"/things/{OLD}?ref={OLD}", headers={"X-Ref": OLD}, json={"parent": OLD})
    assert answer.status_code == 200, answer.data  # the app saw the new id in path, query, header and body
    assert answer.data == b'{"seen": "/things/%s",  "id":"%s", "body": {"parent":"%s"}}\n' % (
        OLD.encode(),
        OLD.encode(),
        OLD.encode(),
    )  # formatting (two spaces, no space) kept; every new id shown as the old one
    assert answer.headers["Location"] == f"/things/{OLD}"
    assert answer.headers["Content-Length"] == str(len(answer.data))


def test_opaque_answers_pass_untouched() -> None:
    client = Client(LiveIdMapping(_echo, _mapping()))
    assert client.get("/blob").data == NEW.encode()


def test_the_inverse_mapping() -> None:
    inverse = _mapping().inverse()
    assert inverse.map_value(NEW) == OLD and inverse.map_value(OLD) == OLD
