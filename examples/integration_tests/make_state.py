"""Record the state the integration tests start from: run `replay serve`, make it, stop.

    python examples/integration_tests/make_state.py examples/integration_tests/state
    pytest examples/integration_tests

Any way of making the state works: point your own app or scripts at `replay serve --data-dir DIR`, or
export a teammate's state and import it (`replay export` / `replay import`). This one makes an order
pipeline: a queue, a table with one order in it, a bucket for invoices.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # serve_backends.py, next door

from serve_backends import client, serve, stop


def main(data_dir: str) -> None:
    process, url = serve(Path(data_dir))
    client("sqs", url).create_queue(QueueName="orders")
    dynamodb = client("dynamodb", url)
    dynamodb.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="orders", Item={"id": {"S": "o-1"}, "status": {"S": "shipped"}})
    client("s3", url).create_bucket(Bucket="invoices")
    stop(process)
    print(f"state recorded in {data_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent / "state"))
