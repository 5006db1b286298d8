"""The machinery of the transparency scenarios: contexts, the scenario registry, normalising and comparing.

A scenario is a subclass of :class:`Scenario` with a ``name``, a ``service``, a ``run`` that drives one
server through boto3 and returns *observations* (what the client got back, keyed by step), and a read-only
``fingerprint`` that reads back everything the scenario created.  Subclasses register themselves.

Two independent servers legitimately differ in what they generate: ids, UUIDs, tokens, receipt handles,
timestamps, request ids and the port in URLs.  :class:`Normaliser` replaces exactly those in observations,
consistently (one value, one placeholder, within one run), so that references between answers are still
compared: a message id that a later answer repeats must be repeated in both runs.  Fingerprints taken before
and after a restart are compared by :func:`canon`, which leaves everything but request ids and ports as is.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import re
import threading
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "222222222222"
REGION = "us-east-1"

Observations = dict[str, Any]


class ClientFactory(Protocol):
    """What ``tests/e2e/conftest.py``'s ``AwsClients`` is: boto3 clients for an endpoint."""

    def __call__(self, service: str, server: Any, **config: Any) -> Any: ...


class ClientPool:
    """Caches one boto3 client per (service, endpoint, options): making one costs up to 0.2 s.

    Thread-safe: scenarios run against several servers at once, each server's clients used by one thread.
    """

    def __init__(self, factory: ClientFactory) -> None:
        self.factory = factory
        self.cache: dict[tuple[str, str, str], Any] = {}
        self.extra: list[Any] = []
        self.lock = threading.Lock()

    def get(self, service: str, endpoint: str, **config: Any) -> Any:
        key = (service, endpoint, repr(sorted(config.items())))
        with self.lock:
            if key not in self.cache:
                self.cache[key] = self.factory(service, endpoint, **config)
            return self.cache[key]

    def with_credentials(self, service: str, endpoint: str, credentials: Mapping[str, str]) -> Any:
        """A client signing with ``credentials`` (an STS ``Credentials`` answer), same options as the factory's."""
        client = boto3.session.Session().client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            config=BotoConfig(
                s3={"addressing_style": "path"},
                retries={"total_max_attempts": 1, "mode": "standard"},  # a retried mutation would be recorded twice
                connect_timeout=5,
                read_timeout=60,
            ),
        )
        with self.lock:
            self.extra.append(client)
        return client

    def close(self) -> None:
        for client in self.extra:
            client.close()
        self.extra.clear()
        self.cache.clear()


class Context:
    """One scenario on one server: its clients, its endpoint, and what its run kept for its fingerprint."""

    def __init__(self, pool: ClientPool, endpoint: str, kept: dict[str, Any] | None = None) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.kept: dict[str, Any] = {} if kept is None else kept

    def client(self, service: str, **config: Any) -> Any:
        """A boto3 client of ``service`` for this server (``config``: extra botocore options)."""
        return self.pool.get(service, self.endpoint, **config)

    def client_as(self, service: str, credentials: Mapping[str, str]) -> Any:
        """A boto3 client of ``service`` for this server that signs with other credentials."""
        return self.pool.with_credentials(service, self.endpoint, credentials)

    def moved(self, endpoint: str) -> Context:
        """The same scenario's view of another server on the same data (after a restart)."""
        return Context(self.pool, endpoint, self.kept)


class Scenario:
    """One realistic use of a service; subclasses with a ``name`` register themselves in :data:`SCENARIOS`.

    ``xfail_answers`` / ``xfail_restart`` / ``xfail_verify``: the reason a known replay bug makes the
    comparison of answers (plain moto against ``replay serve``), of fingerprints across a restart, or the
    replay of the scenario's log lines by ``replay verify`` fail; ``None`` when it passes.
    """

    name: ClassVar[str] = ""
    service: ClassVar[str] = ""
    xfail_answers: ClassVar[str | None] = None
    xfail_restart: ClassVar[str | None] = None
    xfail_verify: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            assert cls.name not in SCENARIOS, f"two scenarios are named {cls.name}"
            assert cls.service, f"{cls.name} names no service"
            assert cls.__doc__, f"{cls.name} has no docstring saying what it checks"
            SCENARIOS[cls.name] = cls()

    def run(self, ctx: Context) -> Observations:
        """Drive the server; return what the client got back, step by step."""
        raise NotImplementedError

    def fingerprint(self, ctx: Context) -> Any:
        """Read back (reads only) everything :meth:`run` created."""
        raise NotImplementedError


SCENARIOS: dict[str, Scenario] = {}


# helpers for scenarios


