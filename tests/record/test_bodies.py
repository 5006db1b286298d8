"""Large bodies: spooled to disk while they arrive, kept beside the log by SHA-256, checked when read back."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from replay.errors import LogCorruptError
from replay.record.bodies import (
    SPOOL_THRESHOLD,
    BodyFile,
    BodyStore,
    BodyWriter,
    bodies_beside,
    is_digest,
    keep_in,
    named_in,
    spool,
)
from replay.record.entry import Request, decode_entry, encode_call
from replay.record.log import CallLog, FsyncPolicy
from replay.record.reader import LogReader


class TooLarge(Exception):
    pass


def _body_file(directory: Path, data: bytes) -> BodyFile:
    writer = BodyWriter(directory)
    writer.write(data)
    return writer.finish()


def test_small_bodies_stay_in_memory_and_large_ones_go_to_a_file(tmp_path: Path) -> None:
    small = b"x" * SPOOL_THRESHOLD
    assert spool(io.BytesIO(small).read, len(small), 1 << 30, tmp_path, TooLarge) == small
    assert list(tmp_path.iterdir()) == []
    large = os.urandom(SPOOL_THRESHOLD + 1)
    spooled = spool(io.BytesIO(large).read, None, 1 << 30, tmp_path, TooLarge)
    assert isinstance(spooled, BodyFile)
    assert spooled.read() == large and spooled.size == len(large)
    assert spooled.digest == hashlib.sha256(large).hexdigest()
    assert spooled.path.parent == tmp_path and spooled.path.stat().st_mode & 0o777 == 0o600
    spooled.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_spooled_temporary_goes_when_it_is_no_longer_used(tmp_path: Path) -> None:
    spooled = spool(io.BytesIO(b"y" * (SPOOL_THRESHOLD * 2)).read, None, 1 << 30, tmp_path, TooLarge)
    assert isinstance(spooled, BodyFile)
    del spooled
    assert list(tmp_path.iterdir()) == []


def test_a_body_over_the_limit_is_refused_before_it_is_kept(tmp_path: Path) -> None:
    data = b"z" * (3 * SPOOL_THRESHOLD)
    with pytest.raises(TooLarge):
        spool(io.BytesIO(data).read, None, 2 * SPOOL_THRESHOLD, tmp_path, TooLarge)
    assert list(tmp_path.iterdir()) == []  # the partial file is gone


class _Endless(io.RawIOBase):
    """``size`` bytes of a repeating pattern, produced on demand (never all in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = bytes(range(256)) * 4096

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = min(size if size >= 0 else len(self.block), len(self.block), self.left)
        self.left -= size
        return self.block[:size]


def test_spooling_holds_at_most_a_few_mebibytes_whatever_the_size(tmp_path: Path) -> None:
    size = 256 << 20
    tracemalloc.start()
    try:
        spooled = spool(_Endless(size).read, None, 1 << 40, tmp_path, TooLarge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(spooled, BodyFile) and spooled.size == size
    assert peak < 8 << 20, f"spooling {size:,} bytes held {peak:,} bytes in memory"
    spooled.discard()


def test_keep_in_makes_a_durable_file_named_by_its_digest_and_shares_identical_bodies(tmp_path: Path) -> None:
    data = os.urandom(4096)
    first = _body_file(tmp_path / "incoming", data)
    store = tmp_path / "bodies"
    kept = keep_in(store, first)
    assert kept.stored and kept.path == store / hashlib.sha256(data).hexdigest()
    assert kept.read() == data and kept.problem() is None
    again = keep_in(store, _body_file(tmp_path / "incoming", data))
    assert again.path == kept.path
    assert [p.name for p in store.iterdir()] == [kept.digest]


def test_a_torn_kept_file_is_made_again(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    body = _body_file(tmp_path, data)
    store = tmp_path / "bodies"
    store.mkdir()
    (store / body.digest).write_bytes(data[:100])  # a crash while it was copied
    assert keep_in(store, body).read() == data


def test_problem_names_a_missing_resized_or_altered_body(tmp_path: Path) -> None:
    data = os.urandom(5000)
    kept = keep_in(tmp_path / "bodies", _body_file(tmp_path, data))
    assert kept.problem() is None
    altered = bytearray(data)
    altered[10] ^= 1
    kept.path.write_bytes(bytes(altered))
    problem = kept.problem()
    assert problem is not None and "SHA-256" in problem and str(kept.path) in problem
    kept.path.write_bytes(data[:-1])
    assert "4,999 bytes, not 5,000" in (kept.problem() or "")
    kept.path.unlink()
    assert "missing" in (kept.problem() or "")


def test_prune_spares_named_bodies_and_those_kept_since_the_mark(tmp_path: Path) -> None:
    store = BodyStore(tmp_path / "bodies")
    old = store.keep(_body_file(tmp_path, b"old" * 1000))
    named = store.keep(_body_file(tmp_path, b"named" * 1000))
    since = store.mark()
    recent = store.keep(_body_file(tmp_path, b"recent" * 1000))
    (store.directory / "not-a-digest").write_bytes(b"left alone")
    assert store.prune({named.digest}, since) == 1
    assert not old.path.exists() and named.path.exists() and recent.path.exists()
    assert (store.directory / "not-a-digest").exists()
    assert store.prune(set(), store.mark()) == 2  # nothing is recent after a new mark


def test_an_entry_names_its_stored_body_and_reads_back_as_the_same_bytes(tmp_path: Path) -> None:
    data = os.urandom(SPOOL_THRESHOLD + 10)
    kept = keep_in(tmp_path / "bodies", _body_file(tmp_path, data))
    request = Request("PUT", "/b/k", "", [("Content-Length", str(len(data)))], kept)
    line = encode_call(1.0, "s3", "PutObject", request, 200, [], b"")
    assert len(line) < 1000
    document = orjson.loads(line)["request"]
    assert document["encoding"] == "file" and document["body"] == kept.digest and document["size"] == len(data)
    entry = decode_entry(line, tmp_path / "bodies")
    assert entry.request.file is not None and entry.request.body == data and entry.request.size == len(data)
    assert entry.request.head(5) == data[:5]
    assert named_in(_write(tmp_path / "log.json", line)) == {kept.digest}


def _write(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def test_an_unstored_file_body_is_inlined(tmp_path: Path) -> None:
    data = b"\xff" * (SPOOL_THRESHOLD + 1)
    request = Request("PUT", "/b/k", "", [], _body_file(tmp_path, data))
    document = orjson.loads(encode_call(1.0, "s3", "PutObject", request, 200, [], b""))["request"]
    assert document["encoding"] == "base64"


@pytest.mark.parametrize(
    "tamper",
    [
        {"body": "../../etc/passwd"},
        {"body": "A" * 64},
        {"size": -1},
        {"size": "12"},
        {"size": None},
    ],
)
def test_a_file_entry_with_a_bad_name_or_size_is_refused(tmp_path: Path, tamper: dict[str, object]) -> None:
    document = {"method": "PUT", "path": "/b/k", "body": "a" * 64, "encoding": "file", "size": 3, **tamper}
    line = orjson.dumps({"v": 1, "time": 1.0, "service": "s3", "operation": "PutObject", "request": document,
                         "response": {"status": 200}}) + b"\n"  # fmt: skip
    with pytest.raises(ValueError):
        decode_entry(line)


def test_a_log_whose_body_is_missing_or_altered_is_refused_naming_the_line(tmp_path: Path) -> None:
    data = os.urandom(SPOOL_THRESHOLD + 1)
    log_path = tmp_path / "recorded_api_calls.json"
    with CallLog(log_path, FsyncPolicy.ALWAYS) as log:
        kept = log.keep_body(_body_file(tmp_path, data))
        request = Request("PUT", "/b/k", "", [], kept)
        log.append(encode_call(1.0, "s3", "PutObject", request, 200, [], b""))
    assert kept.path.parent == bodies_beside(log_path)
    [(number, entry)] = list(LogReader(log_path))
    assert number == 1 and entry.request.body == data
    kept.path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(LogCorruptError, match=r"recorded_api_calls.json:1: .*SHA-256"):
        list(LogReader(log_path))
    kept.path.unlink()
    with pytest.raises(LogCorruptError, match="missing"):
        list(LogReader(log_path))


def test_the_incoming_folder_is_emptied_of_what_an_earlier_process_left(tmp_path: Path) -> None:
    incoming = tmp_path / "bodies" / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / "body-left").write_bytes(b"half")
    os.utime(incoming / "body-left", (0, 0))
    with CallLog(tmp_path / "recorded_api_calls.json"):
        pass
    assert list(incoming.iterdir()) == []


def test_is_digest() -> None:
    assert is_digest("0" * 64) and not is_digest("0" * 63) and not is_digest("G" * 64)
    assert not is_digest("../" + "0" * 61)


def _chunkings(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    pos = 0
    for size in sizes:
        if pos >= len(data):
            break
        yield data[pos : pos + size]
        pos += size
    if pos < len(data):
        yield data[pos:]


_PARAM = st.sampled_from([b"a", b"Action", b"Signature", b"X-Amz-Signature", b"SecurityToken", b"b", b""])


@given(
    pairs=st.lists(st.tuples(_PARAM, st.binary(max_size=30).map(lambda b: b.replace(b"&", b""))), max_size=8),
    sizes=st.lists(st.integers(min_value=1, max_value=7), max_size=40),
)
def test_streaming_param_filter_agrees_with_the_whole_body_one(
    pairs: list[tuple[bytes, bytes]], sizes: list[int]
) -> None:
    from replay.record.redact import _PieceFilter, _secret_param, _strip_params

    body = b"&".join(name + b"=" + value for name, value in pairs)
    out = bytearray()
    dropped = _PieceFilter(b"&", _secret_param, 256, out.extend).run(_chunkings(body, sizes))
    whole = _strip_params(body)
    assert dropped == (whole is not None)
    assert bytes(out) == (whole if whole is not None else body)


_FIELD = st.sampled_from(["key", "policy", "x-amz-signature", "x-amz-credential", "file", "x-amz-security-token"])


@given(
    fields=st.lists(st.tuples(_FIELD, st.binary(max_size=40).map(lambda b: b.replace(b"-", b"_"))), max_size=6),
    sizes=st.lists(st.integers(min_value=1, max_value=11), max_size=60),
)
def test_streaming_form_filter_agrees_with_the_whole_body_one(
    fields: list[tuple[str, bytes]], sizes: list[int]
) -> None:
    from replay.record.redact import _PieceFilter, _secret_form_field, _strip_form_fields

    boundary = "b0und"
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
            for name, value in fields
        )
        + f"--{boundary}--\r\n".encode()
    )
    out = bytearray()
    delimiter = f"--{boundary}".encode()
    _PieceFilter(delimiter, _secret_form_field, 1 << 16, out.extend).run(_chunkings(body, sizes))
    whole = _strip_form_fields(f"multipart/form-data; boundary={boundary}", body)
    assert bytes(out) == (whole if whole is not None else body)


def test_redact_streams_a_signed_chunked_upload_held_in_a_file(tmp_path: Path) -> None:
    from replay.record.redact import redact

    payload = os.urandom(3 * SPOOL_THRESHOLD)
    signature = "f" * 64
    pieces = [payload[i : i + 65536] for i in range(0, len(payload), 65536)]
    framed = b"".join(f"{len(p):x};chunk-signature={signature}\r\n".encode() + p + b"\r\n" for p in pieces)
    framed += f"0;chunk-signature={signature}\r\n\r\n".encode()
    headers = [
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", str(len(payload))),
    ]
    spooled = _body_file(tmp_path, framed)
    safe = redact(Request("PUT", "/b/k", "", headers, spooled))
    assert safe.file is not None and safe.file.path != spooled.path
    assert safe.body == payload and safe.header("Content-Length") == str(len(payload))
    assert safe.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    assert signature.encode() not in safe.body


def test_redact_strips_secrets_from_large_form_bodies_held_in_files(tmp_path: Path) -> None:
    from replay.record.redact import redact

    message = b"m" * (2 * SPOOL_THRESHOLD)
    body = b"Action=SendMessage&MessageBody=" + message + b"&Signature=c2VjcmV0&SignatureMethod=HmacSHA256"
    headers = [("Content-Type", "application/x-www-form-urlencoded")]
    safe = redact(Request("POST", "/", "", headers, _body_file(tmp_path, body)))
    assert safe.file is not None
    assert safe.body == b"Action=SendMessage&MessageBody=" + message + b"&SignatureMethod=HmacSHA256"
    clean = _body_file(tmp_path, b"Action=SendMessage&MessageBody=" + message)
    assert redact(Request("POST", "/", "", headers, clean)).file is clean  # nothing to strip: the same file
