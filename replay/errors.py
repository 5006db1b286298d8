"""Every error ``replay`` raises on purpose.

::

    ReplayError
     ├── ConfigError (ValueError)          a flag or environment variable has a bad value
     ├── LogError                          the call log cannot be used
     │    ├── LogCorruptError (ValueError)  a line in the middle of the log is not an entry
     │    ├── LogVersionError               the log was written by a newer ``replay``
     │    ├── LogWriteError (OSError)       an entry could not be made durable
     │    └── ReplayStalledError (TimeoutError)  a replayed call did not finish in time; the restore stopped
     ├── EntryVersionError (ValueError)    one entry has a newer format version
     ├── SnapshotError                     a snapshot file is refused (torn, corrupt, foreign, newer)
     ├── CheckpointError                   a checkpoint's manifest and the call log do not fit together
     ├── QuiesceTimeoutError (TimeoutError)  state-changing calls stayed in flight; no checkpoint taken
     ├── BackgroundSaveError               a save's child process failed, died or hung; nothing was committed
     ├── DataDirInUseError                 another replay process owns the data dir
     ├── SourceError                       a path is missing, or holds nothing replay reads
     ├── ArchiveError (ValueError)         an archive cannot be imported (torn, corrupt, newer, untrusted)
     ├── RequestError (ValueError)         an HTTP request cannot be framed (bad length, bad chunks, too large)
     ├── ReplicaError                      an S3 replica cannot be written or restored from (damaged, gapped, empty)
     │    └── ReplicaInUseError            another server replicates into the same prefix
     └── TransportError (ConnectionError)  a replay target could not be reached

Each message names the file, line or value at fault and says what to do.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ArchiveError",
    "BackgroundSaveError",
    "CheckpointError",
    "ConfigError",
    "DataDirInUseError",
    "EntryVersionError",
    "LogCorruptError",
    "LogError",
    "LogVersionError",
    "LogWriteError",
    "QuiesceTimeoutError",
    "ReplayError",
    "ReplayStalledError",
    "ReplicaError",
    "ReplicaInUseError",
    "RequestError",
    "SnapshotError",
    "SourceError",
    "TransportError",
]


class ReplayError(Exception):
    """Base class of the errors ``replay`` raises on purpose."""


class ConfigError(ReplayError, ValueError):
    """A configuration value is invalid.

    :ivar name: the flag or environment variable at fault.
    :ivar value: the value it had.
    :ivar valid: the values it accepts, when they form a closed set.
    """

    def __init__(self, name: str, value: object, valid: tuple[str, ...] = (), hint: str = "") -> None:
        self.name = name
        self.value = value
        self.valid = valid
        message = f"invalid value for {name}: {value!r}"
        if valid:
            message += f" (valid values: {', '.join(valid)})"
        elif hint:
            message += f" ({hint})"
        super().__init__(message)


class LogError(ReplayError):
    """The call log cannot be read or written.

    :ivar path: the log file.
    """

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(message)


class LogCorruptError(LogError, ValueError):
    """A line that is not the log's last one cannot be decoded.

    Nothing is replayed past it and nothing in the file is changed, so the
    operator can inspect and repair it.

    :ivar line: the 1-based line number.
    """

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.line = line
        super().__init__(
            path,
            f"{path}:{line}: malformed entry ({reason}); the log was left untouched, "
            "repair or remove that line and start again",
        )


class LogVersionError(LogError):
    """An entry carries a format version newer than this ``replay`` reads.

    :ivar line: the 1-based line number.
    :ivar version: the version found.
    """

    def __init__(self, path: Path, line: int, version: object, supported: int) -> None:
        self.line = line
        self.version = version
        super().__init__(
            path,
            f"{path}:{line}: entry format version {version!r} is newer than this replay "
            f"reads (up to {supported}); upgrade replay",
        )


class LogWriteError(LogError, OSError):
    """An entry could not be written (or, under ``REPLAY_FSYNC=always``, synced).

    The call it describes is not acknowledged to its client.
    """


class ReplayStalledError(LogError, TimeoutError):
    """A replayed call did not finish within the per-call timeout: the restore cannot make progress.

    Nothing after that line was replayed.

    :ivar line: the 1-based line number of the call.
    :ivar timeout: the seconds it was given.
    """

    def __init__(self, path: Path, line: int, call: str, timeout: float) -> None:
        self.line = line
        self.timeout = timeout
        super().__init__(
            path,
            f"{path}:{line}: {call} did not finish within {timeout:g} s on replay; the restore stopped there "
            "(set REPLAY_CALL_TIMEOUT higher if the call is just slow, or remove that line)",
        )


class EntryVersionError(ReplayError, ValueError):
    """An entry's format version ``v`` is newer than this ``replay`` reads.

    :ivar version: the version found.
    :ivar supported: the newest version this ``replay`` reads.
    """

    def __init__(self, version: int, supported: int) -> None:
        self.version = version
        self.supported = supported
        super().__init__(f"format version {version} is newer than this replay reads (up to {supported})")


class SnapshotError(ReplayError):
    """A snapshot file cannot be used; nothing in it was executed.

    :ivar path: the file.
    :ivar reason: ``"torn"``, ``"corrupt"``, ``"foreign"``, ``"newer"`` or ``"malformed"``.
    """

    def __init__(self, path: Path, reason: str, detail: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: refused ({reason}): {detail}")


class CheckpointError(ReplayError):
    """A data dir's checkpoint cannot be used with its call log; nothing was changed.

    :ivar path: the manifest or log at fault.
    """

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class QuiesceTimeoutError(ReplayError, TimeoutError):
    """State-changing calls were still in flight when a checkpoint stopped waiting for them.

    Nothing was written; the checkpoint can be tried again later.
    """


class BackgroundSaveError(ReplayError):
    """A save's forked child failed (its error, in one line), died or hung; the parent committed nothing."""


