"""CallLog (durable appends) and LogReader (streaming, torn-tail tolerant) on real files."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from replay.config import FsyncPolicy
from replay.errors import LogCorruptError, LogError, LogVersionError, LogWriteError
from replay.record.entry import Entry, Request, Response, decode_entry, encode_entry, numbered
from replay.record.log import CallLog, encode_header, read_header
from replay.record.reader import LogReader

LOG_NAME = "recorded_api_calls.json"


def make_entry(number: int, operation: str = "CreateQueue", body: bytes | None = None) -> Entry:
    """A small, distinctive entry; ``body`` defaults to a JSON body naming ``number``."""
    payload = body if body is not None else orjson.dumps({"QueueName": f"queue-{number}"})
    request = Request(
        "POST",
        "/",
        "",
        [("Host", "localhost:4566"), ("X-Amz-Target", f"AmazonSQS.{operation}")],
        payload,
    )
    response = Response(200, [("Content-Type", "application/x-amz-json-1.0")], b'{"n": %d}' % number)
    return Entry(1_700_000_000.0 + number, "sqs", operation, request, response)


def line(number: int, operation: str = "CreateQueue") -> bytes:
    return encode_entry(make_entry(number, operation))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_all(path: Path) -> list[tuple[int, Entry]]:
    return list(LogReader(path))


def names(pairs: list[tuple[int, Entry]]) -> list[str]:
    return [orjson.loads(entry.request.body)["QueueName"] for _, entry in pairs]


# --- writing and reading back ----------------------------------------------------------------


def test_append_then_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    binary = bytes(range(256))  # not UTF-8: stored as base64
    written = [make_entry(1), make_entry(2, "SendMessage", body=binary), make_entry(3, "DeleteQueue")]
    with CallLog(path, FsyncPolicy.NO) as log:
        for entry in written:
            log.append(encode_entry(entry))

    assert path.read_bytes().count(b"\n") == 3
    reader = LogReader(path)
    pairs = list(reader)
    assert [number for number, _ in pairs] == [1, 2, 3]
    for (_, got), want in zip(pairs, written, strict=True):
        assert got.time == want.time
        assert (got.service, got.operation) == (want.service, want.operation)
        assert (got.request.method, got.request.path, got.request.query) == ("POST", "/", "")
        assert got.request.headers == want.request.headers
        assert got.request.body == want.request.body
        assert (got.response.status, got.response.headers, got.response.body) == (
            200,
            want.response.headers,
            want.response.body,
        )
    assert pairs[1][1].request.body == binary
    assert reader.torn_line is None
    assert reader.position == reader.size == path.stat().st_size


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    reader = LogReader(tmp_path / "nope" / LOG_NAME)
    assert list(reader) == []
    assert reader.size == reader.position == 0


def test_file_is_0600_and_created_dir_is_0700(tmp_path: Path) -> None:
    data_dir = tmp_path / "volume"
    path = data_dir / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        log.append(line(1))
    assert mode(data_dir) == 0o700
    assert mode(path) == 0o600


def test_existing_file_with_loose_mode_is_tightened_to_0600(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    path.write_bytes(line(1))
    path.chmod(0o644)
    with CallLog(path, FsyncPolicy.NO):
        pass
    assert mode(path) == 0o600
    assert names(read_all(path)) == ["queue-1"]


def test_missing_parent_dirs_are_also_0700(tmp_path: Path) -> None:
    parent = tmp_path / "srv"
    path = parent / "volume" / LOG_NAME
    with CallLog(path, FsyncPolicy.NO):
        pass
    assert mode(parent / "volume") == 0o700
    assert mode(parent) == 0o700


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Wrap ``os.<name>`` so that each call is counted (the real call still happens)."""
    calls: list[int] = []
    real: Callable[[int], None] = getattr(os, name)

    def wrapper(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, name, wrapper)
    return calls


def test_fsync_always_syncs_once_per_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / LOG_NAME
    log = CallLog(path, FsyncPolicy.ALWAYS)
    datasyncs = counting(monkeypatch, "fdatasync")
    try:
        for number in range(1, 6):
            log.append(line(number))
            assert len(datasyncs) == number  # synced before append returned
    finally:
        log.close()
    assert len(datasyncs) == 5
    assert names(read_all(path)) == [f"queue-{n}" for n in range(1, 6)]


