"""Key pairs drawn from a call's seeded stream: the same key again on replay, valid keys, OpenSSL elsewhere."""

from __future__ import annotations

import base64
import json
import math
import random
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from replay.cli.commands import main
from replay.record.keys import rsa_key
from replay.record.seeding import moto_seeder

if TYPE_CHECKING:
    from conftest import InProcessServer

    from replay.serve.emulators import Emulator


def public_der(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("size", [1024, 2048])
def test_rsa_keys_from_a_stream_are_valid_and_reproducible(size: int) -> None:
    key = rsa_key(65537, size, random.Random(7))
    assert key.key_size == size
    numbers = key.private_numbers()
    assert numbers.p * numbers.q == numbers.public_numbers.n
    lam = (numbers.p - 1) * (numbers.q - 1) // math.gcd(numbers.p - 1, numbers.q - 1)
    assert 65537 * numbers.d % lam == 1
    signature = key.sign(b"message", padding.PKCS1v15(), hashes.SHA256())
    key.public_key().verify(signature, b"message", padding.PKCS1v15(), hashes.SHA256())
    plain = key.decrypt(key.public_key().encrypt(b"secret", padding.PKCS1v15()), padding.PKCS1v15())
    assert plain == b"secret"
    assert rsa_key(65537, size, random.Random(7)).private_numbers() == numbers
    assert rsa_key(65537, size, random.Random(8)).private_numbers() != numbers


def test_inside_a_seeded_call_keys_come_from_its_stream_and_outside_from_openssl() -> None:
    seeder = moto_seeder()

    def made(seed: int | None) -> list[bytes]:
        def keys() -> list[bytes]:
            return [
                public_der(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                public_der(ec.generate_private_key(ec.SECP256R1())),
                public_der(ec.generate_private_key(ec.SECP384R1())),
                public_der(ed25519.Ed25519PrivateKey.generate()),
            ]

        if seed is None:
            return keys()
        with seeder.seeded(seed):
            return keys()

    assert made(11) == made(11)
    assert all(a != b for a, b in zip(made(11), made(12), strict=True))
    assert all(a != b for a, b in zip(made(None), made(None), strict=True))


def test_kms_keys_ec2_key_pairs_and_sns_signatures_are_the_same_after_a_restart(
    in_process_server: InProcessServer,
    fresh: Emulator,
    start_server: type[InProcessServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    kms = in_process_server.client("kms")
    signing = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    ecc = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    public = {key: kms.get_public_key(KeyId=key)["PublicKey"] for key in (signing, ecc)}
    signature = kms.sign(KeyId=signing, Message=b"m", SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")["Signature"]
    ec2 = in_process_server.client("ec2")
    pair = ec2.create_key_pair(KeyName="deploy")
    sqs, sns = in_process_server.client("sqs"), in_process_server.client("sns")
    queue = sqs.create_queue(QueueName="notes")["QueueUrl"]
    topic = sns.create_topic(Name="news")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint="arn:aws:sqs:us-east-1:123456789012:notes")
    sns.publish(TopicArn=topic, Message="hello")
    [delivered] = sqs.receive_message(QueueUrl=queue)["Messages"]
    envelope = json.loads(delivered["Body"])

    in_process_server.stop()
    assert fresh.reset is not None
    fresh.reset()
    again = start_server(in_process_server.data_dir)
    try:
        kms = again.client("kms")
        assert {key: kms.get_public_key(KeyId=key)["PublicKey"] for key in (signing, ecc)} == public
        verified = kms.verify(
            KeyId=signing, Message=b"m", Signature=signature, SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256"
        )
        assert verified["SignatureValid"]
        [described] = again.client("ec2").describe_key_pairs(KeyNames=["deploy"])["KeyPairs"]
        assert described["KeyFingerprint"] == pair["KeyFingerprint"]
        again.client("sns").publish(TopicArn=topic, Message="hello again")
        after = [json.loads(m["Body"]) for m in again.client("sqs").receive_message(QueueUrl=queue)["Messages"]]
        assert base64.b64decode(envelope["Signature"])
        assert all(item["SigningCertURL"] for item in after)
    finally:
        again.stop()
    assert main(["verify", str(again.data_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["failed"], report["diverged"], report["mapped"]) == (0, 0, 0), report
