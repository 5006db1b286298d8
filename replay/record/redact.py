"""What never reaches disk: signatures and session tokens.

The emulators ``replay`` wraps do not check signatures, but they route by the
SigV4 credential scope (access key id, date, region, service), so that is kept.
Removed before an entry is written:

* the ``Signature=`` part of a SigV4 ``Authorization`` header, the signature
  of a SigV2 one (``AWS AKID:signature``), and any other ``Authorization``
  scheme entirely (a bearer token or basic credentials are secrets);
* ``X-Amz-Security-Token`` and ``Proxy-Authorization`` headers;
* ``X-Amz-Signature``, ``X-Amz-Security-Token``, ``Signature`` and
  ``SecurityToken`` parameters of the query string and of form-encoded bodies
  (presigned URLs, SigV2 query authentication);
* the ``policy``, ``x-amz-signature``/``signature`` and ``x-amz-security-token``
  fields of a ``multipart/form-data`` body (S3 presigned POST uploads); the
  ``x-amz-credential``/``AWSAccessKeyId`` field is kept, as the credential
  scope of a header is;
* in answers (:func:`redact_answer`): the ``SessionToken`` and
  ``SecretAccessKey`` of credentials (STS ``AssumeRole``, IAM
  ``CreateAccessKey`` ...), replaced by ``redacted:sha256:<digest>``; a replay
  that regenerates the same secret still compares equal (:func:`conceals`);
* the per-chunk signatures of S3 streaming uploads
  (``x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``): the
  body is stored decoded, as a plain upload with ``UNSIGNED-PAYLOAD``, and
  trailing checksums become ordinary ``x-amz-checksum-*`` headers.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterable, Sequence
from typing import BinaryIO

from .bodies import BodyFile, BodyWriter
from .entry import Request, _lower

__all__ = ["REDACTED", "SENSITIVE_HEADERS", "conceals", "redact", "redact_answer", "safe_header"]

REDACTED = "redacted:sha256:"
"""What a secret in a recorded answer is replaced with, followed by the SHA-256 of the secret."""

_SECRET_HEADERS = frozenset({"x-amz-security-token", "proxy-authorization"})
_SECRET_PARAMS = frozenset({b"x-amz-signature", b"x-amz-security-token", b"signature", b"securitytoken"})
_SECRET_FORM_FIELDS = frozenset(
    {b"policy", b"x-amz-signature", b"signature", b"x-amz-security-token", b"securitytoken"}
)
_FORM_FIELD_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_SIGV4_SIGNATURE = re.compile(r",?\s*Signature=[^,\s]*", re.IGNORECASE)
_SIGNED_STREAMING = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
_STEP = 1 << 20
_CHUNK_HEADERS_DROPPED = frozenset(
    {"x-amz-content-sha256", "x-amz-decoded-content-length", "x-amz-trailer", "content-length", "content-encoding"}
)


def _strip_params(raw: bytes) -> bytes | None:
    """``raw`` (``a=1&b=2``) without secret parameters, or ``None`` if it had none."""
    parts = raw.split(b"&")
    kept = [part for part in parts if part.split(b"=", 1)[0].lower() not in _SECRET_PARAMS]
    return None if len(kept) == len(parts) else b"&".join(kept)


def _strip_form_fields(content_type: str, body: bytes) -> bytes | None:
    """A ``multipart/form-data`` ``body`` without its secret fields, or ``None`` if it had none."""
    found = _BOUNDARY.search(content_type)
    if found is None:
        return None
    delimiter = b"--" + found.group(1).encode("latin-1")
    pieces = body.split(delimiter)
    kept = [pieces[0]]
    for piece in pieces[1:-1]:
        head = piece[: piece.find(b"\r\n\r\n")]
        name = _FORM_FIELD_NAME.search(head)
        if name is None or name.group(1).lower() not in _SECRET_FORM_FIELDS:
            kept.append(piece)
    if len(kept) == len(pieces) - 1:
        return None
    kept.append(pieces[-1])
    return delimiter.join(kept)


SENSITIVE_HEADERS = frozenset({"authorization"} | _SECRET_HEADERS)
"""Lower-cased names of the headers :func:`safe_header` rewrites or drops."""


def safe_header(lower: str, value: str) -> str | None:
    """What may be kept of a header in :data:`SENSITIVE_HEADERS`: its new value, or ``None`` to drop it."""
    if lower == "authorization":
        return _authorization(value)
    return None


def _authorization(value: str) -> str | None:
    scheme = value.split(" ", 1)[0]
    if scheme == "AWS4-HMAC-SHA256":
        cut = value.rfind(", Signature=")
        if cut > 0 and "," not in value[cut + 2 :]:  # the usual layout: signature last
            return value[:cut]
        return _SIGV4_SIGNATURE.sub("", value)
    if scheme == "AWS" and ":" in value:
        return value.split(":", 1)[0] + ":"
    return None


def _dechunk_into(handle: BinaryIO, write: Callable[[bytes], object]) -> list[tuple[str, str]]:
    """Decode the ``aws-chunked`` stream ``handle``: its payload goes to ``write``; its trailing headers
    (chunk and trailer signatures left out) are returned.

    Raises ``ValueError`` when the framing is not what the protocol describes.
    """
    while True:
        line = handle.readline(4096)
        if not line.endswith(b"\r\n"):
            raise ValueError("chunk header not terminated by CRLF")
        size = int(line[:-2].split(b";", 1)[0], 16)
        if size == 0:
            break
        while size:
            piece = handle.read(min(size, _STEP))
            if not piece:
                raise ValueError("chunk cut short")
            write(piece)
            size -= len(piece)
        if handle.read(2) != b"\r\n":
            raise ValueError("chunk not terminated by CRLF")
    trailers = []
    for line in handle.read(1 << 16).split(b"\r\n"):
        if b":" in line:
            name, _, value = line.partition(b":")
            if not name.strip().lower().endswith(b"-signature"):
                trailers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
    return trailers


def _unsigned_headers(
    headers: Sequence[tuple[str, str]], size: int, trailers: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The headers of a signed ``aws-chunked`` upload rewritten for a plain unsigned one of ``size`` bytes."""
    encodings = [
        enc.strip()
        for name, value in headers
        if name.lower() == "content-encoding"
        for enc in value.split(",")
        if enc.strip() and enc.strip() != "aws-chunked"
    ]
    kept = [(n, v) for n, v in headers if n.lower() not in _CHUNK_HEADERS_DROPPED]
    kept += [("x-amz-content-sha256", "UNSIGNED-PAYLOAD"), ("Content-Length", str(size))]
    if encodings:
        kept.append(("Content-Encoding", ",".join(encodings)))
    return kept + trailers