class DataDirInUseError(ReplayError):
    """Another ``replay`` process owns the data dir.

    :ivar path: the data dir.
    :ivar owner: what the owner wrote into the lock file (``pid``, ``command``, ``url``).
    """

    def __init__(self, path: Path, owner: dict[str, object]) -> None:
        self.path = path
        self.owner = owner
        described = ", ".join(f"{key} {value}" for key, value in owner.items()) or "a process"
        super().__init__(f"{path} is in use by another replay ({described}); stop it or use another data dir")


class SourceError(ReplayError):
    """A path given to a command is missing, or is not a call log, a data dir or an archive.

    :ivar path: the path (or ``s3://`` location) at fault.
    """

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = path
        super().__init__(message)


class ArchiveError(ReplayError, ValueError):
    """An archive cannot be imported; nothing was written.

    :ivar path: the archive.
    :ivar reason: ``"foreign"`` (not an archive), ``"torn"`` (cut short), ``"corrupt"`` (a checksum
        failed, or a member is not a regular file its manifest lists), ``"oversized"`` (it decompresses
        to more than its manifest declares: a compression bomb), ``"no space"`` (its members do not fit
        on the data dir's filesystem), ``"newer"`` (a format this replay does not read), ``"untrusted"``
        (it holds snapshots and no key vouches for it), or ``"malformed"``.
    """

    def __init__(self, path: Path | str, reason: str, detail: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: not imported ({reason}): {detail}")


class RequestError(ReplayError, ValueError):
    """An HTTP request whose body cannot be read as framed: answered with :attr:`status`, never passed on.

    :ivar status: ``"400 Bad Request"`` or ``"413 Content Too Large"``.
    """

    def __init__(self, status: str, message: str) -> None:
        self.status = status
        super().__init__(message)


class ReplicaError(ReplayError):
    """A replica on S3 (:mod:`replay.share.replica`) cannot be used as asked; nothing local was changed.

    :ivar location: the replica's ``s3://bucket/prefix``.
    """

    def __init__(self, location: str, message: str) -> None:
        self.location = location
        super().__init__(f"{location}: {message}")


class ReplicaInUseError(ReplicaError):
    """Another server replicates into the same prefix (its lease is fresh): two would interleave generations.

    :ivar holder: what its lease says (``host``, ``data_dir``, ``pid``, ``renewed``).
    """

    def __init__(self, location: str, holder: dict[str, object], age: float) -> None:
        self.holder = holder
        who = ", ".join(f"{key} {holder[key]}" for key in ("host", "data_dir", "pid") if key in holder)
        super().__init__(
            location,
            f"another server replicates here ({who or 'unknown'}; lease renewed {age:.0f} s ago); "
            "give each server its own prefix, or stop that one",
        )


class TransportError(ReplayError, ConnectionError):
    """A replay target did not answer.

    :ivar target: the URL that was tried.
    """

    def __init__(self, target: str, message: str) -> None:
        self.target = target
        super().__init__(message)
