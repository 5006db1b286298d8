"""Power-loss simulation in the manner of SQLite's crash tests: strace a workload, replay its file-system
operations into a model of what is volatile and what is durable, and lay out the file tree a power loss
could leave after any operation.

* :func:`parse_trace` reads ``strace -f -ttt -yy -xx`` output (:data:`STRACE_ARGS`) into completed
  :class:`Syscall` records, in the order they completed (an ``<unfinished ...>`` line is joined with its
  ``<... resumed>`` line).
* :class:`FileSystemModel` holds every file and directory under a root as inodes.  A file has the content the
  processes see (``current``) and the content on disk (``durable``): a write or truncate is volatile until an
  ``fsync``/``fdatasync`` of that file that *started after it completed*.  A directory has its entries as the
  processes see them and its durable entries: a create, mkdir, rename, link or unlink in it is volatile until
  an fsync of the directory itself.  Nothing else makes anything durable (no ext4 ``auto_da_alloc``, no
  journal ordering): the strict POSIX reading.
* :class:`Simulator` applies the syscalls that touch the root and records, after each one that changed the
  model (a *crash point*), the tree of every :data:`VARIANTS` member:

  ``kept``     the namespace as the processes saw it, every written byte kept (what ``kill -9`` leaves);
  ``dropped``  the same namespace, unsynced data dropped (a new file not yet synced is empty);
  ``garbled``  the same namespace, every unsynced byte replaced by a random one (same length);
  ``undone``   unsynced directory changes undone (a rename, create or unlink whose directory was not
               fsynced since), unsynced data dropped.

  Trees are content-addressed (:class:`Tree`), so the many crash points that leave the same tree are
  checked once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "STRACE_ARGS",
    "TRACED_SYSCALLS",
    "VARIANTS",
    "CrashPoint",
    "FileSystemModel",
    "Simulation",
    "Simulator",
    "Syscall",
    "TraceError",
    "Tree",
    "parse_trace",
    "scan",
    "simulate",
]

# the calls issue 14 names, plus what keeps the model exact: lseek (file positions), clone (which threads share
# an fd table), dup and fcntl(F_DUPFD) (fd aliases), and the calls that would write a file in a way the
# model does not follow (sendfile, copy_file_range, fallocate, symlinks): those stop the simulation
TRACED_SYSCALLS = (
    "openat,open,creat,write,pwrite64,writev,pwritev,pwritev2,ftruncate,truncate,fsync,fdatasync,"
    "rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,rmdir,link,linkat,close,"
    "lseek,clone,clone3,fork,vfork,dup,dup2,dup3,fcntl,sendfile,copy_file_range,fallocate,symlink,symlinkat"
)
STRACE_ARGS = ("-f", "-ttt", "-yy", "-s", "10000000", "-xx", "-e", f"trace={TRACED_SYSCALLS}")

VARIANTS = ("kept", "dropped", "garbled", "undone")

O_ACCMODE = 0o3
_FLAG_NAMES = {
    "O_WRONLY": os.O_WRONLY,
    "O_RDWR": os.O_RDWR,
    "O_CREAT": os.O_CREAT,
    "O_EXCL": os.O_EXCL,
    "O_TRUNC": os.O_TRUNC,
    "O_APPEND": os.O_APPEND,
    "O_DIRECTORY": getattr(os, "O_DIRECTORY", 0),
    "O_TMPFILE": getattr(os, "O_TMPFILE", 0),
}


class TraceError(Exception):
    """The trace holds something the model cannot follow (it would rather stop than guess)."""


# --- parsing ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Syscall:
    """One completed system call.

    :ivar seq_start: the trace line it started on; :ivar seq_end: the line it completed on.
    :ivar start: its entry time (strace ``-ttt``); :ivar end: the time of its completion line
        (its entry time when it was not interrupted by another thread's line).
    :ivar args: its top-level arguments, as strace printed them.
    :ivar ret: what it returned, as printed (``"3<\\x2f...>"``, ``"0"``, ``"-1 ENOENT (...)"``).
    """

    tid: int
    seq_start: int
    seq_end: int
    start: float
    end: float
    name: str
    args: tuple[str, ...]
    ret: str

    @property
    def ok(self) -> bool:
        return not self.ret.startswith(("-", "?"))

    @property
    def value(self) -> int:
        """The return value as a number (the fd of an ``openat``)."""
        match = re.match(r"-?\d+", self.ret)
        if match is None:
            raise TraceError(f"{self.name}: no numeric return value in {self.ret!r}")
        return int(match.group(0))


_LINE = re.compile(r"(\d+)\s+(\d+\.\d+)\s+(.*)")
_RESUMED = re.compile(r"<\.\.\. (\w+) resumed>(.*)")
_HEX = re.compile(r"(?:\\x[0-9a-f]{2})+")


def split_args(text: str) -> tuple[str, ...]:
    """Top-level, comma-separated arguments (strings are hex-escaped: no quote or bracket hides inside one)."""
    args: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        elif char == "," and depth == 0:
            args.append(text[start:index].strip())
            start = index + 1
    tail = text[start:].strip()
    if tail:
        args.append(tail)
    return tuple(args)


def decode_hex(text: str) -> bytes:
    return bytes.fromhex(text.replace("\\x", ""))


def decode_string(arg: str) -> bytes:
    """A ``"\\x68\\x69"`` argument as bytes (a truncated string, ``"..."...``, is refused)."""
    if not (arg.startswith('"') and arg.endswith('"')):
        raise TraceError(f"not a complete string argument: {arg[:80]!r} (raise strace's -s)")
    return decode_hex(arg[1:-1])


def annotation(arg: str) -> tuple[str, str | None]:
    """``'3<\\x2f...>'`` -> ``('3', '/...')``; ``'3'`` -> ``('3', None)``; a deleted file's path ends in
    ``" (deleted)"``; sockets and pipes have no path."""
    cut = arg.find("<")
    if cut < 0:
        return arg, None
    found = _HEX.match(arg, cut + 1)  # a device adds its own "<char 1:3>"
    if found is None:
        return arg[:cut], None
    path = os.fsdecode(decode_hex(found.group(0)))
    return arg[:cut], path + " (deleted)" if arg.endswith("(deleted)") else path


def parse_trace(path: Path, names: Iterable[str] | None = None) -> list[Syscall]:
    """The completed system calls of a strace output file, in completion order.

    Calls whose name is not in ``names`` (default: all) are skipped without decoding their arguments.
    """
    wanted = set(names) if names is not None else None
    pending: dict[int, tuple[int, float, str, str]] = {}  # tid -> (line, time, name, text so far)
    calls: list[Syscall] = []
    with open(path, encoding="ascii", errors="strict") as lines:
        for seq, raw in enumerate(lines):
            match = _LINE.match(raw.rstrip("\n"))
            if match is None:
                continue
            tid, when, rest = int(match.group(1)), float(match.group(2)), match.group(3)
            if rest.startswith(("+++", "---")):
                continue
            resumed = _RESUMED.match(rest)
            if resumed is not None:
                started = pending.pop(tid, None)
                if started is None:
                    continue  # its start was before the trace (or unreadable): nothing to join
                seq_start, start, name, head = started
                text, seq_end, end = head + resumed.group(2), seq, when
            else:
                paren = rest.find("(")
                if paren <= 0:
                    continue
                name = rest[:paren]
                if rest.endswith("<unfinished ...>"):
                    pending[tid] = (seq, when, name, rest[: -len("<unfinished ...>")].rstrip())
                    continue
                text, seq_start, seq_end, start, end = rest, seq, seq, when, when
            if wanted is not None and name not in wanted:
                continue
            cut = text.rfind(") = ")
            if cut < 0:
                cut = text.rfind(") ")  # "= ? <unavailable>" forms
                if cut < 0:
                    continue
                ret = "?"
            else:
                ret = text[cut + 4 :]
            args = split_args(text[len(name) + 1 : cut])
            calls.append(Syscall(tid, seq_start, seq_end, start, end, name, args, ret.strip()))
    return calls


# --- the model -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Data:
    """A write (``data``) or a truncate (``size``) not yet made durable."""

    seq: int
    offset: int
    data: bytes | None = None
    size: int = 0


def _apply(buffer: bytearray, op: _Data, data: bytes | None = None) -> None:
    if op.data is None:
        if op.size < len(buffer):
            del buffer[op.size :]
        else:
            buffer.extend(bytes(op.size - len(buffer)))
        return
    payload = op.data if data is None else data
    if op.offset > len(buffer):
        buffer.extend(bytes(op.offset - len(buffer)))
    buffer[op.offset : op.offset + len(payload)] = payload


class Inode:
    """A file or a directory of the model."""

    def __init__(self, number: int, directory: bool) -> None:
        self.number = number
        self.directory = directory
        self.current = bytearray()
        self.durable = bytearray()
        self.pending: list[_Data] = []
        self.entries: dict[str, int] = {}
        self.durable_entries: dict[str, int] = {}
        self.pending_entries: list[tuple[int, str, int | None]] = []
        self.version = 0


@dataclasses.dataclass(frozen=True)
class Tree:
    """A file tree: relative path -> SHA-256 of its content (``None`` for a directory); blobs elsewhere."""

    files: tuple[tuple[str, str | None], ...]

    @property
    def digest(self) -> str:
        sha = hashlib.sha256()
        for path, content in self.files:
            sha.update(f"{path}\0{content or '/'}\n".encode())
        return sha.hexdigest()

    def get(self, path: str) -> str | None:
        for name, content in self.files:
            if name == path:
                return content
        return None

    def exists(self, path: str) -> bool:
        return any(name == path for name, _content in self.files)

    def materialise(self, blobs: dict[str, bytes], destination: Path) -> None:
        """Write the tree under ``destination`` (directories 0700, files 0600)."""
        destination.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, content in self.files:
            target = destination / path
            if content is None:
                target.mkdir(mode=0o700, exist_ok=True)
            else:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    view = memoryview(blobs[content])
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)


class FileSystemModel:
    """Files and directories under ``root`` with what is durable of each (see the module docstring).

    :param initial: the tree at the start (every file and entry durable): relative path -> content or ``None``.
    """

    def __init__(self, initial: dict[str, bytes | None], seed: int = 0) -> None:
        self.seed = seed
        self.inodes: list[Inode] = [Inode(0, True)]
        for path in sorted(initial, key=lambda name: name.count("/")):
            content = initial[path]
            parent, name = self._parent(path)
            inode = self._new(content is None)
            if content is not None:
                inode.current[:] = content
                inode.durable[:] = content
            self.inodes[parent].entries[name] = inode.number
            self.inodes[parent].durable_entries[name] = inode.number
        self.blobs: dict[str, bytes] = {}
        self._cache: dict[tuple[int, str, int], str] = {}

    def _new(self, directory: bool) -> Inode:
        inode = Inode(len(self.inodes), directory)
        self.inodes.append(inode)
        return inode

    @staticmethod
    def _split(path: str) -> list[str]:
        return [part for part in path.split("/") if part]

    def _parent(self, path: str) -> tuple[int, str]:
        """(inode of the directory holding ``path``, the last name); the directory must exist."""
        parts = self._split(path)
        if not parts:
            raise TraceError("the root itself cannot be changed")
        directory = self.lookup("/".join(parts[:-1]))
        if directory is None or not self.inodes[directory].directory:
            raise TraceError(f"{path}: its directory is not in the model")
        return directory, parts[-1]

    def lookup(self, path: str) -> int | None:
        """The inode at ``path`` now (``""`` is the root)."""
        number = 0
        for part in self._split(path):
            inode = self.inodes[number]
            if not inode.directory or part not in inode.entries:
                return None
            number = inode.entries[part]
        return number

    def _set_entry(self, directory: int, name: str, child: int | None, seq: int) -> None:
        inode = self.inodes[directory]
        if child is None:
            inode.entries.pop(name, None)
        else:
            inode.entries[name] = child
        inode.pending_entries.append((seq, name, child))
        inode.version += 1

    # operations (``seq``: the trace line the call completed on)

    def create(self, path: str, seq: int, directory: bool = False) -> int:
        parent, name = self._parent(path)
        if name in self.inodes[parent].entries:
            raise TraceError(f"{path}: created, but it exists")
        inode = self._new(directory)
        self._set_entry(parent, name, inode.number, seq)
        return inode.number

    def write(self, number: int, offset: int | None, data: bytes, seq: int) -> int:
        """Write ``data`` at ``offset`` (``None``: at the end, ``O_APPEND``); the offset used."""
        inode = self.inodes[number]
        at = len(inode.current) if offset is None else offset
        op = _Data(seq, at, bytes(data))
        _apply(inode.current, op)
        inode.pending.append(op)
        inode.version += 1
        return at

    def truncate(self, number: int, size: int, seq: int) -> None:
        inode = self.inodes[number]
        op = _Data(seq, 0, None, size)
        _apply(inode.current, op)
        inode.pending.append(op)
        inode.version += 1

    def sync(self, number: int, started: int) -> bool:
        """fsync (or fdatasync) that started on line ``started``: what completed before it is durable.

        Returns whether anything became durable.
        """
        inode = self.inodes[number]
        changed = False
        if inode.directory:
            keep = []
            for seq, name, child in inode.pending_entries:
                if seq < started:
                    if child is None:
                        inode.durable_entries.pop(name, None)
                    else:
                        inode.durable_entries[name] = child
                    changed = True
                else:
                    keep.append((seq, name, child))
            inode.pending_entries = keep
        else:
            still = []
            for op in inode.pending:
                if op.seq < started:
                    _apply(inode.durable, op)
                    changed = True
                else:
                    still.append(op)
            inode.pending = still
        if changed:
            inode.version += 1
        return changed

    def rename(self, old: str, new: str, seq: int) -> None:
        source = self.lookup(old)
        if source is None:
            raise TraceError(f"rename of {old}: not in the model")
        old_parent, old_name = self._parent(old)
        new_parent, new_name = self._parent(new)
        if (old_parent, old_name) == (new_parent, new_name):
            return
        self._set_entry(old_parent, old_name, None, seq)
        self._set_entry(new_parent, new_name, source, seq)

    def link(self, old: str, new: str, seq: int) -> None:
        source = self.lookup(old)
        if source is None:
            raise TraceError(f"link of {old}: not in the model")
        parent, name = self._parent(new)
        self._set_entry(parent, name, source, seq)

    def unlink(self, path: str, seq: int) -> None:
        parent, name = self._parent(path)
        if name not in self.inodes[parent].entries:
            raise TraceError(f"unlink of {path}: not in the model")
        self._set_entry(parent, name, None, seq)

    # trees

    def _content(self, inode: Inode, variant: str) -> str:
        key = (inode.number, variant if variant != "undone" else "dropped", inode.version)
        found = self._cache.get(key)
        if found is not None:
            return found
        if key[1] == "kept":
            data = bytes(inode.current)
        elif key[1] == "dropped":
            data = bytes(inode.durable)
        else:
            buffer = bytearray(inode.durable)
            for op in inode.pending:
                noise = None
                if op.data is not None:
                    noise = random.Random(f"{self.seed}:{inode.number}:{op.seq}").randbytes(len(op.data))
                _apply(buffer, op, noise)
            data = bytes(buffer)
        digest = hashlib.sha256(data).hexdigest()
        self.blobs.setdefault(digest, data)
        self._cache[key] = digest
        return digest

    def tree(self, variant: str) -> Tree:
        """The tree a power loss now leaves, in ``variant`` (one of :data:`VARIANTS`)."""
        files: list[tuple[str, str | None]] = []
        durable_names = variant == "undone"

        def walk(number: int, prefix: str) -> None:
            inode = self.inodes[number]
            entries = inode.durable_entries if durable_names else inode.entries
            for name in sorted(entries):
                child = self.inodes[entries[name]]
                path = f"{prefix}{name}"
                if child.directory:
                    files.append((path, None))
                    walk(child.number, path + "/")
                else:
                    files.append((path, self._content(child, variant)))

        walk(0, "")
        return Tree(tuple(files))

    def unsynced(self) -> list[str]:
        """What is volatile now, for people: ``data/x: 3 bytes``, ``data/: entry y``."""
        paths: dict[int, str] = {0: "."}

        def walk(number: int, prefix: str) -> None:
            for name, child in sorted(self.inodes[number].entries.items()):
                paths.setdefault(child, prefix + name)
                if self.inodes[child].directory:
                    walk(child, prefix + name + "/")

        walk(0, "")
        found = []
        for inode in self.inodes:
            where = paths.get(inode.number)
            if where is None:
                continue  # unlinked: nothing reaches it but a durable entry, listed with its directory
            if inode.pending:
                size = sum(len(op.data) if op.data is not None else 0 for op in inode.pending)
                found.append(f"{where}: {size} bytes unsynced")
            for name in sorted(set(inode.entries) | set(inode.durable_entries)):
                now, durable = inode.entries.get(name), inode.durable_entries.get(name)
                if now != durable:
                    change = "new" if durable is None else "removed" if now is None else "replaced"
                    found.append(f"{where}/{name}: entry {change}, directory not synced")
        return found


def scan(root: Path) -> dict[str, bytes | None]:
    """Every file (its content) and directory (``None``) under ``root``, by relative path."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            found[relative] = None
        elif stat.S_ISREG(mode):
            found[relative] = path.read_bytes()
        else:
            raise TraceError(f"{path}: neither a file nor a directory")
    return found


# --- applying a trace ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CrashPoint:
    """The moment after operation ``index`` (0: before the first) and before the next one.

    :ivar syscall: the operation, for people (``fsync(data/recorded_api_calls.json)``).
    :ivar time: when it completed; :ivar until: when the next operation completed (``inf`` after the last):
        a call acknowledged before ``until`` was acknowledged before some instant of this crash point.
    :ivar trace: which trace (0, 1 ... for workloads of several commands).
    """

    index: int
    syscall: str
    time: float
    until: float
    trace: int
    unsynced: tuple[str, ...]


@dataclasses.dataclass
class _Fd:
    inode: int | None  # None: outside the root
    path: str | None
    append: bool
    position: int = 0


@dataclasses.dataclass
class Simulation:
    """Every crash point of a run, and the distinct trees they leave.

    :ivar trees: tree digest -> the tree.
    :ivar points: the crash points, in order.
    :ivar leaves: ``(crash point index, variant)`` -> tree digest.
    """

    points: list[CrashPoint]
    trees: dict[str, Tree]
    leaves: dict[tuple[int, str], str]
    blobs: dict[str, bytes]

    def occurrences(self, digest: str) -> list[tuple[int, str]]:
        return sorted(key for key, found in self.leaves.items() if found == digest)


class Simulator:
    """Applies the syscalls of traces, in completion order, to a :class:`FileSystemModel` of ``root``.

    :param root: the directory whose files are followed (its own entry is taken as durable).
    :param initial: what it held before the first trace (:func:`scan`).
    """

    def __init__(self, root: Path, initial: dict[str, bytes | None], seed: int = 0) -> None:
        self.root = os.path.realpath(root)
        self.model = FileSystemModel(initial, seed)
        self.points: list[CrashPoint] = []
        self.trees: dict[str, Tree] = {}
        self.leaves: dict[tuple[int, str], str] = {}
        self.trace = 0
        self._base = 0  # trace lines of earlier traces: sequence numbers go on across traces
        self._cwd: str | None = None
        self._record("(start)", 0.0)

    # paths

    def relative(self, path: str | None) -> str | None:
        """``path`` relative to the root (``""``: the root itself), or ``None`` when it lies outside it."""
        if path is None or path.endswith(" (deleted)"):
            return None
        path = os.path.normpath(path)
        if path == self.root:
            return ""
        if not path.startswith(self.root + "/"):
            return None
        return path[len(self.root) + 1 :]

    def _resolve(self, dirfd: str | None, name: bytes) -> str | None:
        """The path ``name`` names, relative to ``dirfd`` (``None``: the working directory) and to the root."""
        text = os.fsdecode(name)
        if text.startswith("/"):
            return self.relative(text)
        if dirfd is None:
            if self._cwd is None:
                raise TraceError(f"a relative path ({text}) before the working directory is known")
            return self.relative(os.path.join(self._cwd, text))
        _fd, base = annotation(dirfd)
        if dirfd.startswith("AT_FDCWD") and base is not None:
            self._cwd = base  # what the calls without a directory fd are relative to
        return self.relative(os.path.join(base, text)) if base is not None else None

    # recording

    def _record(self, syscall: str, when: float) -> None:
        index = len(self.points)
        if self.points:
            last = self.points[-1]
            self.points[-1] = dataclasses.replace(last, until=when)
        self.points.append(CrashPoint(index, syscall, when, float("inf"), self.trace, tuple(self.model.unsynced())))
        for variant in VARIANTS:
            tree = self.model.tree(variant)
            digest = tree.digest
            self.trees.setdefault(digest, tree)
            self.leaves[(index, variant)] = digest

    def result(self) -> Simulation:
        return Simulation(self.points, self.trees, self.leaves, self.model.blobs)

    # applying

    def run(self, calls: Sequence[Syscall]) -> None:
        """Apply one trace's calls (one process tree); crash points are recorded as they go."""
        tables: dict[int, dict[int, _Fd]] = {}
        main = calls[0].tid if calls else 0
        table_of: dict[int, int] = {main: main}
        tables[main] = {}
        for call in calls:
            table = tables[table_of.get(call.tid, main)]
            if not call.ok:
                continue
            described = self._apply(call, table, tables, table_of)
            if described is not None:
                self._record(described, call.end)
        self.trace += 1
        self._base += max((call.seq_end for call in calls), default=0) + 1

    def _fd(self, table: dict[int, _Fd], arg: str, writing: bool = False) -> tuple[_Fd | None, str | None]:
        """The tracked fd of ``arg`` (``3<path>``) and its annotated relative path.

        An fd the trace never opened is followed by its path, except to write through it: where it writes
        depends on a file position the model does not know.
        """
        number, path = annotation(arg)
        relative = self.relative(path)
        try:
            tracked = table.get(int(number))
        except ValueError:
            return None, relative
        if tracked is None and relative is not None:
            if writing:
                raise TraceError(f"a write to {relative} through fd {number}, which the trace never opened")
            inode = self.model.lookup(relative)
            tracked = _Fd(inode, relative, False) if inode is not None else None
        return tracked, relative

    def _apply(
        self, call: Syscall, table: dict[int, _Fd], tables: dict[int, dict[int, _Fd]], table_of: dict[int, int]
    ) -> str | None:
        name, args, seq, started = call.name, call.args, call.seq_end + self._base, call.seq_start + self._base
        model = self.model
        if name in ("clone", "clone3", "fork", "vfork"):
            child = call.value
            if "CLONE_FILES" in " ".join(args) or "CLONE_THREAD" in " ".join(args):
                table_of[child] = table_of.get(call.tid, call.tid)
            else:
                table_of[child] = child
                tables[child] = {fd: dataclasses.replace(state) for fd, state in table.items()}
            return None
        if name in ("open", "openat", "creat"):
            if name == "openat":
                dirfd, path_arg, flags_arg = args[0], args[1], args[2]
            elif name == "open":
                dirfd, path_arg, flags_arg = None, args[0], args[1]
            else:
                dirfd, path_arg, flags_arg = None, args[0], "O_WRONLY|O_CREAT|O_TRUNC"
            flags = 0
            for flag in flags_arg.split("|"):
                flags |= _FLAG_NAMES.get(flag.strip(), 0)
            fd_number, opened = annotation(call.ret)
            if dirfd is not None and dirfd.startswith("AT_FDCWD<"):
                self._cwd = annotation(dirfd)[1] or self._cwd
            relative = self.relative(opened) if opened is not None else self._resolve(dirfd, decode_string(path_arg))
            if relative is None:
                table.pop(int(fd_number), None)
                return None
            if flags & _FLAG_NAMES["O_TMPFILE"] == _FLAG_NAMES["O_TMPFILE"] and _FLAG_NAMES["O_TMPFILE"]:
                raise TraceError(f"O_TMPFILE under the root ({relative}) is not modelled")
            described = None
            inode = model.lookup(relative)
            if inode is None:
                if not flags & os.O_CREAT:
                    raise TraceError(f"{relative}: opened without O_CREAT but not in the model")
                inode = model.create(relative, seq)
                described = f"{name}({relative}, O_CREAT) = {fd_number}"
            elif flags & os.O_TRUNC and flags & O_ACCMODE and model.inodes[inode].current:
                model.truncate(inode, 0, seq)
                described = f"{name}({relative}, O_TRUNC) = {fd_number}"
            table[int(fd_number)] = _Fd(inode, relative, bool(flags & os.O_APPEND))
            return described
        if name == "close":
            number, _path = annotation(args[0])
            table.pop(int(number), None)
            return None
        if name == "fcntl" and not args[1].startswith("F_DUPFD"):
            return None
        if name in ("dup", "dup2", "dup3", "fcntl"):  # fcntl(F_DUPFD...): what os.dup does
            number, _path = annotation(args[0])
            duplicate, _ = annotation(call.ret)
            state = table.get(int(number))
            if state is not None:
                table[int(duplicate)] = state  # shares the open file description: the same object
            else:
                table.pop(int(duplicate), None)
            return None
        if name == "lseek":
            tracked, _relative = self._fd(table, args[0])
            if tracked is not None:
                tracked.position = call.value
            return None
        if name in ("write", "pwrite64", "writev", "pwritev", "pwritev2"):
            tracked, relative = self._fd(table, args[0], writing=name in ("write", "writev"))
            if tracked is None or tracked.inode is None:
                return None
            if name in ("writev", "pwritev", "pwritev2"):
                data = b"".join(decode_string(f'"{part}"') for part in re.findall(r'iov_base="([^"]*)"', args[1]))
            else:
                data = decode_string(args[1])
            data = data[: call.value]
            if not data:
                return None
            where = tracked.path or relative
            if name in ("pwrite64", "pwritev", "pwritev2"):
                at = model.write(tracked.inode, int(args[-1] if name == "pwrite64" else args[3]), data, seq)
                return f"{name}({where}, {len(data)} bytes at {at})"
            at = model.write(tracked.inode, None if tracked.append else tracked.position, data, seq)
            tracked.position = at + len(data)
            return f"{name}({where}, {len(data)} bytes at {at})"
        if name in ("ftruncate", "truncate"):
            if name == "ftruncate":
                tracked, relative = self._fd(table, args[0])
                inode = tracked.inode if tracked is not None else None
            else:
                relative = self._resolve(None, decode_string(args[0]))
                inode = model.lookup(relative) if relative is not None else None
            if inode is None:
                return None
            model.truncate(inode, int(args[1]), seq)
            return f"{name}({relative}, {int(args[1])})"
        if name in ("fsync", "fdatasync"):
            tracked, relative = self._fd(table, args[0])
            if tracked is None or tracked.inode is None:
                return None  # outside the root, or the root itself (its own entry is outside the model)
            if model.sync(tracked.inode, started):
                return f"{name}({tracked.path or relative or '.'})"
            return None
        if name in ("mkdir", "mkdirat"):
            relative = (
                self._resolve(None, decode_string(args[0]))
                if name == "mkdir"
                else self._resolve(args[0], decode_string(args[1]))
            )
            if relative is None:
                return None
            model.create(relative, seq, directory=True)
            return f"{name}({relative})"
        old: str | None
        new: str | None
        if name in ("rename", "renameat", "renameat2"):
            if name == "rename":
                old, new = self._resolve(None, decode_string(args[0])), self._resolve(None, decode_string(args[1]))
            else:
                old = self._resolve(args[0], decode_string(args[1]))
                new = self._resolve(args[2], decode_string(args[3]))
                if name == "renameat2" and "RENAME_EXCHANGE" in args[4]:
                    raise TraceError("renameat2(RENAME_EXCHANGE) is not modelled")
            if old is None and new is None:
                return None
            if old is None or new is None:
                raise TraceError(f"rename across the root's boundary: {args[:4]}")
            model.rename(old, new, seq)
            return f"{name}({old} -> {new})"
        if name in ("link", "linkat"):
            if name == "link":
                old, new = self._resolve(None, decode_string(args[0])), self._resolve(None, decode_string(args[1]))
            else:
                old = self._resolve(args[0], decode_string(args[1]))
                new = self._resolve(args[2], decode_string(args[3]))
            if new is None:
                return None
            if old is None:
                raise TraceError(f"hard link into the root from outside it: {args}")
            model.link(old, new, seq)
            return f"{name}({old} -> {new})"
        if name in ("unlink", "unlinkat", "rmdir"):
            relative = (
                self._resolve(args[0], decode_string(args[1]))
                if name == "unlinkat"
                else self._resolve(None, decode_string(args[0]))
            )
            if relative is None:
                return None
            model.unlink(relative, seq)
            kind = "rmdir" if name == "rmdir" or (name == "unlinkat" and "AT_REMOVEDIR" in args[2]) else name
            return f"{kind}({relative})"
        if name in ("sendfile", "copy_file_range", "fallocate"):
            target = args[2] if name == "copy_file_range" else args[0]
            if self.relative(annotation(target)[1]) is not None:
                raise TraceError(f"{name} into {annotation(target)[1]} is not modelled")
            return None
        if name in ("symlink", "symlinkat"):
            link = decode_string(args[-1])
            if self._resolve(args[1] if name == "symlinkat" else None, link) is not None:
                raise TraceError(f"{name} under the root is not modelled")
            return None
        return None


def simulate(root: Path, initial: dict[str, bytes | None], traces: Sequence[Path], seed: int = 0) -> Simulation:
    """Every crash point of the commands traced in ``traces`` (run one after the other over ``root``)."""
    simulator = Simulator(root, initial, seed)
    for trace in traces:
        simulator.run(parse_trace(trace))
    return simulator.result()
