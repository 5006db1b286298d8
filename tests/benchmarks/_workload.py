"""Realistic moto requests, built as :class:`replay.record.entry.Request` objects the way boto3 sends them.

The mix is chosen so that the cost of a call does not drift as the benchmark
runs: DynamoDB ``PutItem`` over a fixed set of keys, S3 ``PutObject``
overwriting a fixed set of keys, and SQS ``SendMessage`` with the queue purged
after every batch (moto's ``SendMessage`` recomputes queue attributes over every
message, so its cost grows linearly with queue depth: ~18 us per queued message).
``PurgeQueue`` is rate-limited to once a minute by moto unless
``MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR=false``, which
:func:`prepare_environment` sets.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import zlib

import orjson

from replay.record.entry import Request

__all__ = ["Workload", "moto_reset", "prepare_environment"]

HOST = "localhost:4566"
ACCOUNT = "123456789012"
REGION = "us-east-1"
AMZ_DATE = "20240101T000000Z"
USER_AGENT = (
    "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.1 os/linux#6.1 md/arch#x86_64 lang/python#3.11.7 "
    "md/pyimpl#CPython cfg/retry-mode#standard Botocore/1.34.0"
)
JSON_1_0 = "application/x-amz-json-1.0"

TABLE = "bench-table"
BUCKET = "bench-bucket"
QUEUE = "bench-queue"
QUEUE_URL = f"http://{HOST}/{ACCOUNT}/{QUEUE}"


def prepare_environment() -> None:
    """Let ``PurgeQueue`` run more than once a minute (it keeps the SQS queue depth, and so its cost, fixed)."""
    os.environ["MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR"] = "false"


def _signature(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _authorization(service: str, signed: str, seed: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{AMZ_DATE[:8]}/{REGION}/{service}/aws4_request, "
        f"SignedHeaders={signed}, Signature={_signature(seed)}"
    )


def _common(seed: str) -> list[tuple[str, str]]:
    return [
        ("Host", HOST),
        ("Accept-Encoding", "identity"),
        ("User-Agent", USER_AGENT),
        ("X-Amz-Date", AMZ_DATE),
        ("amz-sdk-invocation-id", _signature("id" + seed)[:32]),
        ("amz-sdk-request", "attempt=1; max=3"),
    ]


def json_request(service: str, target: str, payload: object, query_mode: bool = False) -> Request:
    """A JSON-protocol ``POST /`` (DynamoDB, SQS) as botocore builds it."""
    body = orjson.dumps(payload)
    headers = [("X-Amz-Target", target), ("Content-Type", JSON_1_0)]
    signed = "content-type;host;x-amz-date;x-amz-target"
    if query_mode:
        headers.append(("x-amzn-query-mode", "true"))
        signed += ";x-amzn-query-mode"
    seed = f"{target}:{body!r}"
    headers += _common(seed)
    headers += [("Authorization", _authorization(service, signed, seed)), ("Content-Length", str(len(body)))]
    return Request("POST", "/", "", headers, body)


def s3_request(method: str, path: str, body: bytes = b"") -> Request:
    """A path-style S3 REST request as botocore builds it (payload hash and CRC32 checksum included)."""
    headers = _common(f"{method}:{path}:{len(body)}")
    signed = "host;x-amz-content-sha256;x-amz-date"
    if body:
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        headers += [("x-amz-checksum-crc32", crc), ("x-amz-sdk-checksum-algorithm", "CRC32")]
        signed = "host;x-amz-checksum-crc32;x-amz-content-sha256;x-amz-date;x-amz-sdk-checksum-algorithm"
    headers += [
        ("X-Amz-Content-SHA256", hashlib.sha256(body).hexdigest()),
        ("Authorization", _authorization("s3", signed, f"{method}:{path}:{body!r}")),
        ("Content-Length", str(len(body))),
    ]
    return Request(method, path, "", headers, body)


def create_table() -> Request:
    """DynamoDB ``CreateTable`` of the benchmark table (hash key ``pk``, on demand)."""
    return json_request(
        "dynamodb",
        "DynamoDB_20120810.CreateTable",
        {
            "TableName": TABLE,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )


def moto_reset() -> Request:
    """``POST /moto-api/reset``: empties every moto backend (never sent through the recorder here)."""
    return Request("POST", "/moto-api/reset", "", [("Host", HOST), ("Content-Length", "0")], b"")


@dataclasses.dataclass(frozen=True)
class Workload:
    """The calls of one benchmark: ``setup`` once after a reset, then ``batches``, each followed by ``purge``.

    :param per_service: calls per service in one batch (DynamoDB, S3, SQS interleaved).
    :param keys: size of the fixed key sets DynamoDB and S3 overwrite.
    """

    per_service: int = 10
    keys: int = 64
    setup: tuple[Request, ...] = dataclasses.field(init=False)
    purge: Request = dataclasses.field(init=False)
    _items: tuple[Request, ...] = dataclasses.field(init=False, repr=False)
    _objects: tuple[Request, ...] = dataclasses.field(init=False, repr=False)
    _messages: tuple[Request, ...] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        setup = (
            create_table(),
            s3_request("PUT", f"/{BUCKET}"),
            json_request("sqs", "AmazonSQS.CreateQueue", {"QueueName": QUEUE}, query_mode=True),
        )
        items = tuple(
            json_request(
                "dynamodb",
                "DynamoDB_20120810.PutItem",
                {
                    "TableName": TABLE,
                    "Item": {
                        "pk": {"S": f"user#{key:04d}"},
                        "name": {"S": f"User number {key}"},
                        "score": {"N": str(key * 7)},
                        "tags": {"SS": ["bench", f"group-{key % 4}"]},
                    },
                },
            )
            for key in range(self.keys)
        )
        objects = tuple(
            s3_request("PUT", f"/{BUCKET}/objects/key-{key:04d}.json", orjson.dumps({"key": key, "pad": "x" * 200}))
            for key in range(self.keys)
        )
        messages = tuple(
            json_request(
                "sqs",
                "AmazonSQS.SendMessage",
                {"QueueUrl": QUEUE_URL, "MessageBody": orjson.dumps({"job": key, "payload": "y" * 100}).decode()},
                query_mode=True,
            )
            for key in range(self.keys)
        )
        object.__setattr__(self, "setup", setup)
        object.__setattr__(
            self, "purge", json_request("sqs", "AmazonSQS.PurgeQueue", {"QueueUrl": QUEUE_URL}, query_mode=True)
        )
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_objects", objects)
        object.__setattr__(self, "_messages", messages)

    def batch(self, index: int) -> list[Request]:
        """Batch ``index``: ``per_service`` calls of each service, interleaved, cycling through the key sets."""
        calls: list[Request] = []
        for offset in range(self.per_service):
            key = (index * self.per_service + offset) % self.keys
            calls += (self._items[key], self._objects[key], self._messages[key])
        return calls

    def stream(self, calls: int) -> list[Request]:
        """``setup``, then batches each followed by ``purge``: ``calls`` mutating requests in all."""
        requests = list(self.setup)
        index = 0
        while len(requests) < calls:
            requests += self.batch(index)
            requests.append(self.purge)
            index += 1
        return requests[:calls]


BIG_TABLE = "big-table"
BIG_BUCKET = "big-bucket"
BIG_QUEUE = "big-queue"
BIG_QUEUE_URL = f"http://{HOST}/{ACCOUNT}/{BIG_QUEUE}"
_BATCH = 25  # DynamoDB's BatchWriteItem limit


def big_item_key(number: int) -> str:
    """The partition key of item ``number`` of :func:`big_state`."""
    return f"item-{number:06d}"


def big_item_payload(number: int, chars: int = 1000) -> str:
    """The ``payload`` string of item ``number`` of :func:`big_state`: ``chars`` characters, distinct per item."""
    unit = hashlib.sha256(f"payload-{number}".encode()).hexdigest()
    return (unit * (chars // len(unit) + 1))[:chars]


def big_object_body(number: int, size: int = 256 * 1024) -> bytes:
    """The body of object ``number`` of :func:`big_state`: ``size`` bytes, distinct per object (no dedup)."""
    seed = hashlib.sha256(f"object-{number}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def big_state(items: int, objects: int, item_chars: int = 1000, object_bytes: int = 256 * 1024) -> list[Request]:
    """The calls that build a large state: a table of ``items`` items of about ``item_chars`` bytes each
    (``BatchWriteItem`` of 25), a bucket of ``objects`` objects of ``object_bytes`` each, and an SQS queue.

    With the defaults of the benchmarks (8,000 items, 160 objects of 256 kB) that is about 60 MB of state.
    """
    calls: list[Request] = [
        json_request(
            "dynamodb",
            "DynamoDB_20120810.CreateTable",
            {
                "TableName": BIG_TABLE,
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            },
        ),
        s3_request("PUT", f"/{BIG_BUCKET}"),
        json_request("sqs", "AmazonSQS.CreateQueue", {"QueueName": BIG_QUEUE}, query_mode=True),
    ]
    for first in range(0, items, _BATCH):
        writes = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": big_item_key(number)},
                        "n": {"N": str(number)},
                        "payload": {"S": big_item_payload(number, item_chars)},
                    }
                }
            }
            for number in range(first, min(items, first + _BATCH))
        ]
        calls.append(
            json_request("dynamodb", "DynamoDB_20120810.BatchWriteItem", {"RequestItems": {BIG_TABLE: writes}})
        )
    for number in range(objects):
        body = big_object_body(number, object_bytes)
        calls.append(s3_request("PUT", f"/{BIG_BUCKET}/objects/{number:05d}.bin", body))
    return calls


def big_get_item(number: int) -> Request:
    """DynamoDB ``GetItem`` of item ``number`` of :func:`big_state` (strongly consistent)."""
    return json_request(
        "dynamodb",
        "DynamoDB_20120810.GetItem",
        {"TableName": BIG_TABLE, "Key": {"pk": {"S": big_item_key(number)}}, "ConsistentRead": True},
    )


def big_item_matches(body: bytes, number: int, item_chars: int = 1000) -> bool:
    """Whether a ``GetItem`` answer ``body`` holds item ``number`` of :func:`big_state` as it was written."""
    try:
        item = orjson.loads(body).get("Item") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return (
        item.get("pk") == {"S": big_item_key(number)}
        and item.get("n") == {"N": str(number)}
        and item.get("payload") == {"S": big_item_payload(number, item_chars)}
    )
