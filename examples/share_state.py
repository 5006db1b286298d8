"""Share an emulator's state with a teammate: `replay export` to S3, `replay import` on the other side.

Alice runs `replay serve` and makes a queue, a table and an item. While her server runs she exports
its state to `s3://team-state/main.replay` on an S3-compatible endpoint (here a second, non-persistent
moto server stands in for the team's bucket; point `--endpoint-url` at MinIO or leave it out for AWS).
Bob imports the archive into a fresh data dir and serves it: the same queue, table and item are there.

    python examples/share_state.py
    # -> alice exported 3 calls to s3://team-state/main.replay
    # -> bob's server: queues ['jobs'], users ['Ada']
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from serve_backends import client, serve, stop

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1"}


def replay(*args: str) -> str:
    """Run a `replay` command; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "replay", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **CREDENTIALS},
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr.strip())
    return done.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        bucket_server, s3_url = serve(root / "s3", "--no-persistence")  # the team's S3, for this demo
        client("s3", s3_url).create_bucket(Bucket="team-state")

        alice, alice_url = serve(root / "alice")
        client("sqs", alice_url).create_queue(QueueName="jobs")
        dynamodb = client("dynamodb", alice_url)
        dynamodb.create_table(
            TableName="users",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName="users", Item={"id": {"S": "1"}, "name": {"S": "Ada"}})
        dynamodb.put_item(TableName="users", Item={"id": {"S": "1"}, "name": {"S": "Ada"}})  # compacted away
        exported = json.loads(
            replay("export", "s3://team-state/main.replay", "--data-dir", str(root / "alice"), "--endpoint-url",
                   s3_url, "--json")
        )  # fmt: skip
        stop(alice)
        print(f"alice exported {exported['calls']} calls to {exported['destination']}")

        replay("import", "s3://team-state/main.replay", "--data-dir", str(root / "bob"), "--endpoint-url", s3_url)
        bob, bob_url = serve(root / "bob")
        queues = [url.rsplit("/", 1)[-1] for url in client("sqs", bob_url).list_queues()["QueueUrls"]]
        users = [item["name"]["S"] for item in client("dynamodb", bob_url).scan(TableName="users")["Items"]]
        print(f"bob's server: queues {queues}, users {users}")
        stop(bob)
        stop(bucket_server)


if __name__ == "__main__":
    main()
