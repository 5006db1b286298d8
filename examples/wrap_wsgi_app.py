"""Keep any WSGI app's state across restarts with one line.

Run it twice with the same data dir: the second run starts where the first ended.

    python examples/wrap_wsgi_app.py /tmp/notes-volume "first note"
    python examples/wrap_wsgi_app.py /tmp/notes-volume "second note"
    # -> notes: ['first note', 'second note']
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.test import Client

import replay

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

NOTES: list[str] = []


def notes_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """POST /notes adds the body as a note; GET /notes lists them."""
    if environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        NOTES.append(environ["wsgi.input"].read(length).decode("utf-8"))
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"added"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\n".join(NOTES).encode("utf-8")]


def main(data_dir: str, note: str) -> None:
    app = replay.persist(notes_app, data_dir)  # <- the one line
    client = Client(app)
    client.post("/notes", data=note.encode("utf-8"))
    print("notes:", client.get("/notes").get_data(as_text=True).splitlines())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
