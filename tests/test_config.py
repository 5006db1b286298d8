from __future__ import annotations

import re
from pathlib import Path

import pytest

from replay.config import BackendKind, Config, FsyncPolicy, parse_duration, parse_size
from replay.errors import ConfigError


def test_defaults() -> None:
    config = Config.load({}, {})
    assert (config.host, config.port, config.data_dir) == ("127.0.0.1", 4566, Path("volume"))
    assert config.persistence is True
    assert config.backend is BackendKind.REPLAY
    assert config.fsync is FsyncPolicy.EVERYSEC
    assert config.log_path == Path("volume/recorded_api_calls.json")


def test_environment_is_read() -> None:
    config = Config.load(
        {}, {"DATA_DIR": "/data", "PERSISTENCE": "0", "PERSISTENCE_BACKEND": "Replay", "REPLAY_FSYNC": "ALWAYS"}
    )
    assert config.data_dir == Path("/data")
    assert config.persistence is False
    assert config.fsync is FsyncPolicy.ALWAYS


def test_flag_wins_over_environment() -> None:
    config = Config.load(
        {"data_dir": "/flag", "fsync": "no", "persistence": True, "port": "5000"},
        {"DATA_DIR": "/env", "REPLAY_FSYNC": "always", "PERSISTENCE": "0"},
    )
    assert (config.data_dir, config.fsync, config.persistence, config.port) == (
        Path("/flag"),
        FsyncPolicy.NO,
        True,
        5000,
    )


def test_call_timeout_is_read_from_the_environment() -> None:
    assert Config().call_timeout == 60.0
    assert Config.load({}, {"REPLAY_CALL_TIMEOUT": "2.5"}).call_timeout == 2.5


def test_unset_flags_and_empty_environment_fall_back() -> None:
    config = Config.load({"fsync": None}, {"REPLAY_FSYNC": ""})
    assert config.fsync is FsyncPolicy.EVERYSEC


@pytest.mark.parametrize(
    ("flags", "environ", "needle"),
    [
        ({}, {"REPLAY_FSYNC": "sometimes"}, "REPLAY_FSYNC: 'sometimes' (valid values: always, everysec, no)"),
        ({"fsync": "x"}, {}, "--fsync: 'x' (valid values: always, everysec, no)"),
        ({}, {"PERSISTENCE_BACKEND": "pickle"}, "PERSISTENCE_BACKEND: 'pickle' (valid values: replay, snapshot)"),
        ({}, {"PERSISTENCE": "maybe"}, "PERSISTENCE: 'maybe' (valid values: 1, true, yes, on, 0, false, no, off)"),
        ({"port": "70000"}, {}, "--port: '70000' (a port number from 0 to 65535)"),
        ({"port": "http"}, {}, "--port: 'http'"),
        ({}, {"REPLAY_CALL_TIMEOUT": "0"}, "REPLAY_CALL_TIMEOUT: '0' (a number of seconds greater than 0)"),
        ({}, {"REPLAY_CALL_TIMEOUT": "soon"}, "REPLAY_CALL_TIMEOUT: 'soon'"),
    ],
)
def test_invalid_values_are_one_line_errors(flags: dict[str, object], environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.load(flags, environ)
    message = str(caught.value)
    assert needle in message
    assert "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_checkpoint_triggers_read_sizes_and_percentages() -> None:
    assert (Config().checkpoint_percentage, Config().checkpoint_min_size) == (100, 1024**2)
    config = Config.load({"checkpoint_min_size": "64mb"}, {"REPLAY_CHECKPOINT_PERCENTAGE": "50%"})
    assert (config.checkpoint_percentage, config.checkpoint_min_size) == (50, 64 * 1024**2)
    for text, size in (("1048576", 1048576), ("512kb", 524288), ("1k", 1000), ("2 MiB", 2 * 1024**2), ("1gb", 1024**3)):
        assert parse_size("x", text) == size
    assert Config.load({}, {"REPLAY_CHECKPOINT_PERCENTAGE": "0"}).checkpoint_percentage == 0  # automatic off


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"REPLAY_CHECKPOINT_MIN_SIZE": "lots"}, "REPLAY_CHECKPOINT_MIN_SIZE: 'lots' (a size such as 1048576, 512kb"),
        ({"REPLAY_CHECKPOINT_MIN_SIZE": "-5mb"}, "REPLAY_CHECKPOINT_MIN_SIZE: '-5mb'"),
        ({"REPLAY_CHECKPOINT_MIN_SIZE": "5xb"}, "REPLAY_CHECKPOINT_MIN_SIZE: '5xb'"),
        ({"REPLAY_CHECKPOINT_PERCENTAGE": "-1"}, "REPLAY_CHECKPOINT_PERCENTAGE: '-1' (a whole number of percent, 0 to"),
        ({"REPLAY_CHECKPOINT_PERCENTAGE": "half"}, "REPLAY_CHECKPOINT_PERCENTAGE: 'half'"),
    ],
)
def test_bad_checkpoint_triggers_are_one_line_errors(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        Config.load({}, environ)


def test_the_largest_body_is_read_from_the_environment() -> None:
    assert Config().max_body_size == 5 * 1024**3
    assert Config.load({}, {"REPLAY_MAX_BODY_SIZE": "64mb"}).max_body_size == 64 * 1024**2


# --- GATEWAY_LISTEN and INIT_DIR (LocalStack's variables) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:4566", (("0.0.0.0", 4566),)),
        ("127.0.0.1:4566,127.0.0.1:4567", (("127.0.0.1", 4566), ("127.0.0.1", 4567))),
        (":4510", (("0.0.0.0", 4510),)),
        ("localhost", (("localhost", 4566),)),
        ("[::]:4566", (("::", 4566),)),
        (" 127.0.0.1:1 , 127.0.0.1:1 ", (("127.0.0.1", 1),)),
    ],
)
def test_gateway_listen_names_the_addresses_to_bind(value: str, expected: tuple[tuple[str, int], ...]) -> None:
    config = Config.load({}, {"GATEWAY_LISTEN": value})
    assert config.addresses == expected and (config.host, config.port) == expected[0]