def _streaming_body(
    headers: Sequence[tuple[str, str]], body: bytes | BodyFile
) -> tuple[list[tuple[str, str]], bytes | BodyFile]:
    """Rewrite a signed ``aws-chunked`` upload as a plain ``UNSIGNED-PAYLOAD`` one (a file stays a file)."""
    if isinstance(body, BodyFile):
        writer = BodyWriter(body.path.parent)
        try:
            with body.open() as handle:
                trailers = _dechunk_into(handle, writer.write)
        except (ValueError, OSError):
            writer.abort()
            return _unsigned_headers(headers, 0, []), b""  # framing we cannot read: keep no signed bytes
        decoded = writer.finish()
        return _unsigned_headers(headers, decoded.size, trailers), decoded
    payload = bytearray()
    try:
        trailers = _dechunk_into(io.BytesIO(body), payload.extend)
    except ValueError:
        payload, trailers = bytearray(), []
    return _unsigned_headers(headers, len(payload), trailers), bytes(payload)


class _PieceFilter:
    """Copy a stream of pieces separated by ``delimiter`` to ``write``, leaving out the pieces ``drop`` names.

    ``drop`` sees the first ``limit`` bytes of each piece (fewer if it is shorter); memory stays bounded
    by ``limit`` and the length of the chunks fed, whatever the size of a piece.
    """

    def __init__(self, delimiter: bytes, drop: Callable[[bytes], bool], limit: int, write: Callable[[bytes], object]):
        self.delimiter = delimiter
        self.drop = drop
        self.limit = limit
        self.write = write
        self.prefix = bytearray()
        self.deciding = True
        self.keep = True
        self.kept_any = False
        self.dropped = False

    def _decide(self) -> None:
        self.deciding = False
        self.keep = not self.drop(bytes(self.prefix))
        if self.keep:
            if self.kept_any:
                self.write(self.delimiter)
            self.write(bytes(self.prefix))
            self.kept_any = True
        else:
            self.dropped = True
        self.prefix.clear()

    def _feed(self, data: bytes) -> None:
        if self.deciding:
            self.prefix += data
            if len(self.prefix) >= self.limit:
                self._decide()
        elif self.keep and data:
            self.write(data)

    def _end_piece(self) -> None:
        if self.deciding:
            self._decide()
        self.deciding = True

    def run(self, chunks: Iterable[bytes]) -> bool:
        """Filter every chunk; whether a piece was left out."""
        delimiter, hold = self.delimiter, len(self.delimiter) - 1
        buffer = b""
        for chunk in chunks:
            buffer += chunk
            while (found := buffer.find(delimiter)) >= 0:
                self._feed(buffer[:found])
                self._end_piece()
                buffer = buffer[found + len(delimiter) :]
            if len(buffer) > hold:
                self._feed(buffer[: len(buffer) - hold])
                buffer = buffer[len(buffer) - hold :]
        self._feed(buffer)
        self._end_piece()
        return self.dropped


def _secret_param(prefix: bytes) -> bool:
    return prefix.split(b"=", 1)[0].lower() in _SECRET_PARAMS


def _secret_form_field(prefix: bytes) -> bool:
    end = prefix.find(b"\r\n\r\n")
    name = _FORM_FIELD_NAME.search(prefix if end < 0 else prefix[:end])
    return name is not None and name.group(1).lower() in _SECRET_FORM_FIELDS


