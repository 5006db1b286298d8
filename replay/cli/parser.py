"""The ``replay`` command's arguments: every command, option and help text, in one argparse parser."""

from __future__ import annotations

import argparse
from typing import NoReturn

from ..config import BackendKind, FsyncPolicy
from ..version import __version__

__all__ = ["build_parser"]


def _choices(kind: type[BackendKind] | type[FsyncPolicy]) -> str:
    return "|".join(member.value for member in kind)


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option reported as one line (exit status 2), like every other error.

    The line starts ``replay: error:`` once; the command at fault is named by the help it points to.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"replay: error: {message} (see `{self.prog} --help`)\n")


_LOG_LEVEL_HELP = "logging level: DEBUG, INFO, WARNING or ERROR (default: INFO); before or after the command"


def _log_level(command: argparse.ArgumentParser) -> None:
    """``--log-level`` on a command too, so that it may follow the command's name.

    Unset there, it leaves the value given before the command (or the default) alone.
    """
    command.add_argument("--log-level", default=argparse.SUPPRESS, help=_LOG_LEVEL_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="replay", description="Persistence for WSGI cloud emulators.")
    parser.add_argument("--version", action="version", version=f"replay {__version__}")
    parser.add_argument("--log-level", default="INFO", help=_LOG_LEVEL_HELP)
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
    serve.add_argument(
        "--checkpoint-percentage",
        help="checkpoint when the calls logged since the last one reach this %% of its size, 0: never "
        "(env REPLAY_CHECKPOINT_PERCENTAGE, default: 100)",
    )
    serve.add_argument(
        "--checkpoint-min-size",
        help="... and at least this size, e.g. 512kb, 64mb (env REPLAY_CHECKPOINT_MIN_SIZE, default: 1mb)",
    )
    serve.add_argument(
        "--services",
        help="persist only these services (sqs,s3), or all but some (--services=-dynamodb) (env PERSISTENCE_SERVICES)",
    )
    serve.add_argument(
        "--scope", help="all (default), or infrastructure: no messages, objects, items ... (env PERSISTENCE_SCOPE)"
    )
    serve.add_argument(
        "--app",
        default="moto",
        help="'moto' (default), 'package.module:app' of a WSGI app, or 'package.module:create_app(...)' of a factory",
    )
    serve.add_argument(
        "--init-dir",
        help="folder of init scripts (boot.d, start.d, ready.d, shutdown.d) as in LocalStack "
        "(env INIT_DIR, default: /etc/localstack/init when it exists)",
    )
    serve.add_argument(
        "--seed",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="seed each call's clock and randomness so replays make the same ids (env REPLAY_SEED, default: on)",
    )

    serve.add_argument(
        "--replicate",
        metavar="S3_URL",
        help="ship the state continuously to s3://bucket/prefix (env REPLAY_REPLICATE_URL)",
    )
    serve.add_argument(
        "--replicate-interval",
        help="most seconds a call waits before it ships, e.g. 1s (env REPLAY_REPLICATE_INTERVAL)",
    )
    serve.add_argument(
        "--replicate-retention",
        help="how far back restore points are kept, e.g. 72h (env REPLAY_REPLICATE_RETENTION, default: 72h)",
    )
    serve.add_argument(
        "--replicate-backlog",
        help="local disk kept for what S3 has not taken yet, e.g. 1gb (env REPLAY_REPLICATE_BACKLOG, default: 1gb)",
    )
    serve.add_argument(
        "--endpoint-url", help="S3-compatible endpoint of the replica (env AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL)"
    )

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
    verify.add_argument(
        "--app", default="moto", help="'moto' (default), 'package.module:app' or 'package.module:create_app(...)'"
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    verify.add_argument("--quiet", action="store_true", help="no progress line")

    compact = commands.add_parser(
        "compact",
        help="make the next start cheaper: a running server takes a checkpoint; "
        "otherwise the log is rewritten without the calls undone later",
    )
    compact.add_argument("path", nargs="?", help="data dir or its log file (default: $DATA_DIR or ./volume)")
    compact.add_argument("--json", action="store_true", help="print what was done as JSON on stdout")
    compact.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for a running server (600)")

    inspect = commands.add_parser(
        "inspect", help="what a log holds: calls per service and operation, time range, size, the last restore"
    )
    inspect.add_argument(
        "path", nargs="?", help="data dir, log file, archive, or s3://bucket/prefix replica (default: ./volume)"
    )
    inspect.add_argument("--calls", action="store_true", help="list the calls, one a line")
    inspect.add_argument("--service", help="only calls to this service (with --calls)")
    inspect.add_argument("--operation", help="only calls of this operation (with --calls)")
    inspect.add_argument("--since", help="only calls at or after this time: ISO 8601 or Unix seconds (with --calls)")
    inspect.add_argument("--json", action="store_true", help="JSON for machines (JSON lines with --calls)")
    inspect.add_argument("--endpoint-url", help="S3-compatible endpoint of an s3:// replica")

    export = commands.add_parser(
        "export", help="write the whole state of a data dir (or a running server) to one archive file, or to s3://"
    )
    export.add_argument("archive", metavar="ARCHIVE", help="file to write, or s3://bucket/key")
    export.add_argument("--data-dir", help="the data dir to export (env DATA_DIR, default: ./volume)")
    export.add_argument("--from", dest="server", metavar="URL", help="export a running replay server's live state")
    export.add_argument(
        "--backend", choices=[kind.value for kind in BackendKind], help="which state, if the data dir holds both"
    )
    _archive_arguments(export)

    import_ = commands.add_parser(
        "import", help="unpack an archive (a file or s3://bucket/key), or restore a replica, into a fresh data dir"
    )
    import_.add_argument(
        "archive", metavar="ARCHIVE", help="archive file, s3://bucket/key, or s3://bucket/prefix replica"
    )
    import_.add_argument(
        "--at",
        help="restore a replica's state as of this time: ISO 8601 with a zone, or Unix seconds (default: newest)",
    )
    import_.add_argument("--data-dir", help="the fresh data dir to fill (env DATA_DIR, default: ./volume)")
    import_.add_argument(
        "--trust", action="store_true", help="load pickled snapshots from an archive no key vouches for (you made it)"
    )
    _archive_arguments(import_)
    for command in commands.choices.values():
        _log_level(command)
    return parser


def _archive_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--key-file", help="file holding the key archives are signed with (env REPLAY_ARCHIVE_KEY)")
    command.add_argument(
        "--endpoint-url", help="S3-compatible endpoint for s3:// archives (env AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL)"
    )
    command.add_argument("--json", action="store_true", help="print what was done as JSON on stdout")
