"""Reading a request out of a WSGI environ: strict framing, bounded bodies, read once per request."""

from __future__ import annotations

import io

import pytest

from replay.errors import RequestError
from replay.record.wsgi import MAX_BODY_KEY, content_length, request_from_environ


def environ(body: bytes = b"", **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "REQUEST_METHOD": "PUT",
        "PATH_INFO": "/bucket/key",
        "QUERY_STRING": "",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
    }
    base.update(extra)
    return base


@pytest.mark.parametrize("raw", ["-1", "+5", "0_5", "1e3", "5.0", "0x5", " 5", "\uff15"])
def test_a_length_that_is_not_a_plain_number_of_bytes_is_refused(raw: str) -> None:
    with pytest.raises(RequestError) as refused:
        content_length({"CONTENT_LENGTH": raw})
    assert refused.value.status == "400 Bad Request"


def test_lengths_read() -> None:
    assert content_length({}) is None and content_length({"CONTENT_LENGTH": ""}) is None
    assert content_length({"CONTENT_LENGTH": "12"}) == 12


def test_the_body_is_read_once_and_put_back_for_the_app() -> None:
    env = environ(b"hello")
    request = request_from_environ(env)  # type: ignore[arg-type]
    assert request.body == b"hello"
    assert env["wsgi.input"].read() == b"hello"  # type: ignore[attr-defined]
    assert request_from_environ(env) is request  # type: ignore[arg-type]


def test_a_body_larger_than_the_limit_is_refused_without_reading_it_all() -> None:
    class Endless(io.RawIOBase):
        def __init__(self) -> None:
            self.given = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            buffer[:] = b"x" * len(buffer)
            self.given += len(buffer)
            return len(buffer)

    endless = Endless()
    chunked = environ(**{"wsgi.input": endless, "wsgi.input_terminated": True, MAX_BODY_KEY: 3 * 1024**2})
    del chunked["CONTENT_LENGTH"]
    with pytest.raises(RequestError) as refused:
        request_from_environ(chunked)  # type: ignore[arg-type]
    assert refused.value.status == "413 Content Too Large"
    assert endless.given <= 5 * 1024**2  # stopped just past the limit, in bounded chunks
    announced = environ(b"", **{"CONTENT_LENGTH": str(10**15), MAX_BODY_KEY: 1024})
    with pytest.raises(RequestError, match="REPLAY_MAX_BODY_SIZE"):
        request_from_environ(announced)  # type: ignore[arg-type]


def test_a_chunked_body_that_cannot_be_decoded_is_a_bad_request() -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            raise OSError("Invalid chunk header")

    broken = environ(**{"wsgi.input": Broken(), "wsgi.input_terminated": True})
    with pytest.raises(RequestError) as refused:
        request_from_environ(broken)  # type: ignore[arg-type]
    assert refused.value.status == "400 Bad Request" and "Invalid chunk header" in str(refused.value)
