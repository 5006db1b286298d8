"""What a generated identifier looks like: ids of every shape moto makes are recognised, state never is."""

from __future__ import annotations

import base64
import random
import string
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replay.record.identifiers import digest_key, id_pairs, id_shape


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ("4f1c2d3e-0a1b-4c5d-8e9f-001122334455", "uuid"),
        ("4F1C2D3E-0A1B-4C5D-8E9F-001122334455", "uuid"),
        ("i-0123456789abcdef0", "i-hex17"),
        ("vpc-1a2b3c4d", "vpc-hex8"),
        ("eni-attach-0123456789abcdef0", "eni-attach-hex17"),
        ("AKIAG863L97Q4ODM2QCT", "token20"),
        ("d41d8cd98f00b204e9800998ecf8427e", "hex32"),
        ("a1b2c3d4e5", "short10"),
        ("ybufvsjsotbyissmuuymekaqowihbfhtobdkprkcmbnqzzxhwlgt", "token"),
    ],
)
def test_generated_ids_have_shapes(value: str, shape: str) -> None:
    assert id_shape(value) == shape


@pytest.mark.parametrize(
    "value",
    [
        "ACTIVE",
        "ARCHIVED",
        "PAY_PER_REQUEST",
        "KEY_MATERIAL_EXPIRES",
        "python3.12",
        "Successful",
        "true",
        "1700000000000",
        "2026-12-03T06:00:00.000Z",
        "table001",
        "my-queue-name",
        "processing-queue-2024",
        "ProcessingQueue2024",
        "OrdersTableForTheBigCustomers",
        "integration-test-bucket-7",
        "arn:aws:sqs:us-east-1:123456789012:orders",
        "",
        "x" * 5000,
    ],
)
def test_state_values_are_not_ids(value: str) -> None:
    assert id_shape(value) is None


def test_digest_keys() -> None:
    assert all(
        digest_key(key)
        for key in ("etag", "ETag", "MD5OfMessageBody", "CodeSha256", "KeyFingerprint", "x-amz-checksum-crc32")
    )
    assert not any(digest_key(key) for key in ("MessageId", "UploadId", "TableStatus", "VersionId"))


def test_ids_inside_arns_and_urls() -> None:
    old = "arn:aws:sns:us-east-1:123456789012:topic:4f1c2d3e-0a1b-4c5d-8e9f-001122334455"
    new = "arn:aws:sns:us-east-1:123456789012:topic:9a8b7c6d-5e4f-4a3b-9c2d-665544332211"
    assert id_pairs(old, new) == [
        (old, new),
        ("4f1c2d3e-0a1b-4c5d-8e9f-001122334455", "9a8b7c6d-5e4f-4a3b-9c2d-665544332211"),
    ]
    assert id_pairs(old, old) == []
    assert id_pairs(old, new.replace(":topic:", ":other:")) is None  # a name changed too
    assert id_pairs("arn:aws:sqs:us-east-1:123456789012:a", "arn:aws:sqs:us-east-1:123456789012:b") is None
    assert id_pairs(old, new + ":extra") is None
    url = "http://localhost:4566/123456789012/q?Receipt=i-0123456789abcdef0"
    assert id_pairs(url, url.replace("i-0123456789abcdef0", "i-0fedcba9876543210")) is not None
    assert id_pairs("ACTIVE", "ARCHIVED") is None
    assert id_pairs("4f1c2d3e-0a1b-4c5d-8e9f-001122334455", "i-0123456789abcdef0") is None  # shapes differ


def test_ids_of_moto_generators_are_recognised() -> None:
    """moto's own generators (seeded here): nearly all of their values have a shape, and a pair of values
    of one generator always has the same shape."""
    from moto.ec2.utils import random_id
    from moto.iam.utils import random_access_key, random_alphanumeric, random_resource_id
    from moto.moto_api._internal import mock_random
    from moto.sqs.utils import generate_receipt_handle

    mock_random.seed(7)
    random.seed(7)
    generators = {
        "uuid": lambda: str(mock_random.uuid4()),
        "ec2": lambda: random_id("i"),
        "hex": lambda: mock_random.get_random_hex(32),
        "string": lambda: mock_random.get_random_string(20),
        "access key": lambda: "AKIA" + random_access_key(),
        "resource": random_resource_id,
        "alphanumeric": lambda: random_alphanumeric(40),
        "receipt": generate_receipt_handle,
        "upload": lambda: (
            base64.b64encode(random.randbytes(43)).decode().replace("=", "").replace("+", "").replace("/", "")
        ),
    }
    for name, make in generators.items():
        values = [make() for _ in range(400)]
        shapes = [id_shape(value) for value in values]
        recognised = sum(shape is not None for shape in shapes) / len(shapes)
        assert recognised >= 0.97, (name, recognised, [v for v, s in zip(values, shapes, strict=True) if s is None][:5])


WORDS = ["orders", "queue", "table", "events", "payments", "users", "profile", "invoice", "stream", "archive"]


@pytest.mark.fuzz
@given(
    words=st.lists(st.sampled_from(WORDS), min_size=2, max_size=5),
    style=st.sampled_from(["kebab", "snake", "dotted", "camel", "Pascal"]),
    suffix=st.one_of(st.just(""), st.integers(0, 99999).map(str), st.integers(0, 99).map(lambda n: f"-{n}")),
)
def test_names_made_of_words_are_never_ids(words: list[str], style: str, suffix: str) -> None:
    """Names as people write them: kebab-case, snake_case, dotted, camelCase and PascalCase, a number at the end."""
    if style in ("camel", "Pascal"):
        name = "".join(word.capitalize() for word in words)
        name = name[0].lower() + name[1:] if style == "camel" else name
    else:
        name = {"kebab": "-", "snake": "_", "dotted": "."}[style].join(words)
    name += suffix
    assert id_shape(name) is None, name


def test_values_under_keys_that_hold_names_are_never_ids() -> None:
    from replay.record.identifiers import name_key

    assert all(name_key(key) for key in ("TableName", "QueueName", "Name", "Key", "Description", "Value", "AliasName"))
    assert not any(name_key(key) for key in ("KeyId", "MessageId", "ReceiptHandle", "UploadId", "QueueUrl", "TopicArn"))


@pytest.mark.fuzz
@given(st.sampled_from(["ACTIVE", "CREATING", "DELETING", "ENABLED", "PENDING_DELETION", "RUNNING", "SUCCEEDED"]))
def test_status_words_are_never_ids(word: str) -> None:
    assert id_shape(word) is None
    assert id_shape(word.lower()) is None


@pytest.mark.fuzz
@given(st.uuids())
def test_every_uuid_is_an_id(value: uuid.UUID) -> None:
    assert id_shape(str(value)) == "uuid"


@pytest.mark.fuzz
@given(
    st.text(alphabet=string.hexdigits[:16], min_size=16, max_size=64).filter(
        lambda v: not v.isdigit() and not v.isalpha()
    )
)
def test_long_hex_with_digits_and_letters_is_an_id(value: str) -> None:
    assert id_shape(value) == f"hex{len(value)}"
