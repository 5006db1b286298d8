"""Large request bodies end to end: spooled to disk, recorded as files of the data dir, replayed byte for byte.

Real ``replay serve`` processes with moto (boto3 over HTTP), and one with a WSGI app that streams its input,
to measure what ``replay`` itself holds in memory for a chunked upload without ``Content-Length``:
``REPLAY_BIG_BODY_MB`` sets its size (64 by default; the issue's figure is 1024).
"""

from __future__ import annotations

import hashlib
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from botocore.exceptions import ClientError
from conftest import CREDENTIALS, AwsClients, ReplayServer, Servers, replay_cli, tmpfs

pytestmark = pytest.mark.e2e

BIG = os.urandom(3 << 20)  # over the 1 MiB spool threshold


def entries(server: ReplayServer) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in server.log_path.read_bytes().splitlines()[0:] if line.startswith(b'{"v"')]


def file_entries(data_dir: Path) -> list[dict[str, Any]]:
    lines = (data_dir / "recorded_api_calls.json").read_bytes().splitlines()
    found = [orjson.loads(line) for line in lines if b'"encoding":"file"' in line]
    return found


def with_bucket(servers: Servers, aws: AwsClients, data: Path, bucket: str) -> tuple[ReplayServer, Any]:
    """A server on ``data`` and an S3 client for it, with ``bucket`` made."""
    server = servers.start(data)
    s3 = aws("s3", server)
    s3.create_bucket(Bucket=bucket)
    return server, s3


def disk_usage(directory: Path) -> int:
    """Bytes of the files under ``directory``, each inode counted once (hard links share theirs)."""
    seen: dict[int, int] = {}
    for path in directory.rglob("*"):
        if path.is_file():
            status = path.stat()
            seen[status.st_ino] = status.st_size
    return sum(seen.values())


def assert_nowhere(directory: Path, secrets: list[str]) -> None:
    """No file under ``directory`` holds any of ``secrets``."""
    for path in directory.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in content, (path, secret[:20])


def bodies(directory: Path) -> set[str]:
    folder = directory / "bodies"
    return {path.name for path in folder.iterdir() if path.is_file()} if folder.is_dir() else set()


