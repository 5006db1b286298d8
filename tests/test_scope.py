"""The selective-persistence settings: `PERSISTENCE_SERVICES` / `--services` and `PERSISTENCE_SCOPE` / `--scope`."""

from __future__ import annotations

import re

import pytest

from replay.config import Config
from replay.errors import ConfigError
from replay.scope import PersistenceScope, ServiceSelection


def test_services_include_or_exclude_and_default_to_every_service() -> None:
    assert Config().services == ServiceSelection() and Config().scope is PersistenceScope.ALL
    every = Config.load({}, {"PERSISTENCE_SERVICES": " "}).services
    assert every.includes("sqs") and every.describe() == "every service"
    included = Config.load({}, {"PERSISTENCE_SERVICES": "SQS, s3"}).services
    assert included.names == {"sqs", "s3"} and not included.excluded
    assert included.includes("s3") and not included.includes("dynamodb")
    assert included.describe() == "s3, sqs only"
    excluded = Config.load({"services": "-dynamodb,-kinesis"}, {}).services
    assert excluded.includes("sqs") and not excluded.includes("kinesis")
    assert excluded.describe() == "every service but dynamodb, kinesis"


def test_a_flag_wins_over_the_environment() -> None:
    config = Config.load(
        {"services": "sqs", "scope": "Infrastructure"}, {"PERSISTENCE_SERVICES": "s3", "PERSISTENCE_SCOPE": "all"}
    )
    assert config.services.names == {"sqs"} and config.services.source == "--services"
    assert config.scope is PersistenceScope.INFRASTRUCTURE
    assert Config.load({}, {"PERSISTENCE_SCOPE": "INFRASTRUCTURE"}).scope is PersistenceScope.INFRASTRUCTURE


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"PERSISTENCE_SERVICES": "sqs,-s3"}, "'sqs,-s3' (either every name included (sqs,s3) or every one excluded"),
        ({"PERSISTENCE_SERVICES": "sqs,,s3"}, "'sqs,,s3' (an empty service name; comma-separated service names"),
        ({"PERSISTENCE_SERVICES": "sqs,"}, "'sqs,' (an empty service name"),
        ({"PERSISTENCE_SERVICES": "-"}, "'-' (an empty service name"),
        ({"PERSISTENCE_SERVICES": "sq s"}, "'sq s' ('sq s' is not a service name; services are named as in the SigV4"),
        ({"PERSISTENCE_SERVICES": "s3/x"}, "'s3/x' ('s3/x' is not a service name"),
        ({"PERSISTENCE_SCOPE": "data"}, "PERSISTENCE_SCOPE: 'data' (valid values: all, infrastructure)"),
    ],
)
def test_bad_settings_are_one_line_errors(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)) as caught:
        Config.load({}, environ)
    assert "\n" not in str(caught.value)
