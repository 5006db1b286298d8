"""The moto state adapter: every service's state dumps and loads back in place."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.backends import get_backend

from replay.adapters.moto import MotoAdapter

REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        yield lambda service: boto3.client(service, region_name=REGION)


def restart(adapter: MotoAdapter, services: list[str]) -> None:
    """Dump, wipe (as a new process would start), load back."""
    dumps = {service: adapter.dump(service) for service in services}
    for service in services:
        get_backend(service).reset()  # type: ignore[call-overload]
    for service, data in dumps.items():
        adapter.load(service, data)


def test_state_plain_pickle_refuses_round_trips_in_place(aws: Any) -> None:
    sqs, ssm, kms, s3 = aws("sqs"), aws("ssm"), aws("kms"), aws("s3")
    queue = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="hello")
    ssm.put_parameter(Name="p", Value="one", Type="String")
    ssm.put_parameter(Name="p", Value="two", Type="String", Overwrite=True)
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    ciphertext = kms.encrypt(KeyId=key, Plaintext=b"before")["CiphertextBlob"]
    signing = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    signature = kms.sign(KeyId=signing, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
    s3.create_bucket(Bucket="versions")
    s3.put_bucket_versioning(Bucket="versions", VersioningConfiguration={"Status": "Enabled"})
    versions = [s3.put_object(Bucket="versions", Key="k", Body=body)["VersionId"] for body in (b"1", b"2", b"3")]
    live_sqs = get_backend("sqs")

    restart(MotoAdapter(), ["sqs", "ssm", "kms", "s3"])

    assert get_backend("sqs") is live_sqs  # the live dict was updated, not replaced
    assert sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"] == "hello"  # locks rebuilt
    assert [p["Value"] for p in ssm.get_parameter_history(Name="p")["Parameters"]] == ["one", "two"]
    assert kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"before"  # key material kept
    verified = kms.verify(KeyId=signing, Message=b"m", Signature=signature, SigningAlgorithm="RSASSA_PSS_SHA_256")
    assert verified["SignatureValid"]
    listed = s3.list_object_versions(Bucket="versions")["Versions"]
    assert [v["VersionId"] for v in listed] == versions[::-1]  # every version, not only the latest
    assert [s3.get_object(Bucket="versions", Key="k", VersionId=v)["Body"].read() for v in versions] == [
        b"1",
        b"2",
        b"3",
    ]
    assert get_backend("s3").bucket_accounts["versions"]  # type: ignore[call-overload]

    for service in ("sqs", "s3"):  # moto's own reset still clears restored state
        get_backend(service).reset()  # type: ignore[call-overload]
    assert sqs.list_queues().get("QueueUrls") is None
    assert s3.list_buckets()["Buckets"] == []


ENUMERATE = """
import json, pickle, sys
from moto import mock_aws
from moto.backends import get_backend
from replay.adapters.moto import MotoAdapter

def shape(value, seen):
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return value
    if id(value) in seen:
        return "<seen>"
    seen.add(id(value))
    if isinstance(value, dict):
        return (type(value).__name__, sorted((repr(k), shape(v, seen)) for k, v in dict.items(value)))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [shape(item, seen) for item in value]
        return (type(value).__name__, sorted(map(repr, items)) if isinstance(value, (set, frozenset)) else items)
    attributes = getattr(value, "__dict__", None)
    if attributes is None:
        return type(value).__name__
    return (type(value).__name__, sorted((k, shape(v, seen)) for k, v in attributes.items()))

adapter, report = MotoAdapter(), {}
with mock_aws():
    for service in adapter.services():
        try:
            regions = get_backend(service)["123456789012"]
            regions[("us-east-1" if "us-east-1" in regions.regions else (regions.regions or ["aws"])[0])]
            first = adapter.dump(service)
            adapter.load(service, first)
            second = adapter.dump(service)
            assert shape(pickle.loads(second), set()) == shape(pickle.loads(first), set()), "state changed"
            adapter.load(service, second)
            report[service] = "ok"
        except Exception as exc:
            report[service] = f"{type(exc).__name__}: {exc}"[:160]
json.dump(report, sys.stdout)
"""


def test_every_moto_service_round_trips() -> None:
    """Each service's backend (with the defaults moto creates) dumps, loads, and dumps the same state again.

    It runs in a fresh interpreter: making every backend unseeded would leave this process's moto
    caches in a state the seeding tests do not expect.
    """
    done = subprocess.run([sys.executable, "-c", ENUMERATE], capture_output=True, text=True, timeout=300, check=True)
    report: dict[str, str] = json.loads(done.stdout)
    failing = {service: outcome for service, outcome in report.items() if outcome != "ok"}
    print(f"{len(report) - len(failing)} of {len(report)} moto services round-trip; failing: {failing}")
    assert len(report) > 100
    assert failing == {}
