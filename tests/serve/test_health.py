"""The health document's parts: LocalStack's service names and states, and the session facts."""

from __future__ import annotations

import datetime

from replay.adapters.moto import MotoAdapter
from replay.serve.health import SessionFacts, localstack_name, service_states


def test_services_are_named_as_localstack_names_them() -> None:
    assert localstack_name("awslambda") == "lambda"
    assert localstack_name("cognitoidp") == "cognito-idp"
    assert localstack_name("resourcegroups") == "resource-groups"
    assert localstack_name("stepfunctions") == "stepfunctions"
    assert localstack_name("sqs") == "sqs" and localstack_name("not-a-service") == "not-a-service"
    names = [localstack_name(service) for service in MotoAdapter().services()]
    assert len(names) == len(set(names))  # no two moto services under one name


def test_a_service_is_running_once_used_and_error_when_its_state_was_refused() -> None:
    states = service_states(["sqs", "s3", "awslambda", "dynamodb"], running=["s3"], failed=["dynamodb"])
    assert states == {"dynamodb": "error", "lambda": "available", "s3": "running", "sqs": "available"}


def test_session_facts_are_localstacks_keys_with_their_types() -> None:
    info = SessionFacts("1.2.3").info()
    assert list(info) == [
        "version",
        "edition",
        "is_license_activated",
        "session_id",
        "machine_id",
        "system",
        "is_docker",
        "server_time_utc",
        "uptime",
    ]
    assert info["version"] == "1.2.3" and info["is_license_activated"] is False and isinstance(info["uptime"], int)
    assert datetime.datetime.fromisoformat(str(info["server_time_utc"]))
    assert SessionFacts("1").machine_id == info["machine_id"] != SessionFacts("1").session_id
