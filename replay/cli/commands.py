"""The ``replay`` command: ``serve``, ``restore``, ``verify``, ``compact``, ``inspect``, ``export`` and ``import``.

Output for people goes to stderr through logging (and a progress line); a
machine-readable summary goes to stdout with ``--json``.  Exit status: 0 on
success, 1 when the work failed (a corrupt log, an unreachable target, a port
that cannot be bound, calls that failed or, for ``verify``, diverged on replay),
2 for bad usage or configuration.  An error is one line on stderr, ``replay: error: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import io
import logging
import math
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn, TextIO

import orjson
import requests

from ..config import BackendKind, Config, FsyncPolicy
from ..errors import ConfigError, ReplayError, SourceError, TransportError
from ..record.log import CallLog
from ..restore.replayer import Progress, Replayer
from ..restore.transport import HTTPTransport, WSGITransport
from ..routes import COMPACT_PATH
from ..share.archive import read_manifest as read_archive_manifest
from ..share.remote import is_remote
from ..share.replica import is_replica
from ..share.sources import Source, SourceKind, identify
from ..storage.checkpoint import finish_interrupted, read_manifest, tail_start
from ..storage.datadir import DataDirLock, owner
from ..storage.rewrite import compact_in_place
from ..version import __version__
from .display import (
    describe_archive,
    format_archive,
    format_compaction,
    format_recovery,
    format_replica,
    format_report,
    format_snapshots,
    format_summary,
    size,
)
from .parser import build_parser

__all__ = ["main"]

logger = logging.getLogger("replay.cli")


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError("--log-level", level, ("DEBUG", "INFO", "WARNING", "ERROR"))
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    if numeric > logging.DEBUG:
        for name in ("werkzeug", "botocore", "boto3", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)


class _ProgressLine:
    """Renders replay progress on a terminal line, or as a log line every few seconds elsewhere.

    Use it as a context manager: a line left unfinished (the replay stopped on an error) is ended
    on the way out, so that what is printed next starts a line of its own.
    """

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = stream.isatty()
        self.last_line = 0.0
        self.open = False  # a terminal line was drawn and not ended

    def __call__(self, progress: Progress) -> None:
        done = progress.position >= progress.size
        if done:
            share, left = "100%", f", done in {progress.elapsed:.1f} s"
        else:
            remaining = progress.remaining
            # floored: "100%" only once the whole log is read
            share = f"{math.floor(progress.fraction * 100):.0f}%"
            left = f", about {remaining:.0f} s left" if remaining is not None else ""
        text = f"{self.label}: {progress.calls} calls, {share} of the log, {progress.rate:.0f} calls/s{left}"
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            self.open = not done
            if done:
                self.stream.write("\n")
            self.stream.flush()
        elif time.monotonic() - self.last_line >= 5.0 or done:
            self.last_line = time.monotonic()
            logger.info("%s", text)

    def __enter__(self) -> _ProgressLine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def _data_dir(path: str | None) -> Path:
    return Path(path or os.environ.get("DATA_DIR") or "volume").expanduser()


def _source(path: str | None) -> Source:
    return identify(_data_dir(path))


def _log_path(path: str | None) -> Path:
    """The call log of a data dir, or a log file given directly (commands that rewrite it)."""
    source = _source(path)
    if source.kind is SourceKind.LOCALSTACK:
        raise SourceError(source.path, f"{source.path} is a LocalStack log; `replay import` it into a data dir first")
    if source.kind not in (SourceKind.LOG, SourceKind.REPLAY):
        source.segments()  # says what it holds instead
    return source.log_path


def _restore(args: argparse.Namespace) -> int:
    segments = _source(args.path).segments()
    transport = HTTPTransport(args.target, timeout=args.timeout, retries=args.retries)
    progress = None if args.quiet else _ProgressLine(sys.stderr, f"restoring into {args.target}")
    try:
        with progress or contextlib.nullcontext():
            replayer = Replayer(transport, progress=progress, progress_interval=0.2, mapping=not args.no_mapping)
            report = replayer.replay_segments(segments)
    finally:
        transport.close()
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict()).decode() + "\n")
    return 1 if report.failures else 0


@contextlib.contextmanager
def _stdout_is_ours() -> Iterator[None]:
    """Inside the block, whatever else writes to stdout (an emulator's prints, at the descriptor too)
    goes to stderr: stdout carries this command's own output only."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def _quiet(name: str, level: int) -> Iterator[None]:
    """Logger ``name`` at ``level`` inside the block (as it was after it)."""
    chosen = logging.getLogger(name)
    before = chosen.level
    chosen.setLevel(level)
    try:
        yield
    finally:
        chosen.setLevel(before)


def _verify(args: argparse.Namespace) -> int:
    from ..serve.emulators import load_emulator

    segments = _source(args.path).segments()
    progress = None if args.quiet else _ProgressLine(sys.stderr, f"verifying {segments[-1].path}")
    with _stdout_is_ours(), _quiet("replay.replayer", logging.ERROR):  # the report below says it all
        emulator = load_emulator(args.app, seed=Config.load({}, os.environ).seed)
        if emulator.reset is not None:
            emulator.reset()
        timeout = Config.load({}, os.environ).call_timeout
        replayer = Replayer(
            WSGITransport(emulator.app),
            progress=progress,
            progress_interval=0.2,
            seeder=emulator.seeder,
            call_timeout=timeout,
        )
        with progress or contextlib.nullcontext():
            report = replayer.replay_segments(segments)
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict()).decode() + "\n")
    else:
        sys.stdout.write(format_report(report))
    return 1 if report.failures or report.divergences else 0