@pytest.mark.parametrize("value", ["127.0.0.1:http", "127.0.0.1:70000", "a,,b", "::1:4566", "[::1", "[::1]4566"])
def test_a_bad_gateway_listen_is_one_clear_error(value: str) -> None:
    with pytest.raises(ConfigError, match="GATEWAY_LISTEN") as caught:
        Config.load({}, {"GATEWAY_LISTEN": value})
    assert "\n" not in str(caught.value)


def test_host_and_port_flags_win_over_gateway_listen() -> None:
    config = Config.load({"port": 5000}, {"GATEWAY_LISTEN": "0.0.0.0:4566,0.0.0.0:4567"})
    assert config.addresses == (("127.0.0.1", 5000),)
    assert Config().addresses == (("127.0.0.1", 4566),)


def test_init_dir_comes_from_the_flag_or_the_environment(tmp_path: Path) -> None:
    assert Config.load({}, {"INIT_DIR": str(tmp_path)}).init_dir == tmp_path
    assert Config.load({"init_dir": str(tmp_path / "x")}, {"INIT_DIR": str(tmp_path)}).init_dir == tmp_path / "x"


def test_replication_settings_come_from_flags_or_the_environment() -> None:
    config = Config.load(
        {"replicate": "s3://team/ci", "replicate_interval": "500ms", "endpoint_url": "http://s3.test:9000"},
        {"REPLAY_REPLICATE_RETENTION": "2h", "REPLAY_REPLICATE_BACKLOG": "64mb"},
    )
    assert config.replicate_url == "s3://team/ci" and config.replicate_interval == 0.5
    assert config.replicate_retention == 7200.0 and config.replicate_backlog == 64 * 1024**2
    assert config.endpoint_url == "http://s3.test:9000"
    default = Config.load({}, {"REPLAY_REPLICATE_URL": "s3://team/main"})
    assert default.replicate_url == "s3://team/main" and default.replicate_interval == 1.0
    assert default.replicate_retention == 72 * 3600.0 and not Config.load({}, {}).replicate_url


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1", 1.0), ("1.5s", 1.5), ("250ms", 0.25), ("10m", 600.0), ("72h", 259200.0), ("7d", 604800.0)],
)
def test_durations_take_units(text: str, seconds: float) -> None:
    assert parse_duration("--replicate-interval", text) == seconds


@pytest.mark.parametrize("text", ["0", "-1s", "1y", "s", "", "nan", "inf", "1 hour"])
def test_bad_durations_are_refused_with_the_setting_named(text: str) -> None:
    with pytest.raises(ConfigError, match="REPLAY_REPLICATE_INTERVAL"):
        Config.load({}, {"REPLAY_REPLICATE_INTERVAL": text or " x"})
