"""The one typed configuration object, read once from flags and the environment.

A flag wins over its environment variable, which wins over the default.  Every
user-facing choice is an :class:`enum.Enum` parsed here, and a bad value is a
:class:`~replay.errors.ConfigError` whose message lists the valid values.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from .errors import ConfigError
from .scope import PersistenceScope, ServiceSelection

__all__ = [
    "BackendKind",
    "Config",
    "FsyncPolicy",
    "LoadStrategy",
    "SaveStrategy",
    "parse_bool",
    "parse_duration",
    "parse_enum",
    "parse_size",
]

LOG_FILE_NAME = "recorded_api_calls.json"
REPORT_FILE_NAME = "replay_report.json"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class FsyncPolicy(str, enum.Enum):
    """When appended entries are forced to disk (Redis ``appendfsync`` meaning).

    ``ALWAYS``: before the call is acknowledged; nothing acknowledged is lost.
    ``EVERYSEC``: by a background thread once a second; a power loss may cost ~1 s.
    ``NO``: left to the operating system; a kill -9 still loses nothing written.
    """

    ALWAYS = "always"
    EVERYSEC = "everysec"
    NO = "no"


class BackendKind(str, enum.Enum):
    """How state is persisted: ``replay`` records and replays API calls, ``snapshot`` saves serialised state."""

    REPLAY = "replay"
    SNAPSHOT = "snapshot"


class SaveStrategy(str, enum.Enum):
    """When the snapshot backend saves (``SNAPSHOT_SAVE_STRATEGY``, LocalStack's names).

    ``ON_REQUEST``: after every state-changing call, before it is acknowledged.
    ``ON_SHUTDOWN``: once, when the server stops.
    ``SCHEDULED`` (default): every ``SNAPSHOT_FLUSH_INTERVAL`` seconds, the services changed since the last save.
    ``MANUAL``: only when asked through ``POST /_localstack/state/save``.
    """

    ON_REQUEST = "ON_REQUEST"
    ON_SHUTDOWN = "ON_SHUTDOWN"
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"


class LoadStrategy(str, enum.Enum):
    """When the snapshot backend loads (``SNAPSHOT_LOAD_STRATEGY``).

    ``ON_REQUEST`` (default): a service's snapshot is loaded on the first request to that service.
    ``ON_STARTUP``: every snapshot, before the first request.
    ``MANUAL``: only when asked through ``POST /_localstack/state/load``.
    """

    ON_REQUEST = "ON_REQUEST"
    ON_STARTUP = "ON_STARTUP"
    MANUAL = "MANUAL"


E = TypeVar("E", bound=enum.Enum)


def parse_enum(kind: type[E], name: str, value: str) -> E:
    """Parse ``value`` (case-insensitive) as a member of ``kind``."""
    wanted = value.strip().lower()
    for member in kind:
        if str(member.value).lower() == wanted:
            return member
    raise ConfigError(name, value, tuple(str(member.value) for member in kind))


def parse_bool(name: str, value: str) -> bool:
    """Parse ``1/true/yes/on`` and ``0/false/no/off`` (case-insensitive)."""
    wanted = value.strip().lower()
    if wanted in _TRUE:
        return True
    if wanted in _FALSE:
        return False
    raise ConfigError(name, value, _TRUE + _FALSE)


def _parse_port(name: str, value: str | int) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(name, value, hint="a port number from 0 to 65535") from None
    if not 0 <= port <= 65535:
        raise ConfigError(name, value, hint="a port number from 0 to 65535")
    return port


DEFAULT_INIT_DIR = "/etc/localstack/init"
"""Where LocalStack's image keeps init scripts; used when it exists and ``INIT_DIR`` names no other folder."""


def parse_listen(name: str, value: str) -> tuple[tuple[str, int], ...]:
    """``GATEWAY_LISTEN``: comma-separated ``host:port`` (``[::]:4566`` for IPv6; ``:4566`` is every interface,
    a bare host takes port 4566), as LocalStack reads it.

    :raises ConfigError: an entry is empty, its port is not a port, or an IPv6 address lacks its brackets.
    """
    addresses: list[tuple[str, int]] = []
    for entry in (part.strip() for part in value.split(",")):
        hint = "comma-separated host:port, e.g. 0.0.0.0:4566,127.0.0.1:4567 ([::]:4566 for IPv6)"
        if not entry:
            raise ConfigError(name, value, hint=f"an empty address; {hint}")
        if entry.startswith("["):
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ConfigError(name, value, hint=f"{entry!r} is not [IPv6]:port; {hint}")
            port_text = rest[1:] if rest else "4566"
        elif entry.count(":") > 1:
            raise ConfigError(name, value, hint=f"{entry!r}: put an IPv6 address in brackets; {hint}")
        else:
            host, _, port_text = entry.partition(":")
            port_text = port_text or "4566"
        addresses.append((host or "0.0.0.0", _parse_port(name, port_text)))
    return tuple(dict.fromkeys(addresses))


def _parse_list(value: str) -> tuple[str, ...]:
    """A comma-separated list, blanks left out."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _parse_interval(name: str, value: object) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        raise ConfigError(name, value, hint="a number of seconds greater than 0") from None
    if not seconds > 0:
        raise ConfigError(name, value, hint="a number of seconds greater than 0")
    return seconds


_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _number_and_unit(value: object) -> tuple[float, str]:
    """``"64mb"`` -> ``(64.0, "mb")``; a number that does not parse is -1."""
    text = str(value).strip().lower().replace(" ", "")
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    try:
        return float(digits), text[len(digits) :]
    except ValueError:
        return -1.0, text[len(digits) :]


def parse_duration(name: str, value: object) -> float:
    """A duration in seconds: ``1.5``, ``500ms``, ``1s``, ``10m``, ``72h``, ``7d`` (greater than 0)."""
    number, unit = _number_and_unit(value)
    if unit not in _DURATION_UNITS or not number > 0 or number != number or number == float("inf"):
        raise ConfigError(name, value, hint="a duration such as 1s, 500ms, 10m or 72h")
    return number * _DURATION_UNITS[unit]


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
    "gib": 1024**3,
}


def parse_size(name: str, value: object) -> int:
    """A size in bytes: ``1048576``, ``512kb``, ``64mb``, ``1gb`` (Redis's units: ``k`` is 1000, ``kb`` 1024)."""
    number, unit = _number_and_unit(value)
    if unit not in _UNITS or not number >= 0:
        raise ConfigError(name, value, hint="a size such as 1048576, 512kb, 64mb or 1gb")
    return int(number * _UNITS[unit])


def _parse_percentage(name: str, value: object) -> int:
    try:
        percentage = int(str(value).strip().rstrip("%"))
    except ValueError:
        percentage = -1
    if percentage < 0:
        raise ConfigError(name, value, hint="a whole number of percent, 0 to turn automatic checkpoints off")
    return percentage


_MIN_KEY_BYTES = 16


def _parse_key(name: str, key: bytes) -> bytes:
    key = key.strip()
    if len(key) < _MIN_KEY_BYTES:
        raise ConfigError(name, f"<{len(key)} bytes>", hint=f"an archive key of at least {_MIN_KEY_BYTES} bytes")
    return key


def _read_key_file(name: str, path: Path) -> bytes:
    try:
        return _parse_key(name, path.read_bytes())
    except OSError as exc:
        raise ConfigError(name, str(path), hint=f"a readable key file ({exc.strerror or exc})") from None


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything ``replay`` is told from outside, validated.

    :ivar host: interface ``replay serve`` binds (``--host``).
    :ivar port: port ``replay serve`` binds (``--port``; 0 picks a free one).
    :ivar data_dir: where the call log lives (``--data-dir`` / ``DATA_DIR``).
    :ivar persistence: record and restore at all (``PERSISTENCE``).
    :ivar seed: run each recorded call with its own clock and random stream, so that its replay
        makes the same values (``--no-seed`` / ``REPLAY_SEED=0`` turns it off).
    :ivar backend: the persistence strategy (``--backend`` / ``PERSISTENCE_BACKEND``).
    :ivar fsync: the log's fsync policy (``--fsync`` / ``REPLAY_FSYNC``).
    :ivar save_strategy: ``SNAPSHOT_SAVE_STRATEGY`` (snapshot backend).
    :ivar load_strategy: ``SNAPSHOT_LOAD_STRATEGY``: when saved state is loaded (snapshot backend; for the replay
        backend's checkpoints, ``ON_STARTUP`` loads every service at start, anything else on first use).
    :ivar flush_interval: ``SNAPSHOT_FLUSH_INTERVAL``, seconds between scheduled saves.
    :ivar checkpoint_percentage: ``REPLAY_CHECKPOINT_PERCENTAGE``: a checkpoint is taken when the
        calls logged since the last one reach this share of its size (0: never automatically).
    :ivar checkpoint_min_size: ``REPLAY_CHECKPOINT_MIN_SIZE``: ... and at least this many bytes.
    :ivar services: the services persisted (``--services`` / ``PERSISTENCE_SERVICES``; default: every one).
    :ivar scope: what of them is persisted (``--scope`` / ``PERSISTENCE_SCOPE``): ``all``, or
        ``infrastructure`` (resources and configuration, not messages, objects, items ...).
    :ivar archive_key: the key archives are signed and checked with (``--key-file`` / ``REPLAY_ARCHIVE_KEY``).
    :ivar call_timeout: ``REPLAY_CALL_TIMEOUT``: seconds one replayed call may take before a restore stops.
    :ivar allowed_hosts: ``REPLAY_ALLOWED_HOSTS``: more ``Host`` names control endpoints answer (comma-separated).
    :ivar extra_origins: ``EXTRA_CORS_ALLOWED_ORIGINS``: more origins allowed to call control endpoints.
    :ivar cors_checks: ``False`` when ``DISABLE_CORS_CHECKS`` is set: any ``Origin`` may call control endpoints.
    :ivar max_body_size: ``REPLAY_MAX_BODY_SIZE``: the largest request body taken (larger: 413).
    :ivar listen: ``GATEWAY_LISTEN``: the addresses ``replay serve`` binds, as LocalStack's variable gives them
        (``0.0.0.0:4566,127.0.0.1:4567``); empty: ``host`` and ``port``.  ``--host`` or ``--port`` win over it.
    :ivar init_dir: ``--init-dir`` / ``INIT_DIR``: the folder of init scripts (``boot.d``, ``start.d``, ``ready.d``,
        ``shutdown.d``); by default ``/etc/localstack/init`` when it exists, else none.
    :ivar replicate_url: ``--replicate`` / ``REPLAY_REPLICATE_URL``: ``s3://bucket/prefix`` to replicate the state
        to continuously (:mod:`replay.share.replicator`); empty: no replication.
    :ivar replicate_interval: ``--replicate-interval`` / ``REPLAY_REPLICATE_INTERVAL``: seconds between shipments.
    :ivar replicate_retention: ``--replicate-retention`` / ``REPLAY_REPLICATE_RETENTION``: seconds of restore
        points the replica keeps.
    :ivar replicate_backlog: ``--replicate-backlog`` / ``REPLAY_REPLICATE_BACKLOG``: bytes kept on local disk
        while the replica cannot be reached.
    :ivar endpoint_url: ``--endpoint-url``: the replica's S3 endpoint (else boto3's ``AWS_ENDPOINT_URL_S3`` /
        ``AWS_ENDPOINT_URL``, else AWS).
    """

    host: str = "127.0.0.1"
    port: int = 4566
    data_dir: Path = Path("volume")
    persistence: bool = True
    seed: bool = True
    backend: BackendKind = BackendKind.REPLAY
    fsync: FsyncPolicy = FsyncPolicy.EVERYSEC
    save_strategy: SaveStrategy = SaveStrategy.SCHEDULED
    load_strategy: LoadStrategy = LoadStrategy.ON_REQUEST
    flush_interval: float = 15.0
    checkpoint_percentage: int = 100
    checkpoint_min_size: int = 1024**2
    services: ServiceSelection = dataclasses.field(default_factory=ServiceSelection)
    scope: PersistenceScope = PersistenceScope.ALL
    archive_key: bytes | None = dataclasses.field(default=None, repr=False)
    call_timeout: float = 60.0
    allowed_hosts: tuple[str, ...] = ()
    extra_origins: tuple[str, ...] = ()
    cors_checks: bool = True
    max_body_size: int = 5 * 1024**3
    listen: tuple[tuple[str, int], ...] = ()
    init_dir: Path | None = None
    replicate_url: str = ""
    replicate_interval: float = 1.0
    replicate_retention: float = 72 * 3600.0
    replicate_backlog: int = 1024**3
    endpoint_url: str | None = None

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """Where ``replay serve`` listens: ``GATEWAY_LISTEN``'s addresses, else ``(host, port)``."""
        return self.listen or ((self.host, self.port),)

    @property
    def log_path(self) -> Path:
        """``<data dir>/recorded_api_calls.json``."""
        return self.data_dir / LOG_FILE_NAME

    @classmethod
    def load(
        cls,
        flags: Mapping[str, object | None] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Build the configuration from ``flags`` (``None`` values are unset) and ``environ``.

        Flag names are the long option names without dashes (``data_dir``);
        environment names are ``DATA_DIR``, ``PERSISTENCE``, ``PERSISTENCE_BACKEND``,
        ``REPLAY_FSYNC``, ``SNAPSHOT_SAVE_STRATEGY``, ``SNAPSHOT_LOAD_STRATEGY``,
        ``SNAPSHOT_FLUSH_INTERVAL``, ``REPLAY_CALL_TIMEOUT``, ``REPLAY_ALLOWED_HOSTS``,
        ``EXTRA_CORS_ALLOWED_ORIGINS``, ``DISABLE_CORS_CHECKS``, ``REPLAY_MAX_BODY_SIZE``,
        ``REPLAY_CHECKPOINT_PERCENTAGE``,
        ``REPLAY_CHECKPOINT_MIN_SIZE`` and
        ``REPLAY_ARCHIVE_KEY`` (flag: ``key_file``, a file holding the key).
        Selective persistence: ``PERSISTENCE_SERVICES`` (flag ``services``) and ``PERSISTENCE_SCOPE`` (``scope``).
        Replication: ``REPLAY_REPLICATE_URL`` (flag ``replicate``), ``REPLAY_REPLICATE_INTERVAL``,
        ``REPLAY_REPLICATE_RETENTION``, ``REPLAY_REPLICATE_BACKLOG``.
        """
        flags = {key: value for key, value in (flags or {}).items() if value is not None}
        environ = environ if environ is not None else {}

        def pick(flag: str, env: str | None) -> tuple[str, object] | None:
            if flag in flags:
                return "--" + flag.replace("_", "-"), flags[flag]
            if env is not None and environ.get(env, "") != "":
                return env, environ[env]
            return None

        values: dict[str, object] = {}
        if (found := pick("host", None)) is not None:
            values["host"] = str(found[1])
        if (found := pick("port", None)) is not None:
            values["port"] = _parse_port(found[0], found[1])  # type: ignore[arg-type]
        if "host" not in flags and "port" not in flags and environ.get("GATEWAY_LISTEN", "").strip():
            values["listen"] = parse_listen("GATEWAY_LISTEN", environ["GATEWAY_LISTEN"])
            values["host"], values["port"] = values["listen"][0]  # type: ignore[index]
        if (found := pick("init_dir", "INIT_DIR")) is not None:
            values["init_dir"] = Path(str(found[1])).expanduser()
        elif Path(DEFAULT_INIT_DIR).is_dir():
            values["init_dir"] = Path(DEFAULT_INIT_DIR)
        if (found := pick("data_dir", "DATA_DIR")) is not None:
            values["data_dir"] = Path(str(found[1])).expanduser()
        if (found := pick("persistence", "PERSISTENCE")) is not None:
            name, raw = found
            values["persistence"] = raw if isinstance(raw, bool) else parse_bool(name, str(raw))
        if (found := pick("seed", "REPLAY_SEED")) is not None:
            name, raw = found
            values["seed"] = raw if isinstance(raw, bool) else parse_bool(name, str(raw))
        if (found := pick("backend", "PERSISTENCE_BACKEND")) is not None:
            values["backend"] = parse_enum(BackendKind, found[0], str(found[1]))
        if (found := pick("fsync", "REPLAY_FSYNC")) is not None:
            values["fsync"] = parse_enum(FsyncPolicy, found[0], str(found[1]))
        if (found := pick("save_strategy", "SNAPSHOT_SAVE_STRATEGY")) is not None:
            values["save_strategy"] = parse_enum(SaveStrategy, found[0], str(found[1]))
        if (found := pick("load_strategy", "SNAPSHOT_LOAD_STRATEGY")) is not None:
            values["load_strategy"] = parse_enum(LoadStrategy, found[0], str(found[1]))
        if (found := pick("flush_interval", "SNAPSHOT_FLUSH_INTERVAL")) is not None:
            values["flush_interval"] = _parse_interval(found[0], found[1])
        if (found := pick("call_timeout", "REPLAY_CALL_TIMEOUT")) is not None:
            values["call_timeout"] = _parse_interval(found[0], found[1])
        if (found := pick("max_body_size", "REPLAY_MAX_BODY_SIZE")) is not None:
            values["max_body_size"] = parse_size(found[0], found[1])
        if (found := pick("allowed_hosts", "REPLAY_ALLOWED_HOSTS")) is not None:
            values["allowed_hosts"] = _parse_list(str(found[1]))
        if (found := pick("extra_origins", "EXTRA_CORS_ALLOWED_ORIGINS")) is not None:
            values["extra_origins"] = _parse_list(str(found[1]))
        if (found := pick("disable_cors_checks", "DISABLE_CORS_CHECKS")) is not None:
            name, raw = found
            values["cors_checks"] = not (raw if isinstance(raw, bool) else parse_bool(name, str(raw)))
        if (found := pick("checkpoint_percentage", "REPLAY_CHECKPOINT_PERCENTAGE")) is not None:
            values["checkpoint_percentage"] = _parse_percentage(found[0], found[1])
        if (found := pick("checkpoint_min_size", "REPLAY_CHECKPOINT_MIN_SIZE")) is not None:
            values["checkpoint_min_size"] = parse_size(found[0], found[1])
        if (found := pick("services", "PERSISTENCE_SERVICES")) is not None:
            values["services"] = ServiceSelection.parse(found[0], str(found[1]))
        if (found := pick("scope", "PERSISTENCE_SCOPE")) is not None:
            values["scope"] = parse_enum(PersistenceScope, found[0], str(found[1]))
        if (found := pick("replicate", "REPLAY_REPLICATE_URL")) is not None:
            values["replicate_url"] = str(found[1]).strip()
        if (found := pick("replicate_interval", "REPLAY_REPLICATE_INTERVAL")) is not None:
            values["replicate_interval"] = parse_duration(found[0], found[1])
        if (found := pick("replicate_retention", "REPLAY_REPLICATE_RETENTION")) is not None:
            values["replicate_retention"] = parse_duration(found[0], found[1])
        if (found := pick("replicate_backlog", "REPLAY_REPLICATE_BACKLOG")) is not None:
            values["replicate_backlog"] = parse_size(found[0], found[1])
        if (found := pick("endpoint_url", None)) is not None:
            values["endpoint_url"] = str(found[1])
        if "key_file" in flags:
            values["archive_key"] = _read_key_file("--key-file", Path(str(flags["key_file"])).expanduser())
        elif environ.get("REPLAY_ARCHIVE_KEY", ""):
            values["archive_key"] = _parse_key("REPLAY_ARCHIVE_KEY", environ["REPLAY_ARCHIVE_KEY"].encode("utf-8"))
        return cls(**values)  # type: ignore[arg-type]