def _warn_about_snapshot_settings(config: Config, args: argparse.Namespace) -> None:
    """LocalStack users often set only ``SNAPSHOT_SAVE_STRATEGY``: say it does nothing without the snapshot backend."""
    if config.backend is BackendKind.SNAPSHOT or not config.persistence:
        return
    given = [
        name
        for name, flag in (
            ("SNAPSHOT_SAVE_STRATEGY", args.save_strategy),
            ("SNAPSHOT_LOAD_STRATEGY", args.load_strategy),
        )
        if flag is not None or os.environ.get(name, "")
    ]
    if given:
        logger.warning(
            "%s set, but SNAPSHOT_SAVE_STRATEGY and SNAPSHOT_LOAD_STRATEGY apply to the snapshot backend only, "
            "and this server uses PERSISTENCE_BACKEND=%s: set PERSISTENCE_BACKEND=snapshot to use them",
            " and ".join(given),
            config.backend.value,
        )


def _serve(args: argparse.Namespace) -> int:
    from ..serve.emulators import load_emulator
    from ..serve.server import Server

    config = Config.load(
        {
            "host": args.host,
            "port": args.port,
            "data_dir": args.data_dir,
            "backend": args.backend,
            "fsync": args.fsync,
            "persistence": args.persistence,
            "seed": args.seed,
            "save_strategy": args.save_strategy,
            "load_strategy": args.load_strategy,
            "flush_interval": args.flush_interval,
            "checkpoint_percentage": args.checkpoint_percentage,
            "checkpoint_min_size": args.checkpoint_min_size,
            "services": args.services,
            "scope": args.scope,
            "init_dir": args.init_dir,
            "replicate": args.replicate,
            "replicate_interval": args.replicate_interval,
            "replicate_retention": args.replicate_retention,
            "replicate_backlog": args.replicate_backlog,
            "endpoint_url": args.endpoint_url,
        },
        os.environ,
    )
    _warn_about_snapshot_settings(config, args)
    emulator = load_emulator(args.app, seed=config.seed)
    said = io.StringIO()  # werkzeug prints why it could not bind, then exits: that is said here, in one line
    try:
        with contextlib.redirect_stderr(said):
            server = Server(config, emulator, on_ready=_say_ready)
    except (OSError, SystemExit) as exc:
        cause = _bind_error(exc)
        if cause is None:
            sys.stderr.write(said.getvalue())
            raise
        sys.stderr.write(error_line(_cannot_listen(cause, config.addresses)))
        return 1
    sys.stderr.write(said.getvalue())
    logger.info(
        "replay %s serving %s on %s (data dir %s, persistence %s, backend %s, fsync %s)",
        __version__,
        args.app,
        server.url,
        config.data_dir,
        "on" if config.persistence else "off",
        config.backend.value,
        config.fsync.value,
    )
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:  # a second signal must not interrupt the shutdown itself
            stopping = True
            logger.info("%s received; stopping", signal.Signals(signum).name)
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve()
    global _SERVED
    _SERVED = True
    if server.failure is not None:
        sys.stderr.write(error_line(server.failure))
        return 1
    return 0