def test_fsync_always_shares_syncs_between_concurrent_appenders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / LOG_NAME
    log = CallLog(path, FsyncPolicy.ALWAYS)
    synced_upto: list[int] = []
    real = os.fdatasync

    def slow_sync(fd: int) -> None:
        size = os.fstat(fd).st_size  # what this sync is guaranteed to cover
        real(fd)
        time.sleep(0.005)  # a slow disk, so that appenders pile up behind it
        synced_upto.append(size)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    acknowledged: list[tuple[int, int]] = []  # (entry number, file size known synced when append returned)

    def appender(first: int) -> None:
        for number in range(first, first + 25):
            log.append(line(number))
            acknowledged.append((number, synced_upto[-1]))

    threads = [threading.Thread(target=appender, args=(start,)) for start in range(0, 200, 25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    bodies = sorted(entry.request.body for _, entry in read_all(path))
    assert bodies == sorted(make_entry(n).request.body for n in range(200))
    assert len(synced_upto) < 200  # fewer syncs than appends: they were shared
    offsets, position = {}, 0
    for raw in path.read_bytes().splitlines(keepends=True):
        position += len(raw)
        offsets[decode_entry(raw).request.body] = position
    for number, synced in acknowledged:  # every acknowledged entry lay inside a completed sync
        assert offsets[make_entry(number).request.body] <= synced


def test_fsync_no_leaves_appends_to_the_os_and_close_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / LOG_NAME
    log = CallLog(path, FsyncPolicy.NO)
    datasyncs = counting(monkeypatch, "fdatasync")
    fsyncs = counting(monkeypatch, "fsync")
    for number in range(1, 4):
        log.append(line(number))
    assert datasyncs == []
    assert fsyncs == []
    log.close()
    assert len(fsyncs) == 1  # close() always syncs
    assert names(read_all(path)) == ["queue-1", "queue-2", "queue-3"]


def test_fsync_everysec_syncs_in_the_background(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / LOG_NAME
    datasyncs = counting(monkeypatch, "fdatasync")
    log = CallLog(path, FsyncPolicy.EVERYSEC)
    try:
        log.append(line(1))
        log.append(line(2))
        # appends do not wait for the disk; the background thread syncs within about a second
        deadline = time.monotonic() + 10
        while not datasyncs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert datasyncs, "the everysec thread never synced the log"
    finally:
        log.close()
    assert names(read_all(path)) == ["queue-1", "queue-2"]


def test_a_closed_log_still_answers_its_size(tmp_path: Path) -> None:
    """A status read while the log closes (a restart, a stop) asks its size: it gets the size at the close."""
    log = CallLog(tmp_path / LOG_NAME, FsyncPolicy.EVERYSEC)
    log.append(line(1))
    size = log.size()
    assert size == (tmp_path / LOG_NAME).stat().st_size > 0
    log.close()
    assert log.size() == size


@pytest.mark.parametrize("policy", list(FsyncPolicy))
def test_append_after_close_raises_log_write_error(tmp_path: Path, policy: FsyncPolicy) -> None:
    path = tmp_path / LOG_NAME
    log = CallLog(path, policy)
    log.append(line(1))
    log.close()
    log.close()  # idempotent
    with pytest.raises(LogWriteError) as caught:
        log.append(line(2))
    assert caught.value.path == path
    assert "closed" in str(caught.value)
    assert isinstance(caught.value, OSError)
    assert names(read_all(path)) == ["queue-1"]


# --- reading damaged logs --------------------------------------------------------------------


def test_reader_drops_a_torn_last_line_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / LOG_NAME
    third = line(3)
    path.write_bytes(line(1) + line(2) + third[: len(third) // 2])
    reader = LogReader(path)
    with caplog.at_level(logging.WARNING, logger="replay.log"):
        pairs = list(reader)
    assert names(pairs) == ["queue-1", "queue-2"]
    assert reader.torn_line == 3
    warnings = [r for r in caplog.records if r.name == "replay.log" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"{path}:3" in warnings[0].getMessage()
    assert "torn" in warnings[0].getMessage()
    assert reader.position == reader.size


@pytest.mark.parametrize(
    "last",
    [b'{"v": 1, "time": 12, "serv\n', b"not json at all\n", b'{"foreign": "json"}\n', b"[1, 2]\n", b"\x00\x01\n"],
    ids=["cut-json", "text", "foreign-json", "array", "binary"],
)
def test_a_complete_last_line_that_is_not_an_entry_is_corruption_not_a_torn_tail(tmp_path: Path, last: bytes) -> None:
    """Redis's aof-load-truncated: only an unterminated last line is a crash's leftover."""
    path = tmp_path / LOG_NAME
    content = line(1) + last
    path.write_bytes(content)
    with pytest.raises(LogCorruptError) as caught:
        list(LogReader(path))
    assert caught.value.line == 2 and f"{path}:2:" in str(caught.value)
    with pytest.raises(LogCorruptError) as opened:
        CallLog(path, FsyncPolicy.NO)
    assert opened.value.line == 2
    assert path.read_bytes() == content  # nothing moved aside, nothing truncated
    assert torn_files(tmp_path) == []


@pytest.mark.parametrize(
    "bad",
    [b"this is not json\n", b'{"v": 1, "time": 1.0}\n', b"[1, 2, 3]\n", b'{"time": 1.0, "request": {}}\n'],
    ids=["not-json", "no-request", "not-an-object", "no-version"],
)
def test_malformed_middle_line_raises_log_corrupt_error_and_leaves_file_alone(tmp_path: Path, bad: bytes) -> None:
    path = tmp_path / LOG_NAME
    content = line(1) + b"\n" + bad + line(4)  # a blank line 2, the bad line is line 3
    path.write_bytes(content)
    seen: list[int] = []
    with pytest.raises(LogCorruptError) as caught:
        for number, _ in LogReader(path):
            seen.append(number)
    assert seen == [1]  # nothing past the bad line
    assert caught.value.line == 3
    assert caught.value.path == path
    assert f"{path}:3:" in str(caught.value)
    assert path.read_bytes() == content


def test_blank_lines_are_skipped_and_numbers_stay_real(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    path.write_bytes(b"\n" + line(1) + b"   \n\n" + line(2) + b"\n")
    reader = LogReader(path)
    pairs = list(reader)
    assert [number for number, _ in pairs] == [2, 5]
    assert names(pairs) == ["queue-1", "queue-2"]
    assert reader.torn_line is None
    assert reader.position == reader.size


def plain(data: bytes) -> bytes:
    """``data`` without the sequence numbers the log writes (entries' ``"seq"``, headers' ``,"seq"``)."""
    return re.sub(rb',"seq":\d+\}', b"}", re.sub(rb'"seq":\d+,', b"", data))


def future_line() -> bytes:
    data = make_entry(9).to_dict()
    data["v"] = 99
    return orjson.dumps(data) + b"\n"


@pytest.mark.parametrize("where", ["middle", "last"])
def test_newer_format_version_raises_log_version_error(tmp_path: Path, where: str) -> None:
    path = tmp_path / LOG_NAME
    content = line(1) + future_line() + (line(3) if where == "middle" else b"")
    path.write_bytes(content)
    with pytest.raises(LogVersionError) as caught:
        read_all(path)
    assert caught.value.line == 2
    assert caught.value.version == 99
    assert f"{path}:2:" in str(caught.value)
    assert "upgrade" in str(caught.value)
    assert path.read_bytes() == content


# --- repairing the tail on open --------------------------------------------------------------


def torn_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{LOG_NAME}.torn-*"))


def test_open_moves_a_torn_tail_aside_and_next_append_starts_fresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / LOG_NAME
    good = line(1) + line(2)
    third = line(3)
    torn = third[: len(third) - 7]
    path.write_bytes(good + torn)

    with caplog.at_level(logging.WARNING, logger="replay.log"), CallLog(path, FsyncPolicy.NO) as log:
        assert path.read_bytes() == good
        log.append(line(4))

    aside = torn_files(tmp_path)
    assert len(aside) == 1
    assert aside[0].read_bytes() == torn
    assert mode(aside[0]) == 0o600
    assert any(r.name == "replay.log" and str(aside[0]) in r.getMessage() for r in caplog.records)
    reader = LogReader(path)
    assert names(list(reader)) == ["queue-1", "queue-2", "queue-4"]
    assert reader.torn_line is None


def test_open_on_a_file_that_is_only_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    path.write_bytes(b'{"v": 1, "ti')
    with CallLog(path, FsyncPolicy.NO) as log:
        assert path.read_bytes() == b""
        log.append(line(1))
    [aside] = torn_files(tmp_path)
    assert aside.read_bytes() == b'{"v": 1, "ti'
    assert names(read_all(path)) == ["queue-1"]


def test_open_keeps_a_complete_last_entry_lacking_its_newline(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    second = line(2)
    path.write_bytes(line(1) + second.rstrip(b"\n"))
    with CallLog(path, FsyncPolicy.NO) as log:
        assert path.read_bytes() == line(1) + second
        log.append(line(3))
    assert torn_files(tmp_path) == []
    assert names(read_all(path)) == ["queue-1", "queue-2", "queue-3"]


def test_open_leaves_a_newer_version_last_line_in_place(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    content = line(1) + future_line()
    path.write_bytes(content)
    with CallLog(path, FsyncPolicy.NO):
        pass
    assert torn_files(tmp_path) == []
    assert path.read_bytes() == content


def test_open_terminates_a_newer_version_last_line_lacking_its_newline(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    future = future_line()
    path.write_bytes(line(1) + future.rstrip(b"\n"))
    with CallLog(path, FsyncPolicy.NO) as log:
        log.append(line(3))
    assert plain(path.read_bytes()) == line(1) + future + line(3)  # the new entry starts on a fresh line


def test_open_repairs_a_torn_tail_longer_than_the_scan_chunk(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    big = encode_entry(make_entry(1, body=b"x" * 200_000))
    torn = encode_entry(make_entry(2, body=b"y" * 300_000))[:250_000]
    path.write_bytes(big + torn)
    with CallLog(path, FsyncPolicy.NO) as log:
        assert path.read_bytes() == big
        log.append(line(3))
    [aside] = torn_files(tmp_path)
    assert aside.read_bytes() == torn
    pairs = read_all(path)
    assert [number for number, _ in pairs] == [1, 2]
    assert pairs[0][1].request.body == b"x" * 200_000


def test_open_leaves_an_intact_log_untouched(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    content = line(1) + line(2)
    path.write_bytes(content)
    with CallLog(path, FsyncPolicy.NO):
        pass
    assert path.read_bytes() == content
    assert torn_files(tmp_path) == []


# --- concurrency -----------------------------------------------------------------------------


def test_threads_appending_at_once_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    threads_n, per_thread = 8, 500
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    with CallLog(path, FsyncPolicy.NO) as log:

        def work(thread: int) -> None:
            try:
                lines = [encode_entry(make_entry(i, f"T{thread}")) for i in range(per_thread)]
                barrier.wait()
                for encoded in lines:
                    log.append(encoded)
            except BaseException as exc:  # reported in the main thread
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert errors == []

    raw_lines = path.read_bytes().splitlines()
    assert len(raw_lines) == threads_n * per_thread
    by_thread: dict[str, list[int]] = {}
    for raw in raw_lines:
        entry = decode_entry(raw)
        by_thread.setdefault(entry.operation, []).append(int(entry.time - 1_700_000_000.0))
    assert sorted(by_thread) == [f"T{t}" for t in range(threads_n)]
    for numbers in by_thread.values():
        assert numbers == list(range(per_thread))
    reader = LogReader(path)
    assert sum(1 for _ in reader) == threads_n * per_thread
    assert reader.position == reader.size


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from replay.config import FsyncPolicy
    from replay.record.entry import Entry, Request, Response, encode_entry
    from replay.record.log import CallLog

    path, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    lines = [
        encode_entry(
            Entry(float(i), "s3", tag, Request("PUT", f"/b/{tag}/{i}", "", [], (tag * 65536).encode()),
                  Response(200, [], b""))
        )
        for i in range(count)
    ]
    with CallLog(path, FsyncPolicy.NO) as log:
        sys.stdout.write("ready\\n")
        sys.stdout.flush()
        sys.stdin.readline()  # start together
        for encoded in lines:
            log.append(encoded)
    """
)


def test_two_processes_appending_at_once_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "volume" / LOG_NAME
    count = 150  # 64 KiB bodies: ~10 MB per writer
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), tag, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for tag in ("A", "B")
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline() == b"ready\n"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write(b"go\n")
            writer.stdin.close()
        for writer in writers:
            assert writer.wait(timeout=60) == 0
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
            if writer.stdout is not None:
                writer.stdout.close()

    seen: dict[str, list[int]] = {"A": [], "B": []}
    reader = LogReader(path)
    for _, entry in reader:
        tag = entry.operation
        assert entry.request.body == (tag * 65536).encode()
        seen[tag].append(int(entry.time))
        assert entry.request.path == f"/b/{tag}/{int(entry.time)}"
    assert reader.torn_line is None
    assert reader.position == reader.size
    assert seen == {"A": list(range(count)), "B": list(range(count))}
    assert path.read_bytes().count(b"\n") == 2 * count


def test_a_cut_line_followed_by_newlines_is_complete_and_so_corruption(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    content = line(1) + line(2)[:25] + b"\n\n \n"
    path.write_bytes(content)
    with pytest.raises(LogCorruptError) as caught:
        read_all(path)
    assert caught.value.line == 2
    assert path.read_bytes() == content


def test_entries_are_numbered_in_order_and_a_duplicate_or_reordered_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        for number in range(1, 4):
            log.append(line(number))
    lines = path.read_bytes().splitlines(keepends=True)
    assert [orjson.loads(entry)["seq"] for entry in lines] == [1, 2, 3]
    with CallLog(path, FsyncPolicy.NO) as log:  # a new writer counts on
        log.append(line(4))
    assert orjson.loads(path.read_bytes().splitlines()[-1])["seq"] == 4
    lines = path.read_bytes().splitlines(keepends=True)
    for damaged, bad_line in (
        ([*lines[:3], lines[1], *lines[3:]], 4),  # entry 2 again
        ([lines[0], lines[2], lines[1], lines[3]], 3),  # 3 before 2
    ):
        path.write_bytes(b"".join(damaged))
        with pytest.raises(LogCorruptError) as caught:
            read_all(path)
        assert caught.value.line == bad_line
        assert "duplicated or reordered" in str(caught.value)


def test_logs_without_numbers_still_read_and_numbering_starts_after_them(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    path.write_bytes(line(1) + line(2))  # written before entries were numbered
    assert names(read_all(path)) == ["queue-1", "queue-2"]
    with CallLog(path, FsyncPolicy.NO) as log:
        log.append(line(3))
    assert orjson.loads(path.read_bytes().splitlines()[-1])["seq"] == 1
    assert names(read_all(path)) == ["queue-1", "queue-2", "queue-3"]


def test_another_process_appending_is_counted_on(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    first, second = CallLog(path, FsyncPolicy.NO), CallLog(path, FsyncPolicy.NO)
    try:
        first.append(line(1))
        second.append(line(2))
        first.append(line(3))
    finally:
        first.close()
        second.close()
    assert [orjson.loads(entry)["seq"] for entry in path.read_bytes().splitlines()] == [1, 2, 3]


def test_a_directory_in_place_of_the_log_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    path.mkdir()
    with pytest.raises(LogError) as caught:
        read_all(path)
    assert str(caught.value) == f"{path}: is a directory, not a call log"


# --- headers, stretches and rewrites (what checkpoints need) ---------------------------------


def test_a_new_log_starts_with_the_header_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO, header="000007") as log:
        assert log.header == "000007"
        log.append(line(1))
    assert plain(path.read_bytes()) == encode_header("000007") + line(1)
    assert read_header(path) == ("000007", len(encode_header("000007")))
    reader = LogReader(path)
    assert names(list(reader)) == ["queue-1"]  # the header is not an entry
    assert reader.checkpoint == "000007" and reader.position == reader.size


def test_an_existing_log_keeps_its_own_header(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    path.write_bytes(line(1))
    with CallLog(path, FsyncPolicy.NO, header="000002") as log:
        assert log.header is None  # a whole history: not relabelled
    path.write_bytes(encode_header("000001") + line(1))
    with CallLog(path, FsyncPolicy.NO, header="000002") as log:
        assert log.header == "000001"
    assert read_header(tmp_path / "missing") == (None, 0)


def test_a_header_alone_is_an_empty_log_and_its_lost_newline_is_restored(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    path.write_bytes(encode_header("000003").rstrip(b"\n"))
    with CallLog(path, FsyncPolicy.NO) as log:
        log.append(line(1))
    assert plain(path.read_bytes()) == encode_header("000003") + line(1)
    assert torn_files(tmp_path) == []


def test_reader_reads_a_stretch_between_offsets_with_real_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    path.write_bytes(line(1) + line(2) + b"\n" + line(3) + line(4))
    start = len(line(1))
    end = start + len(line(2)) + 1 + len(line(3))
    reader = LogReader(path, start, end)
    pairs = list(reader)
    assert names(pairs) == ["queue-2", "queue-3"]
    assert [number for number, _ in pairs] == [2, 4]
    assert reader.size == end and reader.position == end
    assert reader.checkpoint is None  # only looked for from offset 0


def test_rewrite_keeps_what_follows_the_offset_after_a_new_header(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        sizes = []
        for number in range(1, 5):
            log.append(line(number))
            sizes.append(log.size())
        size = log.rewrite(sizes[1], "000001")
        assert log.header == "000001"
        log.append(line(5))  # goes to the new file
        assert size == len(path.read_bytes()) - len(path.read_bytes().splitlines(keepends=True)[-1])
    assert plain(path.read_bytes()) == encode_header("000001") + line(3) + line(4) + line(5)
    assert path.read_bytes().startswith(encode_header("000001", 4))  # the header carries the last number
    assert [entry.seq for _, entry in LogReader(path)] == [3, 4, 5]
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [LOG_NAME]  # no temporary file left


def test_rewrite_with_a_prefix_file(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    prefix = tmp_path / "prefix"
    prefix.write_bytes(line(9))
    with CallLog(path, FsyncPolicy.NO) as log:
        log.append(line(1))
        first = log.size()
        log.append(line(2))
        log.rewrite(first, None, prefix=prefix)
        assert log.header is None
    assert plain(path.read_bytes()) == line(9) + line(2)


def test_appends_during_a_rewrite_are_neither_lost_nor_doubled(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    stop = threading.Event()
    appended: list[int] = []
    with CallLog(path, FsyncPolicy.NO) as log:
        for number in range(200):
            log.append(line(number))
            appended.append(number)

        def appender() -> None:
            number = 200
            while not stop.is_set():
                log.append(line(number))
                appended.append(number)
                number += 1

        worker = threading.Thread(target=appender)
        worker.start()
        offsets = []
        open_files = len(os.listdir("/proc/self/fd"))
        for round_ in range(1, 6):  # each rewrite keeps everything from the current end on
            offsets.append(log.size())
            log.rewrite(offsets[-1], f"{round_:06d}")
        assert len(os.listdir("/proc/self/fd")) == open_files  # each replaced file was closed, once
        stop.set()
        worker.join()
    reader = LogReader(path)
    kept = [int(entry.time - 1_700_000_000.0) for _, entry in reader]
    assert reader.checkpoint == "000005"
    assert kept == sorted(kept) and len(kept) == len(set(kept))  # in order, none twice
    assert kept[-1] == appended[-1]  # the last acknowledged append is there
    assert kept == appended[appended.index(kept[0]) :]  # and nothing between the cut and it is missing


def test_an_appender_in_another_process_follows_a_rewrite(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as first:
        first.append(line(1))
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import sys
                    from pathlib import Path
                    from replay.config import FsyncPolicy
                    from replay.record.log import CallLog
                    with CallLog(Path(sys.argv[1]), FsyncPolicy.NO) as log:
                        log.rewrite(log.size(), "000001")
                    """
                ),
                str(path),
            ],
            check=True,
            timeout=60,
        )
        assert other.returncode == 0
        first.append(line(2))  # notices the file it holds was replaced, and appends to the new one
    assert plain(path.read_bytes()) == encode_header("000001") + line(2)
    assert [entry.seq for _, entry in LogReader(path)] == [2]  # counted on from the other process's header


def test_opening_removes_what_dead_rewriters_left_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead_pid = int(dead.stdout)
    left = [
        tmp_path / f".{LOG_NAME}.{dead_pid}.rewrite",
        tmp_path / f"..{LOG_NAME}.{dead_pid}.compacted.{dead_pid}.tmp",
    ]
    alive = [tmp_path / f".{LOG_NAME}.{os.getppid()}.rewrite", tmp_path / ".other.json.1.tmp"]
    for file in left + alive:
        file.write_bytes(b"half")
    with CallLog(path, FsyncPolicy.NO):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LOG_NAME, *(p.name for p in alive)])


def test_a_rewrite_refuses_a_file_another_process_replaced_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as first, CallLog(path, FsyncPolicy.NO) as second:
        first.append(line(1))
        cut = first.size()
        first.append(line(2))
        offset = second.size()  # an offset in the file as it is now
        first.rewrite(cut, "000001")
        after = path.read_bytes()
        with pytest.raises(LogWriteError, match="replaced by another process during the rewrite"):
            second.rewrite(offset, "000002")
        assert path.read_bytes() == after
        assert plain(after) == encode_header("000001") + line(2)
        second.append(line(3))  # and it appends to the file that is there now
    assert plain(path.read_bytes()) == encode_header("000001") + line(2) + line(3)
    assert [entry.seq for _, entry in LogReader(path)] == [2, 3]


def test_a_localstack_log_is_named_as_such_and_never_taken_for_a_torn_tail(tmp_path: Path) -> None:
    legacy = b'{"a": "sqs", "m": "POST", "p": "/", "d": "", "h": {}, "rd": ""}\n'
    for lines in (legacy, legacy * 3):
        path = tmp_path / "recorded_api_calls.json"
        path.write_bytes(lines)
        with pytest.raises(LogCorruptError, match=r":1: malformed entry \(a LocalStack record, not a replay entry"):
            list(LogReader(path))
        assert path.read_bytes() == lines


def test_numbering_goes_on_after_a_torn_tail_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        log.append(line(1))
        log.append(line(2))
    path.write_bytes(path.read_bytes() + line(3)[:20])  # a crash in the middle of the third
    with CallLog(path, FsyncPolicy.NO) as log:
        log.append(line(4))
    assert [entry.seq for _, entry in LogReader(path)] == [1, 2, 3]


# --- exclusive mode: one writer, locked once -------------------------------------------------


def lock_is_free(path: Path) -> bool:
    """Whether another open file could take the log's ``flock`` now."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_an_exclusive_log_appends_and_numbers_without_flock_or_fstat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import replay.record.log

    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        log.append(line(1))  # numbering goes on from what the file holds
    calls: list[str] = []
    with CallLog(path, FsyncPolicy.ALWAYS, exclusive=True) as log:
        assert not lock_is_free(path)  # held from the open on, by this log
        real_flock, real_fstat = replay.record.log._flock, replay.record.log._fstat
        monkeypatch.setattr(replay.record.log, "_flock", lambda *a: (calls.append("flock"), real_flock(*a))[1])
        monkeypatch.setattr(replay.record.log, "_fstat", lambda *a: (calls.append("fstat"), real_fstat(*a))[1])
        for number in range(2, 6):
            log.append(line(number))
        assert calls == []  # no lock and no fstat per append
        assert log.size() == path.stat().st_size
        assert "exclusive" in repr(log)
        monkeypatch.undo()
    assert lock_is_free(path)  # released on close
    assert plain(path.read_bytes()) == b"".join(line(number) for number in range(1, 6))
    assert [entry.seq for _, entry in LogReader(path)] == [1, 2, 3, 4, 5]


def test_a_second_exclusive_writer_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO, exclusive=True) as first:
        first.append(line(1))
        open_files = len(os.listdir("/proc/self/fd"))
        with pytest.raises(LogWriteError) as caught:
            CallLog(path, FsyncPolicy.NO, exclusive=True)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"{path}: another writer holds the log's lock")
        assert caught.value.path == path
        assert len(os.listdir("/proc/self/fd")) == open_files  # the refused open left nothing open
        first.rewrite(first.size(), "000001")
        with pytest.raises(LogWriteError, match="another writer holds"):  # the rewritten file is locked too
            CallLog(path, FsyncPolicy.NO, exclusive=True)
        first.append(line(2))
    with CallLog(path, FsyncPolicy.NO, exclusive=True) as second:  # free once the first is closed
        second.append(line(3))
    assert [entry.seq for _, entry in LogReader(path)] == [2, 3]


def test_a_second_exclusive_writer_in_another_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from replay.config import FsyncPolicy
        from replay.errors import LogWriteError
        from replay.record.log import CallLog
        try:
            CallLog(Path(sys.argv[1]), FsyncPolicy.NO, exclusive=True)
        except LogWriteError as exc:
            print(exc)
            sys.exit(3)
        """
    )
    with CallLog(path, FsyncPolicy.NO, exclusive=True):
        other = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert other.returncode == 3, other.stderr
    assert (
        other.stdout
        == f"{path}: another writer holds the log's lock (another replay on this data dir?); stop it first\n"
    )


def test_an_exclusive_log_follows_its_own_rewrites(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    stop = threading.Event()
    appended: list[int] = []
    with CallLog(path, FsyncPolicy.NO, exclusive=True) as log:
        for number in range(200):
            log.append(line(number))
            appended.append(number)

        def appender() -> None:
            number = 200
            while not stop.is_set():
                log.append(line(number))
                appended.append(number)
                number += 1

        worker = threading.Thread(target=appender)
        worker.start()
        open_files = len(os.listdir("/proc/self/fd"))
        for round_ in range(1, 6):
            log.rewrite(log.size(), f"{round_:06d}")
            assert not lock_is_free(path)  # the file now at the path is locked by the log
        assert len(os.listdir("/proc/self/fd")) == open_files  # each replaced file (and its lock) was let go
        stop.set()
        worker.join()
        inode = path.stat().st_ino
        log.append(line(100_000))  # after the rewrites: in the new file, last
        assert path.stat().st_ino == inode
        assert log.size() == path.stat().st_size
    assert lock_is_free(path)
    reader = LogReader(path)
    pairs = list(reader)
    kept = [int(entry.time - 1_700_000_000.0) for _, entry in pairs]
    assert reader.checkpoint == "000005"
    assert kept[-1] == 100_000
    assert kept[:-1] == appended[appended.index(kept[0]) :]  # in order, none lost, none twice
    seqs = [entry.seq for _, entry in pairs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # numbers go on through every rewrite
    header = orjson.loads(path.read_bytes().split(b"\n", 1)[0])
    # the last number given out when the header was written: the entries appended while the last rewrite
    # copied the file's end may come after it in the file, so it is at least the one before the first kept
    assert header["checkpoint"] == "000005" and seqs[0] - 1 <= header["seq"] <= seqs[-1]


def test_an_exclusive_log_repairs_a_torn_tail_at_open(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    with CallLog(path, FsyncPolicy.NO) as log:
        log.append(line(1))
        log.append(line(2))
    good = path.read_bytes()
    path.write_bytes(good + line(3)[:20])  # a crash in the middle of the third
    with CallLog(path, FsyncPolicy.NO, exclusive=True) as log:
        assert path.read_bytes() == good
        log.append(line(4))
    assert len(torn_files(tmp_path)) == 1
    assert [entry.seq for _, entry in LogReader(path)] == [1, 2, 3]


def test_an_exclusive_log_that_cannot_open_a_corrupt_file_lets_its_lock_go(tmp_path: Path) -> None:
    path = tmp_path / LOG_NAME
    path.write_bytes(line(1) + b"not an entry\n")
    with pytest.raises(LogCorruptError):
        CallLog(path, FsyncPolicy.NO, exclusive=True)
    assert lock_is_free(path)


def test_an_exclusive_log_removes_a_failed_write_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import replay.record.log

    path = tmp_path / LOG_NAME
    real_write = os.write
    failures = {"truncate": False}

    def half_then_full(fd: int, data: bytes) -> int:  # a disk that fills up half-way through the entry
        if len(data) > 100:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    real_truncate = os.ftruncate

    def truncate(fd: int, length: int) -> None:
        if failures["truncate"]:
            raise OSError(errno.EIO, "Input/output error")
        real_truncate(fd, length)

    monkeypatch.setattr(os, "ftruncate", truncate)
    with CallLog(path, FsyncPolicy.NO, exclusive=True) as log:
        log.append(line(1))
        before = path.read_bytes()
        monkeypatch.setattr(replay.record.log, "_write", half_then_full)
        with pytest.raises(LogWriteError, match=rf"^{path}: cannot append an entry: No space left on device$"):
            log.append(line(2))
        assert path.read_bytes() == before  # no part of it left
        monkeypatch.setattr(replay.record.log, "_write", real_write)
        log.append(line(3))
        assert path.read_bytes().startswith(before) and log.size() == path.stat().st_size
        # a partial entry that cannot be removed: the log learns where the file ends, and never cuts
        # an acknowledged entry when a later failed one is removed
        failures["truncate"] = True
        monkeypatch.setattr(replay.record.log, "_write", half_then_full)
        with pytest.raises(LogWriteError):
            log.append(line(4))
        failures["truncate"] = False
        monkeypatch.setattr(replay.record.log, "_write", real_write)
        log.append(line(5))
        acknowledged = path.read_bytes()
        assert acknowledged.endswith(numbered(line(5), 3))  # 1 and 2 went to lines 1 and 3; 4 failed
        monkeypatch.setattr(replay.record.log, "_write", half_then_full)
        with pytest.raises(LogWriteError):
            log.append(line(6))
        assert path.read_bytes() == acknowledged
        monkeypatch.setattr(replay.record.log, "_write", real_write)
        assert log.size() == len(acknowledged)


@contextlib.contextmanager
def small_disk(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``mount``, unmounted at the end; the test is skipped where mounting is not allowed."""
    mount.mkdir(exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("exclusive", [True, False], ids=["exclusive", "shared"])
def test_a_full_disk_leaves_no_partial_entry(tmp_path: Path, exclusive: bool) -> None:
    with small_disk(tmp_path / "disk", "256k") as disk:
        path = disk / LOG_NAME
        big = [encode_entry(make_entry(number, body=b'"' + b"x" * 30_000 + b'"')) for number in range(20)]
        appended = 0
        with CallLog(path, FsyncPolicy.ALWAYS, exclusive=exclusive) as log:
            with pytest.raises(LogWriteError, match=rf"^{path}: cannot append an entry: No space left on device$"):
                for entry in big:
                    log.append(entry)
                    appended += 1
            assert 0 < appended < len(big)
            assert path.read_bytes().endswith(b"\n") and log.size() == path.stat().st_size
            log.append(line(99))  # a small one still fits, after the last whole entry
        reader = LogReader(path)
        seqs = [entry.seq for _, entry in reader]
        assert reader.torn_line is None and reader.position == reader.size
        assert seqs == list(range(1, appended + 2))


def test_an_exclusive_log_never_writes_after_partial_bytes_it_could_not_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import replay.record.log as log_module

    path = tmp_path / "recorded_api_calls.json"
    log = CallLog(path, FsyncPolicy.NO, exclusive=True)
    log.append(encode_entry(make_entry(1, "First")))
    real_write, real_truncate = log_module._write, os.ftruncate

    calls: list[int] = []

    def half_write(fd: int, data: bytes) -> int:  # a short write, then the disk is full
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(log_module, "_write", half_write)
    monkeypatch.setattr(os, "ftruncate", no_truncate)
    with pytest.raises(LogWriteError, match="No space left on device"):
        log.append(encode_entry(make_entry(2, "Second")))
    monkeypatch.setattr(log_module, "_write", real_write)
    with pytest.raises(LogWriteError, match="cannot remove a failed append's partial entry"):
        log.append(encode_entry(make_entry(3, "Third")))  # refused: it would follow the partial bytes
    monkeypatch.setattr(os, "ftruncate", real_truncate)
    log.append(encode_entry(make_entry(4, "Fourth")))
    log.close()
    assert [entry.operation for _, entry in LogReader(path)] == ["First", "Fourth"]
