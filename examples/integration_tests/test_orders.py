"""An integration-test suite that starts from recorded state (the `replay` pytest plugin).

Every test starts from the state `make_state.py` recorded in `./state`, restored into moto; what a test
changes is gone for the next one. Nothing to set up: installing `replay` registers the plugin.

    python examples/integration_tests/make_state.py
    pytest examples/integration_tests
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

pytestmark = pytest.mark.replay_state("state")  # relative to this file's directory


def place_order(aws: dict[str, str], order_id: str) -> None:
    """The code under test: store the order, queue it for fulfilment, write its invoice."""
    boto3.client("dynamodb", **aws).put_item(TableName="orders", Item={"id": {"S": order_id}, "status": {"S": "new"}})
    sqs = boto3.client("sqs", **aws)
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName="orders")["QueueUrl"], MessageBody=order_id)
    boto3.client("s3", **aws).put_object(Bucket="invoices", Key=f"{order_id}.txt", Body=b"1 x widget")


def orders(aws: dict[str, Any]) -> dict[str, str]:
    items = boto3.client("dynamodb", **aws).scan(TableName="orders")["Items"]
    return {item["id"]["S"]: item["status"]["S"] for item in items}


def test_placing_an_order_stores_queues_and_invoices_it(replay_aws: dict[str, str]) -> None:
    place_order(replay_aws, "o-2")
    assert orders(replay_aws) == {"o-1": "shipped", "o-2": "new"}
    sqs = boto3.client("sqs", **replay_aws)
    url = sqs.get_queue_url(QueueName="orders")["QueueUrl"]
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["o-2"]
    assert boto3.client("s3", **replay_aws).get_object(Bucket="invoices", Key="o-2.txt")["Body"].read()


def test_each_test_starts_from_the_recorded_state(replay_aws: dict[str, str]) -> None:
    assert orders(replay_aws) == {"o-1": "shipped"}  # the order the other test placed is not here
    assert "Contents" not in boto3.client("s3", **replay_aws).list_objects_v2(Bucket="invoices")


@pytest.mark.replay_state(None)
def test_a_test_can_start_empty(replay_aws: dict[str, str]) -> None:
    assert boto3.client("sqs", **replay_aws).list_queues().get("QueueUrls", []) == []
