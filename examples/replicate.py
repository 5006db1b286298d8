"""Keep an emulator's state off the machine: `replay serve --replicate s3://...`, then restore it anywhere, at any time.

A server replicates its state continuously to `s3://team-state/ci` (here a second, non-persistent moto
server stands in for the team's bucket; point `--endpoint-url` at MinIO, or leave it out for AWS).
Phase one makes a table with Ada in it; phase two replaces her with Grace.  Then the machine dies
(`kill -9`, and its data dir is gone).  From the replica alone, `replay import` restores the newest
state, and `replay import --at` the state between the two phases.

    python examples/replicate.py
    # -> the replica holds 1 generation; its last upload was under 2 s before the crash
    # -> newest state: users ['Grace']
    # -> state at the time between the phases: users ['Ada']
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from serve_backends import client, serve, stop
from share_state import CREDENTIALS, replay

USERS = {
    "TableName": "users",
    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
    "BillingMode": "PAY_PER_REQUEST",
}


def users(data_dir: Path) -> list[str]:
    """Serve a restored data dir for a moment: who is in the table."""
    server, url = serve(data_dir)
    names = [item["name"]["S"] for item in client("dynamodb", url).scan(TableName="users")["Items"]]
    stop(server)
    return names


def main() -> None:
    os.environ.update(CREDENTIALS)  # the replicating server reaches the bucket with these
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        bucket_server, s3_url = serve(root / "s3", "--no-persistence")  # the team's S3, for this demo
        client("s3", s3_url).create_bucket(Bucket="team-state")
        replica = ["s3://team-state/ci", "--endpoint-url", s3_url]

        server, url = serve(root / "volume", "--replicate", replica[0], *replica[1:], "--replicate-interval", "0.2s")
        dynamodb = client("dynamodb", url)
        dynamodb.create_table(**USERS)
        dynamodb.put_item(TableName="users", Item={"id": {"S": "1"}, "name": {"S": "Ada"}})
        time.sleep(0.5)
        between = time.time()  # a moment between the two phases
        time.sleep(0.5)
        dynamodb.delete_item(TableName="users", Key={"id": {"S": "1"}})
        dynamodb.put_item(TableName="users", Item={"id": {"S": "2"}, "name": {"S": "Grace"}})
        time.sleep(1.0)  # more than one interval: every call above has shipped
        server.send_signal(signal.SIGKILL)  # the machine dies ...
        crashed = time.time()
        server.wait()
        shutil.rmtree(root / "volume")  # ... and its disk with it

        described = json.loads(replay("inspect", *replica, "--json"))
        fresh = described["last_upload"] is not None and crashed - described["last_upload"] < 2
        print(
            f"the replica holds {len(described['generations'])} generation; "
            f"its last upload was {'under 2 s' if fresh else 'more than 2 s'} before the crash"
        )
        replay("import", *replica, "--data-dir", str(root / "newest"))
        print(f"newest state: users {users(root / 'newest')}")
        replay("import", *replica, "--data-dir", str(root / "then"), "--at", str(between))
        print(f"state at the time between the phases: users {users(root / 'then')}")
        stop(bucket_server)


if __name__ == "__main__":
    main()
