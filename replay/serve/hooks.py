"""Init hooks: scripts the server runs at four points of its life, as LocalStack does.

The init dir (``--init-dir``, LocalStack's ``/etc/localstack/init``) holds one folder per stage:

* ``boot.d``: before the restore begins, first of all;
* ``start.d``: after ``boot.d``, still before the restore begins;
* ``ready.d``: once the restore has finished and the server serves, so the scripts see the restored
  state and can call the emulator (the place for seeding);
* ``shutdown.d``: when the server stops, before the state is closed (the scripts can still call it).

A stage runs once.  Its scripts are the shell scripts (``.sh``) and Python programs (``.py``) in its
folder and the folders below it; other files are ignored.  They run one at a time in alphanumerical
order of their names, the folder's own scripts first, then each subfolder in alphabetical order,
depth first.  Each is a child process in a session of its own: a shell script is executed directly,
so its shebang line chooses the shell, and must therefore be executable and start with ``#!`` (one
that is not, or does not, is reported and never run); a Python program runs with the server's own
interpreter (``sys.executable -u``).  The working directory is the script's folder, so a script may
name the files beside it by relative paths.  The environment is the server's, with what the server
adds (``AWS_ENDPOINT_URL`` pointing at itself, test credentials and the region); stdin is empty.

Standard output and standard error are merged and logged line by line, as they come, on the
``replay.init`` logger (``init ready.d/seed.sh: <line>``), so a script that hangs has said what it
said.  A script that exits 0 is ``SUCCESSFUL``; any other end (an exit status, a signal, a timeout,
an interpreter that cannot be found) is ``ERROR`` with one warning saying why, and the next script
still runs.  A script still running after ``timeout`` seconds is killed together with its process
group.  Background processes a successful script leaves behind are its business: they keep running,
and their output is logged for as long as they hold the script's output open.

:meth:`InitHooks.document` and :meth:`InitHooks.stage_document` give what LocalStack's
``GET /_localstack/init`` and ``GET /_localstack/init/<stage>`` answer::

    {"completed": {"BOOT": true, "START": true, "READY": false, "SHUTDOWN": false},
     "scripts": [{"stage": "READY", "name": "seed.sh", "state": "RUNNING"}, ...]}
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from ..config import DEFAULT_INIT_DIR

__all__ = ["DEFAULT_ROOT", "DEFAULT_TIMEOUT", "InitHooks", "Script", "ScriptState", "Stage"]

logger = logging.getLogger("replay.init")

DEFAULT_ROOT = Path(DEFAULT_INIT_DIR)
"""LocalStack's init dir: where its users' Docker set-ups mount their scripts (``INIT_DIR``'s default)."""

DEFAULT_TIMEOUT = 600.0
"""Seconds a script may run before it is killed."""

_SHELL_SUFFIX = ".sh"
_PYTHON_SUFFIX = ".py"
_OUTPUT_GRACE = 1.0  # seconds to wait for the rest of a finished script's output (a background child may hold it open)
_LINE_LIMIT = 64 * 1024  # a longer line is logged in pieces
_SHEBANG_LIMIT = 256


class Stage(enum.Enum):
    """The points of the server's life at which init scripts run, in the order they come."""

    BOOT = "BOOT"
    START = "START"
    READY = "READY"
    SHUTDOWN = "SHUTDOWN"

    @property
    def folder(self) -> str:
        """The stage's folder in the init dir: ``ready.d``."""
        return f"{self.name.lower()}.d"


class ScriptState(enum.Enum):
    """Where a script is: found and not run yet, running, or done one way or the other."""

    UNKNOWN = "UNKNOWN"
    RUNNING = "RUNNING"
    SUCCESSFUL = "SUCCESSFUL"
    ERROR = "ERROR"


@dataclasses.dataclass
class Script:
    """One init script of a stage; ``state`` changes as it runs."""

    stage: Stage
    path: Path
    state: ScriptState = ScriptState.UNKNOWN

    @property
    def name(self) -> str:
        """The file's name, as the init endpoint shows it."""
        return self.path.name


class InitHooks:
    """The init scripts under ``root``, found once at construction, and what became of them.

    ``root`` None, missing or empty: every stage has no scripts (and still completes when run).
    ``environment`` is added to the server's own for every script.  ``timeout`` None lets a script
    run for ever.  :meth:`run` is called by the server, one stage at a time; the documents and
    :meth:`summary` may be asked for from any thread meanwhile.
    """

    def __init__(
        self,
        root: Path | None,
        environment: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive or None, not {timeout!r}")
        self.root = None if root is None else root.absolute()
        self.environment = dict(environment or {})
        self.timeout = timeout
        self._lock = threading.Lock()
        self._started: set[Stage] = set()
        self._completed: set[Stage] = set()
        self._scripts = {stage: self._discover_stage(stage) for stage in Stage}

    def scripts(self, stage: Stage) -> list[Script]:
        """The stage's scripts in the order they run (the live objects: their state changes)."""
        return list(self._scripts[stage])

    def completed(self, stage: Stage) -> bool:
        """Whether the stage has run to its end."""
        with self._lock:
            return stage in self._completed

    def run(self, stage: Stage) -> list[Script]:
        """Run the stage's scripts, one after the other, and mark the stage completed.

        Returns the scripts with their final states.  A script's failure is logged and recorded,
        never raised.  A stage runs once: a later call (or one while it runs) runs nothing and
        returns the scripts as they are.  Interrupted (``KeyboardInterrupt``), the script running is
        killed and the stage is left incomplete.
        """
        with self._lock:
            if stage in self._started:
                return self.scripts(stage)
            self._started.add(stage)
        for script in self._scripts[stage]:
            self._run_script(script)
        with self._lock:
            self._completed.add(stage)
        return self.scripts(stage)

    def summary(self, stage: Stage) -> str:
        """One line for the log: ``init ready.d: 3 scripts, 1 failed``."""
        scripts = self._scripts[stage]
        if not scripts:
            return f"init {stage.folder}: no scripts"
        count = f"{len(scripts)} script{'' if len(scripts) == 1 else 's'}"
        with self._lock:
            if stage not in self._completed:
                return f"init {stage.folder}: {count} to run"
            failed = sum(script.state is ScriptState.ERROR for script in scripts)
        return f"init {stage.folder}: {count}, {failed or 'none'} failed"

    def document(self) -> dict[str, object]:
        """What ``GET /_localstack/init`` answers: every stage's completion and every script's state."""
        with self._lock:
            return {
                "completed": {stage.value: stage in self._completed for stage in Stage},
                "scripts": [self._entry(script) for stage in Stage for script in self._scripts[stage]],
            }

    def stage_document(self, name: str) -> dict[str, object] | None:
        """What ``GET /_localstack/init/<name>`` answers (``name`` in any case); None for no such stage."""
        stage = Stage.__members__.get(name.strip().upper())
        if stage is None:
            return None
        with self._lock:
            return {
                "completed": stage in self._completed,
                "scripts": [self._entry(script) for script in self._scripts[stage]],
            }

    @staticmethod
    def _entry(script: Script) -> dict[str, str]:
        return {"stage": script.stage.value, "name": script.name, "state": script.state.value}

    def _label(self, script: Script) -> str:
        """The script's path from the init dir, for the log: ``ready.d/seed.sh``."""
        assert self.root is not None
        return script.path.relative_to(self.root).as_posix()

    def _set_state(self, script: Script, state: ScriptState) -> None:
        with self._lock:
            script.state = state

    # Discovery

    def _discover_stage(self, stage: Stage) -> list[Script]:
        if self.root is None:
            return []
        if stage is Stage.BOOT:  # said once, not once per stage
            if not self.root.exists():
                logger.warning("init dir %s does not exist: no init scripts", self.root)
            elif not self.root.is_dir():
                logger.warning("init dir %s is not a folder: no init scripts", self.root)
        folder = self.root / stage.folder
        if not folder.is_dir():
            return []
        return [Script(stage, path) for path in _walk(folder, set())]

    # Running

    def _run_script(self, script: Script) -> None:
        label = self._label(script)
        self._set_state(script, ScriptState.RUNNING)
        if script.path.name.endswith(_SHELL_SUFFIX):
            problem = _unrunnable(script.path)
            if problem is not None:
                logger.warning("init %s: not run: %s", label, problem)
                self._set_state(script, ScriptState.ERROR)
                return
            command = [str(script.path)]
        else:
            command = [sys.executable, "-u", str(script.path)]
        logger.info("init %s: running", label)
        started = time.monotonic()
        try:
            failure = self._execute(command, script, label)
        except BaseException:  # interrupted: the script has been killed
            self._set_state(script, ScriptState.ERROR)
            raise
        if failure is None:
            logger.info("init %s: successful in %.2f s", label, time.monotonic() - started)
            self._set_state(script, ScriptState.SUCCESSFUL)
        else:
            logger.warning("init %s: %s", label, failure)
            self._set_state(script, ScriptState.ERROR)

    def _execute(self, command: list[str], script: Script, label: str) -> str | None:
        """Run one script to its end; None when it succeeded, else how it failed (one line)."""
        try:
            process = subprocess.Popen(
                command,
                cwd=script.path.parent,
                env={**os.environ, **self.environment},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as one, and a Ctrl-C is the server's
            )
        except OSError as exc:
            return f"could not be started: {_start_error(exc, script.path, direct=command[0] == str(script.path))}"
        assert process.stdout is not None
        pump = threading.Thread(
            target=_pump, args=(process.stdout, label), name=f"init-output-{script.name}", daemon=True
        )
        pump.start()
        failure: str | None = None
        try:
            try:
                status = process.wait(self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                failure = f"did not finish in {self.timeout:g} s: killed, with its process group"
            else:
                if status < 0:
                    failure = f"killed by signal {_signal_name(-status)}"
                elif status > 0:
                    failure = f"failed with exit status {status}"
        finally:
            if process.returncode is None:  # interrupted while waiting
                _kill_group(process)
        pump.join(_OUTPUT_GRACE)
        if pump.is_alive():
            logger.debug("init %s: its output is still open (held by a process it started)", label)
        return failure


def _walk(folder: Path, seen: set[Path]) -> list[Path]:
    """The known scripts under ``folder``: its own in name order, then each subfolder's, depth first."""
    try:
        real = folder.resolve()
        if real in seen:  # a symbolic link back up the tree, or a second link to the same folder
            logger.warning("init %s: already searched (a symbolic link loop?): skipped", folder)
            return []
        seen.add(real)
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        logger.warning("init %s: cannot be listed (%s): its scripts are skipped", folder, exc.strerror or exc)
        return []
    files = [
        Path(entry.path)
        for entry in entries
        if entry.name.endswith((_SHELL_SUFFIX, _PYTHON_SUFFIX)) and _is(entry, "file")
    ]
    for entry in entries:
        if _is(entry, "dir"):
            files += _walk(Path(entry.path), seen)
    return files


def _is(entry: os.DirEntry[str], kind: str) -> bool:
    """Whether a folder entry is a file (or a folder), following symbolic links; False when it cannot be told."""
    try:
        return entry.is_file() if kind == "file" else entry.is_dir()
    except OSError:
        return False


def _first_line(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.readline(_SHEBANG_LIMIT)


def _unrunnable(path: Path) -> str | None:
    """Why a shell script cannot be executed directly (and how to fix it), or None when it can."""
    try:
        first = _first_line(path)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    problems = []
    if not os.access(path, os.X_OK):
        problems.append(f"the file is not executable (make it so: chmod +x {path})")
    if not first.startswith(b"#!"):
        problems.append("it has no shebang (add one, such as #!/bin/sh or #!/bin/bash, as its first line)")
    return " and ".join(problems) or None


def _start_error(error: OSError, path: Path, direct: bool) -> str:
    """An ``exec`` failure in words; a missing shebang interpreter is named (``exec`` blames the script)."""
    if direct and error.errno == errno.ENOENT and path.exists():
        try:
            shebang = _first_line(path).rstrip(b"\n")
        except OSError:
            shebang = b""
        if shebang.startswith(b"#!"):
            hint = " (the file has Windows line endings: convert it to Unix ones)" if shebang.endswith(b"\r") else ""
            text = shebang.rstrip(b"\r").decode("utf-8", "replace")
            return f"the interpreter of its shebang line {text!r} was not found{hint}"
    return str(error.strerror or error)


def _pump(stream: IO[bytes], label: str) -> None:
    """Log a script's output line by line until it ends."""
    with stream:
        try:
            for raw in iter(lambda: stream.readline(_LINE_LIMIT), b""):
                logger.info("init %s: %s", label, raw.decode("utf-8", "replace").rstrip("\r\n"))
        except (OSError, ValueError) as exc:
            logger.debug("init %s: output no longer read (%s)", label, exc)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the script and every process of its group, and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