def test_a_large_upload_is_kept_as_a_file_and_comes_back_after_a_restart(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "volume"
    server, s3 = with_bucket(servers, aws, data, "big")
    s3.put_object(Bucket="big", Key="blob.bin", Body=BIG)
    s3.put_object(Bucket="big", Key="small.txt", Body=b"small")
    [entry] = file_entries(data)
    digest = hashlib.sha256(BIG).hexdigest()
    assert entry["request"]["body"] == digest and entry["request"]["size"] == len(BIG)
    assert max(len(line) for line in server.log_path.read_bytes().splitlines()) < 10_000  # nothing inlined
    assert (data / "bodies" / digest).read_bytes() == BIG
    assert list((data / "bodies" / ".incoming").iterdir()) == []  # the spooled copy went with its request
    server.stop()

    again = servers.start(data)
    s3 = aws("s3", again)
    assert s3.get_object(Bucket="big", Key="blob.bin")["Body"].read() == BIG
    assert s3.get_object(Bucket="big", Key="small.txt")["Body"].read() == b"small"
    assert "Restored 3 API calls from persistent file" in again.stderr()


def test_multipart_parts_are_files_and_the_object_is_whole_after_a_restart(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "volume"
    server, s3 = with_bucket(servers, aws, data, "mpu")
    parts = [os.urandom(5 << 20), os.urandom(2 << 20)]
    upload = s3.create_multipart_upload(Bucket="mpu", Key="joined")["UploadId"]
    done = []
    for number, part in enumerate(parts, 1):
        answer = s3.upload_part(Bucket="mpu", Key="joined", UploadId=upload, PartNumber=number, Body=part)
        done.append({"PartNumber": number, "ETag": answer["ETag"]})
    s3.complete_multipart_upload(Bucket="mpu", Key="joined", UploadId=upload, MultipartUpload={"Parts": done})
    assert bodies(data) == {hashlib.sha256(part).hexdigest() for part in parts}
    server.stop()
    again = servers.start(data)
    assert aws("s3", again).get_object(Bucket="mpu", Key="joined")["Body"].read() == b"".join(parts)


def test_a_checkpoint_moves_folded_bodies_into_itself_and_keeps_the_rest(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "volume"
    server, s3 = with_bucket(servers, aws, data, "cpt")
    s3.put_object(Bucket="cpt", Key="before", Body=BIG)
    s3.put_object(Bucket="cpt", Key="gone", Body=BIG[::-1])
    s3.delete_object(Bucket="cpt", Key="gone")
    answer = requests.post(f"{server.endpoint}/_replay/compact", timeout=120)
    assert answer.status_code == 200, answer.text
    checkpoint = answer.json()["checkpoint"]
    assert bodies(data) == set()  # every body's call is folded into the checkpoint now
    assert bodies(data / "checkpoints" / checkpoint) == {hashlib.sha256(BIG).hexdigest()}  # compacted: one left
    digest = hashlib.sha256(BIG).hexdigest()
    body, asset = data / "checkpoints" / checkpoint / "bodies" / digest, data / "checkpoints" / checkpoint / "assets"
    assert body.stat().st_ino == (asset / "s3" / digest).stat().st_ino  # the object's bytes are stored once
    assert disk_usage(data) < 1.5 * len(BIG)
    after = os.urandom(2 << 20)
    s3.put_object(Bucket="cpt", Key="after", Body=after)
    assert bodies(data) == {hashlib.sha256(after).hexdigest()}
    server.stop()
    again = servers.start(data)
    s3 = aws("s3", again)
    assert s3.get_object(Bucket="cpt", Key="before")["Body"].read() == BIG
    assert s3.get_object(Bucket="cpt", Key="after")["Body"].read() == after
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="cpt")["Contents"]] == ["after", "before"]
    # the checkpoint's own calls replay too (what `replay verify` and a refused snapshot fall back on)
    verified = replay_cli("verify", str(data), "--json")
    assert verified.returncode == 0, verified.stderr
    assert orjson.loads(verified.stdout)["failed"] == 0


@pytest.mark.parametrize("damage", ["altered", "missing"])
def test_a_damaged_body_refuses_the_start_naming_the_file_and_line(
    servers: Servers, aws: AwsClients, tmp_path: Path, damage: str
) -> None:
    data = tmp_path / "volume"
    server, s3 = with_bucket(servers, aws, data, "dmg")
    s3.put_object(Bucket="dmg", Key="k", Body=BIG)
    server.stop()
    body = data / "bodies" / hashlib.sha256(BIG).hexdigest()
    if damage == "missing":
        body.unlink()
    else:
        raw = bytearray(body.read_bytes())
        raw[1000] ^= 0xFF
        body.write_bytes(bytes(raw))
    before = server.log_path.read_bytes()
    refused = servers.run(data)
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if "recorded_api_calls.json:2" in line]
    assert lines and str(body) in lines[0], refused.stderr
    assert ("missing" if damage == "missing" else "SHA-256") in lines[0]
    assert server.log_path.read_bytes() == before  # nothing touched


