"""The replay backend: progress while restoring, in the log and in the health status."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from replay.backends.record_replay import RecordReplayBackend
from replay.record.entry import Entry, Request, Response, encode_entry

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def test_long_restores_report_progress(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "recorded_api_calls.json"
    entry = Entry(0.0, "notes", "Add", Request("POST", "/notes", "", [], b"x"), Response(200, [], b""))
    log.write_bytes(encode_entry(entry) * 40)
    seen: list[dict[str, object]] = []

    def slow(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        time.sleep(0.005)
        seen.append(backend.status())  # what the health endpoint would show right now
        start_response("200 OK", [])
        return [b""]

    backend = RecordReplayBackend(slow, log)
    backend.progress_interval = 0.02
    with caplog.at_level(logging.INFO, logger="replay.replayer"):
        backend.restore()
    backend.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("restoring ")]
    assert lines, caplog.text
    assert all(f"restoring {log}: " in line and "calls replayed" in line and "calls/s" in line for line in lines)
    progress = [s["progress"] for s in seen if "progress" in s]
    assert progress and 0 < progress[-1]["calls"] < 40  # type: ignore[index]
    assert backend.status()["restored"] == 40 and "progress" not in backend.status()
    assert "Restored 40 API calls from persistent file" in caplog.text


def test_status_answers_while_and_after_the_backend_closes(tmp_path: Path) -> None:
    """The health endpoint may read the status of a backend a restart is closing: it answers, it does not fail."""
    from replay.serve.emulators import moto_emulator

    emulator = moto_emulator()
    backend = RecordReplayBackend(
        emulator.app, tmp_path / "recorded_api_calls.json", adapter=emulator.adapter, seeder=emulator.seeder
    )
    backend.restore()
    assert backend.checkpointer is not None
    before = backend.status()
    backend.close(checkpoint=False)
    after = backend.status()
    assert after["checkpoint"]["log_bytes_since"] == before["checkpoint"]["log_bytes_since"]  # type: ignore[index]