def _filtered_file(body: BodyFile, delimiter: bytes, drop: Callable[[bytes], bool], limit: int) -> BodyFile | None:
    """``body`` without the pieces ``drop`` names, as a new file; ``None`` when it had none."""
    writer = BodyWriter(body.path.parent)
    try:
        dropped = _PieceFilter(delimiter, drop, limit, writer.write).run(body.chunks())
    except BaseException:
        writer.abort()
        raise
    if not dropped:
        writer.abort()
        return None
    return writer.finish()


def _redact_file(
    body: BodyFile, index: dict[str, str], headers: Sequence[tuple[str, str]]
) -> tuple[Sequence[tuple[str, str]], BodyFile | bytes] | None:
    """What :func:`redact` does to a body held in a file, streaming: new headers and body, or ``None``."""
    content_type = index.get("content-type", "")
    if index.get("x-amz-content-sha256") in _SIGNED_STREAMING:
        return _streaming_body(headers, body)
    if content_type.startswith("application/x-www-form-urlencoded"):
        stripped = _filtered_file(body, b"&", _secret_param, 256)
        return None if stripped is None else (headers, stripped)
    if content_type[:19].lower() == "multipart/form-data":
        found = _BOUNDARY.search(content_type)
        if found is None:
            return None
        delimiter = b"--" + found.group(1).encode("latin-1")
        stripped = _filtered_file(body, delimiter, _secret_form_field, 1 << 16)
        if stripped is None:
            return None
        size = str(stripped.size)
        return [(name, size if _lower(name) == "content-length" else value) for name, value in headers], stripped
    return None


def _may_hold_secrets(raw: str | bytes) -> bool:
    """Cheap pre-check before :func:`_strip_params`: could ``raw`` carry a secret parameter?"""
    lowered = raw.lower()
    if isinstance(lowered, bytes):
        return b"signature" in lowered or b"securitytoken" in lowered or b"security-token" in lowered
    return "signature" in lowered or "securitytoken" in lowered or "security-token" in lowered


def redact(request: Request) -> Request:
    """A copy of ``request`` that is safe to write to disk (``request`` itself if it already was)."""
    index = request.index
    changed = False
    headers: Sequence[tuple[str, str]] = request.headers
    auth = index.get("authorization") if not request.safe_headers else None
    if not request.safe_headers and not _SECRET_HEADERS.isdisjoint(index):
        headers = [(name, value) for name, value in headers if _lower(name) not in _SECRET_HEADERS]
        changed = True
    if auth is not None:
        safe = _authorization(auth)
        if safe != auth:
            changed = True
            # the index holds the same str object as the header pair it came from
            if safe is None:
                headers = [(n, v) for n, v in headers if not (v is auth and _lower(n) == "authorization")]
            else:
                headers = [(n, safe if v is auth and _lower(n) == "authorization" else v) for n, v in headers]

    query = request.query
    if query and _may_hold_secrets(query):
        stripped = _strip_params(query.encode("latin-1"))
        if stripped is not None:
            query, changed = stripped.decode("latin-1"), True

    body: bytes | BodyFile
    if request.file is not None:
        body = request.file
        redacted = _redact_file(request.file, index, headers)
        if redacted is not None:
            (headers, body), changed = redacted, True
    else:
        body = request.body
        if (
            body
            and index.get("content-type", "").startswith("application/x-www-form-urlencoded")
            and _may_hold_secrets(body)
        ):
            stripped = _strip_params(body)
            if stripped is not None:
                body, changed = stripped, True
        content_type = index.get("content-type", "")
        if body and content_type[:19].lower() == "multipart/form-data":
            stripped = _strip_form_fields(content_type, body)
            if stripped is not None:
                body, changed = stripped, True
                size = str(len(body))
                headers = [(name, size if _lower(name) == "content-length" else value) for name, value in headers]
        if index.get("x-amz-content-sha256") in _SIGNED_STREAMING:
            headers, body = _streaming_body(headers, body)
            changed = True

    if not changed:
        return request
    return Request(request.method, request.path, query, headers, body, safe_headers=True)


_SECRET_JSON = re.compile(rb'("(?:SessionToken|SecretAccessKey)"\s*:\s*")((?:[^"\\]|\\.)*)(")')
_SECRET_XML = re.compile(rb"(<(SessionToken|SecretAccessKey)>)([^<]*)(</\2>)")


def _digest(secret: bytes) -> bytes:
    return REDACTED.encode() + hashlib.sha256(secret).hexdigest().encode()


def redact_answer(body: bytes) -> bytes:
    """``body`` (an answer) with the secrets of credentials replaced by their digests (``body`` itself if none)."""
    if b"SessionToken" not in body and b"SecretAccessKey" not in body:
        return body
    body = _SECRET_JSON.sub(lambda found: found.group(1) + _digest(found.group(2)) + found.group(3), body)
    return _SECRET_XML.sub(lambda found: found.group(1) + _digest(found.group(3)) + found.group(4), body)


def conceals(recorded: object, replayed: object) -> bool:
    """Is ``recorded`` the redacted form of ``replayed`` (the same secret)?"""
    if not isinstance(recorded, str) or not isinstance(replayed, str) or not recorded.startswith(REDACTED):
        return False
    return recorded == _digest(replayed.encode("utf-8")).decode()