_SERVED = False  # a server ran and closed its state: the process may end without tearing the emulator down


def _say_ready() -> None:
    """``Ready.`` on a line of its own on stdout, as LocalStack prints it (Testcontainers waits for it)."""
    sys.stdout.write("Ready.\n")
    sys.stdout.flush()


def _exit_now(code: int) -> NoReturn:
    """End the process without the interpreter's teardown, once a server has closed its state (durable).

    Freeing a big emulator's objects one by one at exit takes seconds; nothing of replay's is left to do
    then (the log is synced and closed, the data dir let go), so SIGTERM ends the process within a second.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_BIND_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def _bind_error(exc: BaseException) -> OSError | None:
    """The OSError of a socket that could not be bound, if that is what ``exc`` is.

    werkzeug's ``make_server`` prints such an error and calls ``sys.exit(1)`` from its
    ``except OSError`` block, so the ``SystemExit`` carries the OSError as its context;
    a werkzeug that lets it through raises it as is.  An OSError naming a file (the data
    dir) is not a bind error.
    """
    if isinstance(exc, SystemExit):
        context = exc.__context__
        return context if isinstance(context, OSError) and context.filename is None else None
    if isinstance(exc, OSError) and exc.filename is None and exc.errno in _BIND_ERRORS:
        return exc
    return None


def _where(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _culprit(addresses: Sequence[tuple[str, int]], code: int | None) -> tuple[str, int] | None:
    """Which of ``addresses`` cannot be bound with error ``code`` (tried again here); ``None``: cannot tell."""
    if len(addresses) == 1:
        return addresses[0]
    for host, port in addresses:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds
                probe.bind((host, port))
        except OSError as exc:
            if exc.errno == code:
                return host, port
    return None


def _cannot_listen(error: OSError, addresses: Sequence[tuple[str, int]]) -> str:
    """Why ``replay serve`` could not listen, in one line that names the port and says what to do."""
    culprit = _culprit(addresses, error.errno)
    if culprit is None:
        where = ", ".join(_where(host, port) for host, port in addresses)
        return (
            f"cannot listen on {where}: {describe_os_error(error)}; "
            "choose other addresses with --host and --port (or the GATEWAY_LISTEN variable)"
        )
    host, port = culprit
    choose = f"with --port N (or the GATEWAY_LISTEN variable: GATEWAY_LISTEN={_where(host, 'N')})"
    if error.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use by another program: stop it, or choose another port {choose}; "
            "--port 0 picks a free one"
        )
    if error.errno == errno.EACCES and 0 < port < 1024:
        return (
            f"port {port} on {host} is a privileged port (below 1024): listening there needs root or "
            f"CAP_NET_BIND_SERVICE; choose a port from 1024 up {choose}"
        )
    if error.errno == errno.EACCES:
        return f"port {port} on {host}: permission denied; choose another port {choose}"
    if error.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {_where(host, port)}: {host} is not an address of this machine; "
            "choose another with --host (or the GATEWAY_LISTEN variable)"
        )
    return f"cannot listen on {_where(host, port)}: {describe_os_error(error)}"


def _reason(exc: BaseException) -> str:
    """What went wrong underneath a requests error (``Connection refused``), not urllib3's account of its pool."""
    reason, seen = str(exc), 0
    current: BaseException | None = exc
    while current is not None and seen < 20:
        if isinstance(current, OSError) and current.strerror:
            reason = current.strerror
        current, seen = current.__cause__ or current.__context__, seen + 1
    return reason


