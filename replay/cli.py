"""The ``replay`` command: ``serve``, ``restore`` and ``verify``.

Output for people goes to stderr through logging (and a progress line); a
machine-readable summary goes to stdout with ``--json``.  Exit status: 0 on
success, 1 when the work failed (a corrupt log, an unreachable target, calls
that failed or, for ``verify``, diverged on replay), 2 for bad usage or configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

import orjson

from . import __version__
from .config import LOG_FILE_NAME, BackendKind, Config, FsyncPolicy
from .errors import ConfigError, ReplayError
from .replayer import Progress, Replayer, ReplayReport
from .transport import HTTPTransport, WSGITransport

__all__ = ["main"]

logger = logging.getLogger("replay.cli")


def _choices(kind: type[BackendKind] | type[FsyncPolicy]) -> str:
    return "|".join(member.value for member in kind)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="replay", description="Persistence for WSGI cloud emulators.")
    parser.add_argument("--version", action="version", version=f"replay {__version__}")
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve an emulator (moto by default) with persistence")
    serve.add_argument("--host", help="interface to bind (default: 127.0.0.1)")
    serve.add_argument("--port", help="port to bind, 0 for any free one (default: 4566)")
    serve.add_argument("--data-dir", help="where state is kept (env DATA_DIR, default: ./volume)")
    serve.add_argument(
        "--backend", help=f"persistence strategy: {_choices(BackendKind)} (env PERSISTENCE_BACKEND, default: replay)"
    )
    serve.add_argument(
        "--fsync", help=f"log fsync policy: {_choices(FsyncPolicy)} (env REPLAY_FSYNC, default: everysec)"
    )
    serve.add_argument(
        "--persistence",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record and restore state (env PERSISTENCE, default: on)",
    )
    serve.add_argument(
        "--save-strategy", help="snapshot saves: ON_REQUEST|ON_SHUTDOWN|SCHEDULED|MANUAL (env SNAPSHOT_SAVE_STRATEGY)"
    )
    serve.add_argument(
        "--load-strategy", help="snapshot loads: ON_REQUEST|ON_STARTUP|MANUAL (env SNAPSHOT_LOAD_STRATEGY)"
    )
    serve.add_argument("--flush-interval", help="seconds between scheduled saves (env SNAPSHOT_FLUSH_INTERVAL, 15)")
    serve.add_argument("--app", default="moto", help="'moto' (default) or 'package.module:attribute' of a WSGI app")

    restore = commands.add_parser("restore", help="replay a recorded log over HTTP into a running emulator")
    restore.add_argument("--target", required=True, help="base URL of the emulator, e.g. http://localhost:4566")
    restore.add_argument("path", nargs="?", help="log file or data dir (default: $DATA_DIR or ./volume)")
    restore.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each response (default: 30)")
    restore.add_argument("--retries", type=int, default=3, help="retries when the connection fails (default: 3)")
    restore.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    restore.add_argument("--quiet", action="store_true", help="no progress line")
    restore.add_argument(
        "--no-mapping", action="store_true", help="send calls exactly as recorded, without rewriting regenerated ids"
    )
    verify = commands.add_parser(
        "verify", help="replay a log into a fresh in-process emulator and report what diverged (no serving)"
    )
    verify.add_argument("path", nargs="?", help="log file or data dir (default: $DATA_DIR or ./volume)")
    verify.add_argument("--app", default="moto", help="'moto' (default) or 'package.module:attribute' of a WSGI app")
    verify.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    return parser


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


def _log_path(path: str | None) -> Path:
    chosen = Path(path or os.environ.get("DATA_DIR") or "volume").expanduser()
    if chosen.is_dir():
        chosen = chosen / LOG_FILE_NAME
    if not chosen.is_file():
        raise ReplayError(f"no call log at {chosen}")
    return chosen


def _restore(args: argparse.Namespace) -> int:
    path = _log_path(args.path)
    transport = HTTPTransport(args.target, timeout=args.timeout, retries=args.retries)
    progress = None if args.quiet else _ProgressLine(sys.stderr, f"restoring into {args.target}")
    try:
        replayer = Replayer(transport, progress=progress, progress_interval=0.2, mapping=not args.no_mapping)
        report = replayer.replay(path)
    finally:
        transport.close()
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict()).decode() + "\n")
    return 1 if report.failures else 0


def _verify(args: argparse.Namespace) -> int:
    from .emulators import load_emulator

    path = _log_path(args.path)
    emulator = load_emulator(args.app)
    if emulator.reset is not None:
        emulator.reset()
    logging.getLogger("replay.replayer").setLevel(logging.ERROR)  # the report below says it all
    report = Replayer(WSGITransport(emulator.app), seeder=emulator.seeder).replay(path)
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_dict()).decode() + "\n")
    else:
        sys.stdout.write(format_report(report))
    return 1 if report.failures or report.divergences else 0


def format_report(report: ReplayReport) -> str:
    """The report as a table for people."""
    rows = [(str(d.line), d.service, d.operation, d.describe()) for d in report.divergences]
    lines = []
    if rows:
        header = ("line", "service", "operation", "what differed")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
        for row in [header, *rows]:
            lines.append(
                "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
            )
        lines.append("")
    verdict = "diverged" if report.divergences or report.failures else "converged"
    lines.append(
        f"{report.path}: {report.total} calls replayed, {report.restored} restored, {report.failed} failed, "
        f"{report.diverged} diverged, {report.mapped} generated values mapped: {verdict}"
    )
    return "\n".join(lines) + "\n"


def _serve(args: argparse.Namespace) -> int:
    from .emulators import load_emulator
    from .server import Server

    config = Config.load(
        {
            "host": args.host,
            "port": args.port,
            "data_dir": args.data_dir,
            "backend": args.backend,
            "fsync": args.fsync,
            "persistence": args.persistence,
            "save_strategy": args.save_strategy,
            "load_strategy": args.load_strategy,
            "flush_interval": args.flush_interval,
        },
        os.environ,
    )
    server = Server(config, load_emulator(args.app))
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``replay`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _configure_logging(args.log_level)
        if args.command == "serve":
            return _serve(args)
        if args.command == "verify":
            return _verify(args)
        return _restore(args)
    except ReplayError as exc:
        sys.stderr.write(f"replay: error: {exc}\n")
        return 2 if isinstance(exc, ConfigError) else 1
    except OSError as exc:
        sys.stderr.write(f"replay: error: {exc}\n")
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
