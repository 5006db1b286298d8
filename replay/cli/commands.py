"""The ``replay`` command: ``serve``, ``restore``, ``verify``, ``compact``, ``inspect``, ``export`` and ``import``.

Output for people goes to stderr through logging (and a progress line); a
machine-readable summary goes to stdout with ``--json``.  Exit status: 0 on
success, 1 when the work failed (a corrupt log, an unreachable target, calls
that failed or, for ``verify``, diverged on replay), 2 for bad usage or configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

import orjson
import requests

from ..config import BackendKind, Config, FsyncPolicy
from ..errors import ConfigError, ReplayError, SourceError, TransportError
from ..record.log import CallLog
from ..restore.replayer import Progress, Replayer
from ..restore.transport import HTTPTransport, WSGITransport
from ..routes import COMPACT_PATH
from ..share.archive import read_manifest as read_archive_manifest
from ..share.sources import Source, SourceKind, identify
from ..storage.checkpoint import finish_interrupted, read_manifest, tail_start
from ..storage.datadir import DataDirLock, owner
from ..storage.rewrite import compact_in_place
from ..version import __version__
from .display import (
    describe_archive,
    format_archive,
    format_compaction,
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
        logging.getLogger("werkzeug").setLevel(logging.WARNING)


class _ProgressLine:
    """Renders replay progress on a terminal line, or as a log line every few seconds elsewhere."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = stream.isatty()
        self.last_line = 0.0

    def __call__(self, progress: Progress) -> None:
        remaining = progress.remaining
        left = f", {remaining:.0f} s left" if remaining is not None else ""
        text = (
            f"{self.label}: {progress.calls} calls, {progress.fraction:.0%} of the log, "
            f"{progress.rate:.0f} calls/s{left}"
        )
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            if progress.position >= progress.size:
                self.stream.write("\n")
            self.stream.flush()
        elif time.monotonic() - self.last_line >= 5.0 or progress.position >= progress.size:
            self.last_line = time.monotonic()
            logger.info("%s", text)


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
    with _stdout_is_ours(), _quiet("replay.replayer", logging.ERROR):  # the report below says it all
        emulator = load_emulator(args.app, seed=Config.load({}, os.environ).seed)
        if emulator.reset is not None:
            emulator.reset()
        timeout = Config.load({}, os.environ).call_timeout
        report = Replayer(WSGITransport(emulator.app), seeder=emulator.seeder, call_timeout=timeout).replay_segments(
            segments
        )
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
        },
        os.environ,
    )
    _warn_about_snapshot_settings(config, args)
    server = Server(config, load_emulator(args.app, seed=config.seed))
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
    return 0


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
            raise TransportError(url, f"cannot reach the server holding {data_dir} at {url}: {exc}") from None
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


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            "--since", value, hint="an ISO 8601 time such as 2026-12-02T07:00:00Z, or Unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _inspect(args: argparse.Namespace) -> int:
    from .summary import calls, describe_snapshots, summarise

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
        sys.stderr.write(f"replay: error: {exc}\n")
        return 2 if isinstance(exc, ConfigError) else 1
    except BrokenPipeError:  # the reader went away (`replay inspect --calls | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        sys.stderr.write(f"replay: error: {describe_os_error(exc)}\n")
        return 1


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
    sys.exit(main())