def _compact(args: argparse.Namespace) -> int:
    log_path = _log_path(args.path)
    data_dir = log_path.parent
    holder = owner(data_dir)
    if holder is not None:
        url = holder.get("url")
        if not url:
            raise ReplayError(f"{data_dir} is in use by process {holder.get('pid')}, which has no URL to ask")
        logger.info("%s is served by %s (pid %s): asking it to compact", data_dir, url, holder.get("pid"))
        try:
            answer = requests.post(f"{url}{COMPACT_PATH}", timeout=args.timeout)
        except requests.RequestException as exc:
            raise TransportError(url, f"cannot reach the server holding {data_dir} at {url}: {_reason(exc)}") from None
        try:
            result = answer.json()
        except ValueError:
            raise ReplayError(f"{url}{COMPACT_PATH} answered {answer.status_code} without JSON") from None
        if not answer.ok:
            raise ReplayError(f"the server at {url} could not compact: {result.get('message', answer.status_code)}")
    else:
        with DataDirLock(data_dir, command="replay compact"):
            manifest = read_manifest(data_dir)
            start = tail_start(manifest, log_path)
            with CallLog(log_path, FsyncPolicy.NO, exclusive=True) as log:
                start = finish_interrupted(log, manifest, start)
                result = {"status": "ok", "kind": "log", **compact_in_place(log, start).to_dict()}
    if args.json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
    else:
        sys.stdout.write(format_compaction(result))
    return 0


def _moment(name: str, value: str | None, zone_required: bool = False) -> float | None:
    """A time given as Unix seconds or ISO 8601 (without a zone: UTC, unless ``zone_required``)."""
    if value is None:
        return None
    hint = "an ISO 8601 time with a zone such as 2026-12-02T07:00:00Z, or Unix seconds"
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
            raise ConfigError(name, value, hint=hint)
        return seconds
    try:
        moment = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(name, value, hint=hint) from None
    if moment.tzinfo is None:
        if zone_required:
            raise ConfigError(name, value, hint=f"{hint} (a time without a zone is ambiguous)")
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _since(value: str | None) -> float | None:
    return _moment("--since", value)


def _inspect(args: argparse.Namespace) -> int:
    from .summary import calls, describe_snapshots, summarise

    if args.path is not None and is_remote(args.path):
        return _inspect_replica(args)
    since = _since(args.since)
    source = _source(args.path)
    if source.kind is SourceKind.ARCHIVE and not args.calls:
        archived = read_archive_manifest(source.path)  # every member checked; nothing written
        document = {"archive": str(source.path), **archived.to_dict()}
        sys.stdout.write(orjson.dumps(document).decode() + "\n" if args.json else format_archive(document))
        return 0
    if source.kind is SourceKind.SNAPSHOT and not args.calls:
        described = describe_snapshots(source.path)
        sys.stdout.write(orjson.dumps(described).decode() + "\n" if args.json else format_snapshots(described))
        return 0
    segments = source.segments()
    log_path = source.log_path
    if args.calls:
        for call in calls(segments, args.service, args.operation, since):
            sys.stdout.write((orjson.dumps(call.to_dict()).decode() if args.json else call.format()) + "\n")
        return 0
    manifest = read_manifest(log_path.parent) if len(segments) > 1 else None
    checkpoint: dict[str, object] | None = None
    if manifest is not None:
        checkpoint = {
            "checkpoint": manifest.checkpoint,
            "services": list(manifest.services),
            "folded": manifest.folded,
            "calls": manifest.calls,
            "created": manifest.created,
        }
    summary = summarise(segments, checkpoint)
    if args.json:
        sys.stdout.write(orjson.dumps(summary.to_dict()).decode() + "\n")
    else:
        sys.stdout.write(format_summary(summary))
    return 0


def _inspect_replica(args: argparse.Namespace) -> int:
    from ..share.recovery import describe_replica

    if args.calls:
        raise ConfigError("--calls", "s3://", hint="list a replica's calls after restoring it: replay import --at ...")
    described = describe_replica(args.path, args.endpoint_url)
    sys.stdout.write(orjson.dumps(described).decode() + "\n" if args.json else format_replica(described))
    return 0


