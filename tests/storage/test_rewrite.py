"""``compact_in_place`` reports bytes before and after that measure the same stretch of the log file."""

from __future__ import annotations

from pathlib import Path

from replay.config import FsyncPolicy
from replay.record.entry import Entry, Request, Response, encode_entry
from replay.record.log import CallLog, read_header
from replay.storage.rewrite import compact_in_place

LOG_NAME = "recorded_api_calls.json"


def note(body: bytes) -> bytes:
    request = Request("POST", "/notes", "", [("Content-Type", "text/plain")], body)
    return encode_entry(Entry(1_700_000_000.0, "notes", "AddNote", request, Response(200, [], b"")))


def test_a_log_with_only_its_header_is_the_same_size_before_and_after(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO, header="000001") as log:
        size = path.stat().st_size
        report = compact_in_place(log, read_header(path)[1])
    assert size > 0
    assert (report.read, report.kept, report.dropped) == (0, 0, 0)
    assert report.bytes_before == size  # the header counts before as it does after: never "0 -> 30 bytes"
    assert report.bytes_after == path.stat().st_size == size


def test_an_empty_log_is_0_bytes_before_and_after(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        report = compact_in_place(log)
    assert (report.read, report.bytes_before, report.bytes_after) == (0, 0, 0)
    assert path.stat().st_size == 0


def test_bytes_before_and_after_are_the_file_before_and_after(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO, header="000002") as log:
        for n in range(3):
            log.append(note(str(n).encode()))
        size = path.stat().st_size
        report = compact_in_place(log, read_header(path)[1])
    assert (report.read, report.kept) == (3, 3)
    assert report.bytes_before == size
    assert report.bytes_after == path.stat().st_size


def test_calls_appended_during_the_compaction_count_in_neither(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    appended: list[int] = []
    with CallLog(path, FsyncPolicy.NO, header="000003") as log:
        log.append(note(b"early"))
        size = path.stat().st_size

        def step(name: str) -> None:
            if name == "compacted":  # after the calls were read, before the file is rewritten
                before = path.stat().st_size
                log.append(note(b"late"))
                appended.append(path.stat().st_size - before)

        report = compact_in_place(log, read_header(path)[1], step=step)
    assert (report.read, report.kept) == (1, 1)
    assert report.bytes_before == size
    assert report.bytes_after == path.stat().st_size - appended[0]
    assert b'"body":"late"' in path.read_bytes().splitlines()[-1]