def test_archives_carry_the_bodies(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    data = tmp_path / "volume"
    server, s3 = with_bucket(servers, aws, data, "arc")
    s3.put_object(Bucket="arc", Key="k", Body=BIG)
    server.stop()
    archive = tmp_path / "state.replay"
    for args in (["export", str(archive), "--data-dir", str(data)], ["import", str(archive), "--data-dir", "copy"]):
        done = replay_cli(*args, cwd=tmp_path, env=CREDENTIALS)
        assert done.returncode == 0, done.stderr
    assert bodies(tmp_path / "copy") == {hashlib.sha256(BIG).hexdigest()}
    restored = servers.start(tmp_path / "copy")
    assert aws("s3", restored).get_object(Bucket="arc", Key="k")["Body"].read() == BIG


def _signed_chunks(payload: bytes, signature: str, size: int = 1 << 20) -> bytes:
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    framed = b"".join(f"{len(p):x};chunk-signature={signature}\r\n".encode() + p + b"\r\n" for p in pieces)
    return framed + f"0;chunk-signature={signature}\r\n\r\n".encode()


def test_a_signed_streaming_upload_is_stored_without_its_chunk_signatures(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "volume"
    server = servers.start(data)
    aws("s3", server).create_bucket(Bucket="sig")
    signature = "5" * 64
    framed = _signed_chunks(BIG, signature)
    headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + "9" * 64,
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-date": "20260101T000000Z",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(BIG)),
    }
    answer = requests.put(f"{server.endpoint}/sig/streamed", data=framed, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert aws("s3", server).get_object(Bucket="sig", Key="streamed")["Body"].read() == BIG
    server.stop()
    assert_nowhere(data, [signature, "9" * 64])
    assert bodies(data) == {hashlib.sha256(BIG).hexdigest()}
    again = servers.start(data)
    assert aws("s3", again).get_object(Bucket="sig", Key="streamed")["Body"].read() == BIG


def test_a_presigned_post_of_a_large_file_keeps_no_policy_or_signature(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    data = tmp_path / "volume"
    server, s3 = with_bucket(servers, aws, data, "forms")
    post = s3.generate_presigned_post(Bucket="forms", Key="up.bin")
    answer = requests.post(post["url"], data=post["fields"], files={"file": ("up.bin", BIG)}, timeout=60)
    assert answer.status_code in (200, 204), answer.text
    server.stop()
    secrets = [value for name, value in post["fields"].items() if name in ("policy", "signature", "x-amz-signature")]
    assert len(secrets) == 2, post["fields"]
    assert_nowhere(data, secrets)
    again = servers.start(data)
    assert aws("s3", again).get_object(Bucket="forms", Key="up.bin")["Body"].read() == BIG


def test_no_room_for_a_large_body_is_a_503_and_nothing_reaches_the_emulator(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "disk", "2m") as mount:
        server = servers.start(mount / "volume")
        s3 = aws("s3", server)
        s3.create_bucket(Bucket="full")
        with pytest.raises(ClientError) as caught:
            s3.put_object(Bucket="full", Key="too-big", Body=BIG)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert "cannot hold the request body" in caught.value.response["Error"]["Message"]
        assert "too-big" not in [o["Key"] for o in s3.list_objects_v2(Bucket="full").get("Contents", [])]
        s3.put_object(Bucket="full", Key="fits", Body=b"small")  # small calls go on
        assert [e["operation"] for e in entries(server)] == ["CreateBucket", "PutObject"]
        server.stop()


SINK = textwrap.dedent(
    '''
    """A WSGI app that reads its input in small steps and answers with its size and SHA-256."""
    import hashlib


    def app(environ, start_response):
        digest, size = hashlib.sha256(), 0
        stream = environ["wsgi.input"]
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
        body = f"{size} {digest.hexdigest()}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    '''
)


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _generate(size: int, seed: bytes) -> Iterator[bytes]:
    block = hashlib.sha256(seed).digest() * (1 << 15)  # 1 MiB
    sent = 0
    while sent < size:
        piece = block[: min(len(block), size - sent)]
        sent += len(piece)
        yield piece


def test_a_chunked_upload_without_content_length_holds_little_memory(servers: Servers, tmp_path: Path) -> None:
    size = int(os.environ.get("REPLAY_BIG_BODY_MB", "64")) << 20
    (tmp_path / "sink.py").write_text(SINK)
    data = tmp_path / "volume"
    server = servers.start(data, "--app", "sink:app", env={"PYTHONPATH": str(tmp_path)})
    before = _rss(server.proc.pid)
    started = time.monotonic()
    answer = requests.put(f"{server.endpoint}/uploads/big", data=_generate(size, b"seed"), timeout=600)
    took = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    expected = hashlib.sha256(b"".join(_generate(size, b"seed"))).hexdigest()
    assert answer.text == f"{size} {expected}"
    growth = _peak_rss(server.proc.pid) - before
    print(f"\n{size >> 20} MiB chunked upload: {took:.1f} s, server memory grew {growth / 2**20:.1f} MiB")
    assert growth <= 64 << 20, f"the server grew by {growth:,} bytes for a {size:,}-byte upload"
    [entry] = [e for e in entries(server) if e["request"]["path"] == "/uploads/big"]
    assert entry["request"]["encoding"] == "file" and entry["request"]["body"] == expected
    server.stop()
    again = servers.start(data, "--app", "sink:app", env={"PYTHONPATH": str(tmp_path)})
    assert "Restored 1 API calls from persistent file" in again.stderr()