def _key(args: argparse.Namespace) -> bytes | None:
    return Config.load({"key_file": args.key_file}, os.environ).archive_key


def _export(args: argparse.Namespace) -> int:
    from ..share.transfer import export_state

    kind = SourceKind(args.backend) if args.backend else None
    data_dir = None if args.server else _data_dir(args.data_dir)
    report = export_state(args.archive, data_dir, args.server, kind, _key(args), args.endpoint_url)
    document = report.to_dict()
    if args.json:
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
    else:
        sys.stdout.write(
            f"exported {report.source} ({describe_archive(document)}) to {report.destination} ({size(report.bytes)})\n"
        )
    return 0


def _import(args: argparse.Namespace) -> int:
    from ..share.transfer import import_state

    data_dir = _data_dir(args.data_dir)
    at = _moment("--at", args.at, zone_required=True)
    if is_remote(args.archive) and is_replica(args.archive, args.endpoint_url):
        return _recover(args, data_dir, at)
    if at is not None:
        raise ConfigError("--at", args.at, hint=f"{args.archive} is an archive, not a replica: it has one moment")
    report = import_state(args.archive, data_dir, _key(args), args.trust, args.endpoint_url)
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict()).decode() + "\n")
    else:
        what = f"{report.calls:,} calls" if report.kind != "snapshot" else f"{len(report.services)} services"
        if report.kind == "localstack":
            dropped = report.details.get("dropped") or {}
            what += f" of {report.details.get('read', 0):,} LocalStack records"
            if isinstance(dropped, dict) and dropped:
                what += " (dropped: " + ", ".join(f"{n:,} {why}" for why, n in sorted(dropped.items())) + ")"
        backend = " --backend snapshot" if report.kind == "snapshot" else ""
        sys.stdout.write(
            f"imported {report.archive} ({report.kind}, {what}) into {report.data_dir}; "
            f"serve it with: replay serve --data-dir {report.data_dir}{backend}\n"
        )
    return 0


def _recover(args: argparse.Namespace, data_dir: Path, at: float | None) -> int:
    from ..share.recovery import restore_replica

    report = restore_replica(args.archive, data_dir, at, _key(args), args.trust, args.endpoint_url)
    document = report.to_dict()
    if args.json:
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
    else:
        sys.stdout.write(format_recovery(document))
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "verify": _verify,
    "compact": _compact,
    "inspect": _inspect,
    "export": _export,
    "import": _import,
    "restore": _restore,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``replay`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _configure_logging(args.log_level)
        if args.command == "serve":
            return _serve(args)
        return _COMMANDS[args.command](args)
    except ReplayError as exc:
        sys.stderr.write(error_line(str(exc)))
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; what was done stays done
        sys.stderr.write(error_line("interrupted"))
        return 130
    except BrokenPipeError:  # the reader went away (`replay inspect --calls | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        sys.stderr.write(error_line(describe_os_error(exc)))
        return 1


_ERRNO = re.compile(r"\[Errno -?\d+\] *")
_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_PREFIX = re.compile(r"^(?:replay: *(?:error: *)?)+")


def error_line(message: str) -> str:
    """``message`` as the one line the command ends with: ``replay: error: MESSAGE``.

    Line breaks (and the white space around them) become one space; a raw ``[Errno N]`` (an
    OSError's text, quoted by a message built around it) goes; a ``replay:`` prefix the message
    brought along goes too, so that the line never says ``replay: error: replay: ...``.
    """
    text = _PREFIX.sub("", _BREAKS.sub(" ", _ERRNO.sub("", message)).strip())
    return f"replay: error: {text}\n"


def describe_os_error(exc: OSError) -> str:
    """An OS error as one line naming its path(s), without the errno: ``/x/volume: Permission denied``."""
    reason = exc.strerror or str(exc)
    if exc.filename is not None and exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return " ".join(reason.split())


def run() -> None:
    """Console-script entry point."""
    code = main()
    if _SERVED:
        _exit_now(code)
    sys.exit(code)