def error_of(call: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """Call a client method that must fail; its error code, message and HTTP status."""
    try:
        answer = call(**kwargs)
    except ClientError as exc:
        return {
            "Code": exc.response["Error"].get("Code"),
            "Message": exc.response["Error"].get("Message"),
            "Status": exc.response["ResponseMetadata"].get("HTTPStatusCode"),
        }
    raise AssertionError(f"{call.__name__}({kwargs}) succeeded, an error was expected: {answer}")


def answer_or_error(call: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """Call a client method that may fail: its answer, or its error as :func:`error_of` gives it."""
    try:
        answer: dict[str, Any] = call(**kwargs)
    except ClientError as exc:
        return {"error": error_of(_raise, exc=exc)}
    return answer


def _raise(exc: Exception) -> None:
    raise exc


def read_body(answer: dict[str, Any]) -> dict[str, Any]:
    """An S3 ``GetObject`` answer with its streaming ``Body`` read into bytes."""
    return {**answer, "Body": answer["Body"].read()}


def lambda_zip(source: str, name: str = "handler.py") -> bytes:
    """A deployment package holding one file, byte for byte the same every time (fixed file date)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, source)
    return buffer.getvalue()


# normalising observations

_PORT = re.compile(r"\b(127\.0\.0\.1|localhost):\d{2,5}\b")
_ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?(?![\d:])"
    r"|\b\d{8}T\d{6}Z\b"  # the compact form (X-Amz-Date)
)
# keys whose numeric (or numeric string) values are points in time
_TIME_KEY = re.compile(r"(?i)(time|date|timestamp|timestamps)$")
# keys whose whole value a server generates at random (and a replay regenerates)
GENERATED_KEYS = frozenset(
    {
        "ReceiptHandle",
        "MessageId",
        "SequenceNumber",
        "UploadId",
        "VersionId",
        "GrantToken",
        "AccessKeyId",
        "UserId",
        "GroupId",
        "InstanceProfileId",
        "GrantId",
        "RoleId",
        "PolicyId",
        "SecretAccessKey",
        "SessionToken",
        "SigningCertURL",
        "Signature",
        "PrivateIpAddress",
        "PrivateDnsName",
        "PublicIp",
        "PublicIpAddress",
        "PublicDnsName",
        "MacAddress",
    }
)
_ID_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("uuid", re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")),
    # EC2-style ids: vpc-0a1b..., i-..., sg-..., subnet-..., eipalloc-... (8 or 17 hex digits)
    ("ec2", re.compile(r"\b(?:[a-z]+-)+(?:[0-9a-f]{17}|[0-9a-f]{8})\b")),
    # IAM unique ids and access key ids
    ("iam", re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|ANPA|AGPA|AIPA|APKA)[A-Z0-9]{12,20}\b")),
    # the random suffix of a Secrets Manager ARN (the group "id": only that part is replaced)
    ("secret", re.compile(r":secret:[A-Za-z0-9/_+=.@-]+-(?P<id>[A-Za-z0-9]{6})\b")),
    # a DynamoDB backup's name in its ARN: creation time in ms and a random part
    ("backup", re.compile(r"/backup/(?P<id>\d{14}-[0-9a-f]{8})\b")),
    # IPv4 addresses that are not a CIDR block's base
    ("ip", re.compile(r"\b(?!127\.0\.0\.1\b)(?:\d{1,3}\.){3}\d{1,3}\b(?!/)")),
]


class Normaliser:
    """Replaces what two independent servers legitimately generate differently, consistently within one run.

    * ``ResponseMetadata`` (request ids, HTTP headers) is dropped;
    * datetimes, ISO timestamps in strings, and epoch numbers under keys ending in Time/Date/Timestamp
      become ``<time>``;
    * the port of ``127.0.0.1:PORT`` / ``localhost:PORT`` becomes ``<port>``;
    * generated values (whole values under :data:`GENERATED_KEYS`; UUIDs, EC2 ids, IAM ids, secret ARN
      suffixes and IPv4 addresses anywhere in a string) become ``<kind#n>``: the n-th distinct such value of
      the run, so the same value gets the same placeholder everywhere and two runs compare equal only if
      they refer to their values in the same places.
    """

    def __init__(self) -> None:
        self.placeholders: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, value: Any) -> Any:
        self._collect(value, None)
        return self._rewrite(value, None)

    def _placeholder(self, kind: str, raw: str) -> str:
        if raw not in self.placeholders:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.placeholders[raw] = f"<{kind}#{self.counts[kind]}>"
        return self.placeholders[raw]

    def _collect(self, value: Any, key: str | None) -> None:
        """First pass: number the whole values under generated keys in the order they appear.

        Values under 6 characters are counters or literals (a Kinesis sequence number, ``null``), not random."""
        if isinstance(value, dict):
            for k, v in value.items():
                if k != "ResponseMetadata":
                    self._collect(v, k)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self._collect(v, key)
        elif (
            isinstance(value, str)
            and key in GENERATED_KEYS
            and len(value) >= 6
            and value != "null"
            and not _is_time(value)
        ):
            self._placeholder(key, value)

    def _rewrite(self, value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {
                self._string(k) if isinstance(k, str) else k: self._rewrite(v, k)
                for k, v in value.items()
                if k != "ResponseMetadata"
            }
        if isinstance(value, (list, tuple)):
            return [self._rewrite(v, key) for v in value]
        if isinstance(value, StreamingBody):
            raise TypeError(f"an unread streaming body under {key!r}: read it in the scenario (read_body)")
        if isinstance(value, (datetime.datetime, datetime.date)):
            return "<time>"
        if isinstance(value, bytes):
            return value if len(value) <= 64 else f"<{len(value)} bytes sha256={hashlib.sha256(value).hexdigest()}>"
        if key is not None and _TIME_KEY.search(key) and _is_epoch(value):
            return "<time>"
        if isinstance(value, str):
            return self._string(value)
        return value

    def _string(self, text: str) -> str:
        if text in self.placeholders:
            return self.placeholders[text]
        text = _PORT.sub(r"\1:<port>", text)
        text = _ISO_TIME.sub("<time>", text)
        for raw, placeholder in self.placeholders.items():
            if len(raw) >= 8 and raw in text:
                text = text.replace(raw, placeholder)
        for kind, pattern in _ID_PATTERNS:
            text = pattern.sub(lambda match, kind=kind: self._replace(kind, match), text)  # type: ignore[misc]
        return text

    def _replace(self, kind: str, match: re.Match[str]) -> str:
        """The match with its generated part (the group ``id`` if the pattern has one) replaced."""
        if "id" not in match.re.groupindex:
            return self._placeholder(kind, match.group(0))
        whole, start, end = match.group(0), match.start("id") - match.start(), match.end("id") - match.start()
        return whole[:start] + self._placeholder(kind, match.group("id")) + whole[end:]


def _is_epoch(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value >= 1e8
    if isinstance(value, str):
        try:
            return float(value) >= 1e8
        except ValueError:
            return False
    return False


def _is_time(value: str) -> bool:
    return _ISO_TIME.fullmatch(value) is not None


def normalise(observations: Any) -> Any:
    """``observations`` with what legitimately differs between two servers replaced (:class:`Normaliser`)."""
    return Normaliser()(observations)


# fingerprints


def canon(value: Any) -> Any:
    """A fingerprint as compared across a restart: ResponseMetadata dropped, ports in URLs replaced, nothing else.

    Datetimes become ISO strings and long byte strings their digest (both exact); a streaming body is an error.
    """
    if isinstance(value, dict):
        return {canon(k): canon(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    if isinstance(value, StreamingBody):
        raise TypeError("an unread streaming body in a fingerprint: read it (read_body)")
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value if len(value) <= 64 else f"<{len(value)} bytes sha256={hashlib.sha256(value).hexdigest()}>"
    if isinstance(value, str):
        return _PORT.sub(r"\1:<port>", value)
    return value


# comparing


def differences(left: Any, right: Any, path: str = "$", limit: int = 25) -> list[str]:
    """Where two JSON-like values differ, as ``path: left != right`` lines (at most ``limit``)."""
    found: list[str] = []
    _diff(left, right, path, found, limit)
    return found


def _diff(left: Any, right: Any, path: str, found: list[str], limit: int) -> None:
    if len(found) >= limit:
        return
    if isinstance(left, dict) and isinstance(right, dict):
        for key in list(left) + [k for k in right if k not in left]:
            if key not in right:
                found.append(f"{path}.{key}: only on the left: {_short(left[key])}")
            elif key not in left:
                found.append(f"{path}.{key}: only on the right: {_short(right[key])}")
            else:
                _diff(left[key], right[key], f"{path}.{key}", found, limit)
        return
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            found.append(f"{path}: {len(left)} items != {len(right)} items: {_short(left)} != {_short(right)}")
            return
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            _diff(a, b, f"{path}[{index}]", found, limit)
        return
    if left != right or type(left) is not type(right):
        found.append(f"{path}: {_short(left)} != {_short(right)}")


def _short(value: Any, width: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width] + "..."
