"""`replay serve` with both persistence backends: state made before a restart is there after it.

For each backend, this starts `replay serve` on moto with a fresh data dir, makes a queue with a
message and a bucket with an object through boto3, stops the server (SIGTERM, as Ctrl-C would),
starts it again on another port, and reads the state back.

    python examples/serve_backends.py
    # -> replay backend: queue jobs holds ['hello'], bucket photos holds ['cat.jpg'] after a restart
    # -> snapshot backend: queue jobs holds ['hello'], bucket photos holds ['cat.jpg'] after a restart
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3
import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(data_dir: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start `replay serve` and wait for the `Ready.` line it prints once the state is restored (as LocalStack
    does: Testcontainers waits for the same line)."""
    port = free_port()
    command = [sys.executable, "-m", "replay", "serve", "--port", str(port), "--data-dir", str(data_dir), *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    assert process.stdout is not None
    if process.stdout.readline() != b"Ready.\n":  # an empty line: it exited before it was ready
        process.kill()
        raise SystemExit(f"replay serve did not come up on {url}")
    assert requests.get(f"{url}/_localstack/health", timeout=10).status_code == 200
    return process, url


def client(service: str, url: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="demo", aws_secret_access_key="demo"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def main() -> None:
    for backend in ("replay", "snapshot"):
        with tempfile.TemporaryDirectory() as scratch:
            data_dir = Path(scratch) / "volume"
            process, url = serve(data_dir, "--backend", backend)
            queue = client("sqs", url).create_queue(QueueName="jobs")["QueueUrl"]
            client("sqs", url).send_message(QueueUrl=queue, MessageBody="hello")
            client("s3", url).create_bucket(Bucket="photos")
            client("s3", url).put_object(Bucket="photos", Key="cat.jpg", Body=b"\xff\xd8 not really a cat")
            stop(process)

            process, url = serve(data_dir, "--backend", backend)  # another port, same data dir
            queue = client("sqs", url).get_queue_url(QueueName="jobs")["QueueUrl"]
            messages = client("sqs", url).receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
            objects = client("s3", url).list_objects_v2(Bucket="photos")["Contents"]
            stop(process)
            print(
                f"{backend} backend: queue jobs holds {[m['Body'] for m in messages]}, "
                f"bucket photos holds {[o['Key'] for o in objects]} after a restart"
            )


if __name__ == "__main__":
    main()
