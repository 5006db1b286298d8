"""Per-call random streams, so that a replayed call generates the ids its recording did.

An emulator draws generated values (message ids, instance ids, ARNs with random
parts, upload ids ...) from random sources.  Replaying only the mutating calls
of a history would draw different values.  So each recorded mutating call gets
a random 63-bit ``seed`` (kept in its log entry), runs inside a random stream
seeded with it, and its replay runs inside the same stream again: same seed,
same draws, same ids.

A :class:`ThreadSeeder` hooks the random sources it is given so that, *in a
thread inside* :meth:`ThreadSeeder.seeded`, they draw from that thread's seeded
stream, and everywhere else from what they drew from before.  Streams are per
thread, so concurrent requests cannot take values from each other's stream,
and unseeded work (reads, other threads) is untouched.  Hooked:

* the ``getrandbits``, ``random`` and ``randbytes`` of each given
  :class:`random.Random` instance (everything else in ``random.Random`` draws
  through these);
* ``os.urandom`` when asked (``uuid.uuid4()``, ``secrets`` and code calling
  ``os.urandom`` directly); real entropy outside seeded calls.

:func:`moto_seeder` hooks moto's ``mock_random``, the stdlib's shared
``random`` instance and ``os.urandom``, and moto's clocks (:func:`hook_clock`):
a call recorded with the clock stopped at its arrival time is replayed at that
same time, so timestamps, visibility timeouts and expiries come out as they did.
Only values are frozen, never the passage of time: while a seeded call waits
(``time.sleep``, or a ``threading.Condition``/``Event`` wait), its clock moves
on by the real time waited (:func:`waited` tells how far), so a loop that waits
until a deadline still ends.
Key pairs made by ``cryptography`` (KMS RSA/ECC keys, EC2 key pairs, the key
moto signs SNS notifications with) are drawn from the call's stream too
(:mod:`replay.record.keys`).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import random
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, Protocol

from .keys import hook_key_generation

__all__ = [
    "Seeder",
    "ThreadSeeder",
    "generic_seeder",
    "hook_clock",
    "moto_seeder",
    "on_import",
    "stable_seed",
    "waited",
]

# .seed, .rng, .bytes, .keys, .clock, .waited: the current thread's seeded streams and clock, inside seeded()
_STREAM = threading.local()
_HOOKED = "_replay_seeded"
_EXCLUDED: tuple[str, ...] = ()  # modules whose draws always come from the shared sources
_PLUMBING = {"random", "uuid", "secrets", __name__}  # modules a draw passes through on its way to a hook


class Seeder(Protocol):
    """Runs work inside a random stream chosen by a seed, and at a fixed time when ``clock`` is given."""

    def seeded(self, seed: int, clock: float | None = None) -> contextlib.AbstractContextManager[None]: ...


def _excluded() -> bool:
    """Is the code that asked for this draw (past ``random``, ``uuid``, ``secrets`` ...) in an excluded module?"""
    if not _EXCLUDED:
        return False
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name not in _PLUMBING:
            return bool(name.startswith(_EXCLUDED))
        frame = frame.f_back
    return False


def _current(kind: str = "rng") -> random.Random | None:
    """This thread's seeded stream of ``kind`` (``rng``, ``bytes`` or ``keys``), made on first use; ``None`` outside."""
    seed = getattr(_STREAM, "seed", None)
    if seed is None or (kind == "bytes" and _excluded()):
        return None
    rng: random.Random | None = getattr(_STREAM, kind, None)
    if rng is None:  # made lazily: a generator costs microseconds to seed, and many calls draw no bytes
        rng = random.Random(seed if kind == "rng" else f"{seed}/{kind}")
        setattr(_STREAM, kind, rng)
    return rng


def _hook_generator(generator: random.Random) -> None:
    if getattr(generator, _HOOKED, False):
        return
    _PLUMBING.add(type(generator).__module__)  # e.g. moto's MotoRandom.uuid4 calling getrandbits
    shared_bits: Callable[[int], int] = generator.getrandbits
    shared_random: Callable[[], float] = generator.random

    stream = _STREAM

    def getrandbits(k: int) -> int:  # the hot path: a request id alone is dozens of draws
        rng = getattr(stream, "rng", None)
        if rng is None:
            if getattr(stream, "seed", None) is None:
                return shared_bits(k)
            rng = _current()
        return rng.getrandbits(k)  # type: ignore[union-attr]

    def random_() -> float:
        rng = _current()
        return shared_random() if rng is None else rng.random()

    def randbytes(n: int) -> bytes:
        return getrandbits(n * 8).to_bytes(n, "little")

    # instance attributes shadow the class's methods, also for calls random.Random makes on itself
    generator.getrandbits = getrandbits  # type: ignore[method-assign]
    generator.random = random_  # type: ignore[method-assign]
    generator.randbytes = randbytes  # type: ignore[method-assign]
    setattr(generator, _HOOKED, True)


def _hook_urandom() -> None:
    if getattr(os.urandom, _HOOKED, False):
        return
    entropy = os.urandom

    def urandom(size: int, /) -> bytes:
        rng = _current("bytes")
        return entropy(size) if rng is None else rng.randbytes(size)

    setattr(urandom, _HOOKED, True)
    os.urandom = urandom
    _SWAPS[id(entropy)] = (entropy, urandom)  # ``from os import urandom`` done before the hook


class ThreadSeeder:
    """Hooks ``generators`` (and ``os.urandom`` if ``urandom``) for per-thread seeded streams.

    Hooking is idempotent and process-wide; the streams themselves are per thread.
    ``os.urandom`` draws from a stream of its own, so that extra byte draws (an
    emulator initialising something lazily) cannot shift the generators' values.
    Byte draws (``os.urandom``, hence ``uuid.uuid4()``) made by modules named in
    ``exclude`` (prefixes) always come from real entropy: that is where an
    emulator's internal bookkeeping lives.  Generator draws are not checked (the
    check walks the stack, and a request id alone is dozens of draws).
    """

    def __init__(
        self, generators: Iterable[random.Random] = (), urandom: bool = False, exclude: Iterable[str] = ()
    ) -> None:
        global _EXCLUDED
        for generator in generators:
            _hook_generator(generator)
        if urandom:
            _hook_urandom()
        _EXCLUDED = tuple(sorted(set(_EXCLUDED) | set(exclude)))

    def seeded(self, seed: int, clock: float | None = None) -> contextlib.AbstractContextManager[None]:
        """Within this block, this thread's hooked sources draw from streams seeded with ``seed``,
        and hooked clocks (:func:`hook_clock`) read ``clock`` (Unix seconds) when it is given."""
        return _Seeded(seed, clock)


class _Seeded(contextlib.AbstractContextManager[None]):
    """One seeded block (a class, not a generator: it is entered once per recorded call)."""

    __slots__ = ("clock", "previous", "seed")

    def __init__(self, seed: int, clock: float | None) -> None:
        self.seed = seed
        self.clock = clock
        self.previous: tuple[Any, ...] = ()

    def __enter__(self) -> None:
        state = _STREAM.__dict__  # this thread's
        self.previous = (
            state.get("seed"),
            state.get("rng"),
            state.get("bytes"),
            state.get("clock"),
            state.get("waited", 0.0),
            state.get("keys"),
        )
        if _CLOCK_MODULES or _ON_IMPORT or _EVERY_MODULE[0]:
            _hook_new_modules()
        state["seed"], state["rng"], state["bytes"] = self.seed, None, None
        state["clock"], state["waited"], state["keys"] = self.clock, 0.0, None

    def __exit__(self, *exc_info: object) -> None:
        state = _STREAM.__dict__
        state["seed"], state["rng"], state["bytes"], state["clock"], state["waited"], state["keys"] = self.previous


# clocks

_REAL_DATETIME = datetime.datetime
_REAL_DATE = datetime.date
_REAL_TIME = time.time
_REAL_TIME_NS = time.time_ns
_REAL_SLEEP = time.sleep
_REAL_WAIT = threading.Condition.wait
_CLOCK_MODULES: list[str] = []  # prefixes of modules whose datetime globals read the frozen clock
_EVERY_MODULE = [False]  # True: every module but the standard library's and replay's reads it (the generic seeder)
_NOT_APP = ("replay", "_pytest", "pytest", "pluggy", "hypothesis")
_SEEN_MODULES = [0]
_ON_IMPORT: dict[str, list[Callable[[types.ModuleType], None]]] = {}  # module name -> what to do once it is imported


def _frozen() -> float | None:
    clock: float | None = getattr(_STREAM, "clock", None)
    return clock if clock is None else clock + _STREAM.waited


def waited() -> float:
    """Seconds the current thread's seeded clock has moved on by waiting (0 outside a seeded call)."""
    return getattr(_STREAM, "waited", 0.0) if getattr(_STREAM, "clock", None) is not None else 0.0


def _sleep(seconds: float, /) -> None:
    if getattr(_STREAM, "clock", None) is None:
        return _REAL_SLEEP(seconds)
    started = time.monotonic()
    try:
        _REAL_SLEEP(seconds)
    finally:
        _STREAM.waited += time.monotonic() - started
    return None


def _condition_wait(self: threading.Condition, timeout: float | None = None) -> bool:
    if getattr(_STREAM, "clock", None) is None:
        return _REAL_WAIT(self, timeout)
    started = time.monotonic()
    try:
        return _REAL_WAIT(self, timeout)
    finally:
        _STREAM.waited += time.monotonic() - started


class _ClockMeta(type):
    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, _REAL_DATETIME)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, _REAL_DATETIME)


class _ClockDateTime(_REAL_DATETIME, metaclass=_ClockMeta):
    """Stands in for ``datetime.datetime`` in hooked modules: real datetimes out, a frozen ``now``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _REAL_DATETIME(*args, **kwargs)

    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> Any:
        clock = _frozen()
        return _REAL_DATETIME.now(tz) if clock is None else _REAL_DATETIME.fromtimestamp(clock, tz)

    @classmethod
    def utcnow(cls) -> Any:
        clock = _frozen()
        if clock is None:
            return _REAL_DATETIME.now(datetime.timezone.utc).replace(tzinfo=None)
        return _REAL_DATETIME.fromtimestamp(clock, datetime.timezone.utc).replace(tzinfo=None)

    @classmethod
    def today(cls) -> Any:
        return cls.now()


class _DateMeta(type):
    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, _REAL_DATE)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, _REAL_DATE)


class _ClockDate(_REAL_DATE, metaclass=_DateMeta):
    """Stands in for ``datetime.date`` in hooked modules: real dates out, a frozen ``today``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _REAL_DATE(*args, **kwargs)

    @classmethod
    def today(cls) -> Any:
        clock = _frozen()
        return _REAL_DATE.today() if clock is None else _REAL_DATE.fromtimestamp(clock)


_CLOCK_DATETIME_MODULE = types.ModuleType("datetime")
_CLOCK_DATETIME_MODULE.__dict__.update(datetime.__dict__)
_CLOCK_DATETIME_MODULE.datetime = _ClockDateTime  # type: ignore[attr-defined]
_CLOCK_DATETIME_MODULE.date = _ClockDate  # type: ignore[attr-defined]


def _time() -> float:
    clock = _frozen()
    return _REAL_TIME() if clock is None else clock


def _time_ns() -> int:
    clock = _frozen()
    return _REAL_TIME_NS() if clock is None else int(clock * 1_000_000_000)


# module globals a hooked module's own code reads the clock through, and what each becomes
# (by id, each with the original itself, kept alive so that its id cannot be taken by another object)
_SWAPS: dict[int, tuple[object, object]] = {
    id(original): (original, replacement)
    for original, replacement in (
        (datetime, _CLOCK_DATETIME_MODULE),
        (_REAL_DATETIME, _ClockDateTime),
        (_REAL_DATE, _ClockDate),
        (_REAL_TIME, _time),
        (_REAL_TIME_NS, _time_ns),
    )
}


def _clock_module(name: str, prefixes: tuple[str, ...]) -> bool:
    """Does module ``name`` read the frozen clock (an emulator's module, not the standard library's)?"""
    if name.startswith(prefixes):
        return True
    if not _EVERY_MODULE[0]:
        return False
    top = name.partition(".")[0]
    return top not in sys.stdlib_module_names and top not in _NOT_APP and not top.startswith("_")


def _hook_new_modules() -> None:
    """Point the ``datetime`` globals of matching modules imported since the last look at the clock."""
    if len(sys.modules) == _SEEN_MODULES[0]:
        return
    _SEEN_MODULES[0] = len(sys.modules)
    prefixes = tuple(_CLOCK_MODULES)
    for name, module in list(sys.modules.items()):
        if module is None or not _clock_module(name, prefixes):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        swaps = _SWAPS
        for global_name, current in list(namespace.items()):
            swap = swaps.get(id(current))
            if swap is not None and swap[0] is current:
                namespace[global_name] = swap[1]
    for name in [name for name in _ON_IMPORT if sys.modules.get(name) is not None]:
        for action in _ON_IMPORT.pop(name):
            action(sys.modules[name])


def on_import(name: str, action: Callable[[types.ModuleType], None]) -> None:
    """Run ``action(module)`` once module ``name`` is imported: now if it is, else before the next seeded
    call that finds it imported (modules an emulator imports on first use are patched before they draw)."""
    module = sys.modules.get(name)
    if module is not None:
        action(module)
    else:
        _ON_IMPORT.setdefault(name, []).append(action)
        _SEEN_MODULES[0] = 0


def hook_clock(module_prefixes: Iterable[str]) -> None:
    """Let work inside :meth:`ThreadSeeder.seeded` with a ``clock`` see that time.

    ``time.time`` and ``time.time_ns`` are hooked process-wide (real time outside
    seeded calls); the ``datetime``/``date`` globals of modules under
    ``module_prefixes`` (the module or the classes), and their ``time``/``time_ns``
    globals bound by ``from time import time`` before the hook, are swapped, now
    and for modules imported later, for stand-ins whose ``now``/``utcnow``/``today``
    read the frozen clock and that otherwise make and recognise real datetimes.
    ``time.sleep`` and ``threading.Condition.wait`` (hence ``Event.wait``,
    ``queue.Queue.get`` ...) are hooked too: inside a seeded call, the time they
    wait moves that call's clock on.
    """
    if getattr(time.time, _HOOKED, False) is False:
        setattr(_time, _HOOKED, True)
        time.time = _time
    if getattr(time.time_ns, _HOOKED, False) is False:
        setattr(_time_ns, _HOOKED, True)
        time.time_ns = _time_ns
    if getattr(time.sleep, _HOOKED, False) is False:
        setattr(_sleep, _HOOKED, True)
        time.sleep = _sleep  # type: ignore[assignment]
    if getattr(threading.Condition.wait, _HOOKED, False) is False:
        setattr(_condition_wait, _HOOKED, True)
        threading.Condition.wait = _condition_wait  # type: ignore[method-assign]
    _CLOCK_MODULES.extend(prefix for prefix in module_prefixes if prefix not in _CLOCK_MODULES)
    _SEEN_MODULES[0] = 0
    _hook_new_modules()


def stable_seed(*parts: str) -> int:
    """A 63-bit seed that depends only on ``parts``, the same in every process."""
    digest = hashlib.sha256("/".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _seed_moto_backend_creation(seeder: ThreadSeeder) -> None:
    """Create each moto backend (one per service, account and region) in a stream of its own.

    moto creates a region's backend on first use, and some create default
    resources then (EC2's default VPC, subnets and security groups).  Run in
    whatever stream the first call had, those ids would depend on which call
    came first in this process; run in a stream seeded from (service, account,
    region), they are the same in every process, and the first call's own
    stream is left as if no backend had been created.  moto's reset re-creates
    each existing backend; it does so in the same streams.

    This holds in a process where the seeder was installed before moto was
    first used (``replay serve`` does that): moto fills some module-level
    caches the first time a backend is made, and those fills draw too.
    """
    from moto.core.base_backend import AccountSpecificBackend

    if getattr(AccountSpecificBackend, _HOOKED, False):
        return
    create = AccountSpecificBackend.__getitem__

    def __getitem__(self: Any, region_name: str) -> Any:
        if region_name in self.keys():
            return create(self, region_name)
        with seeder.seeded(stable_seed("moto-backend", self.service_name, self.account_id, region_name)):
            return create(self, region_name)

    def reset(self: Any) -> None:  # moto's reset re-creates each backend: in the same stream as creation
        for region_name, backend in self.items():
            with seeder.seeded(stable_seed("moto-backend", self.service_name, self.account_id, region_name)):
                backend.reset()

    AccountSpecificBackend.__getitem__ = __getitem__  # type: ignore[method-assign]
    AccountSpecificBackend.reset = reset  # type: ignore[method-assign]
    setattr(AccountSpecificBackend, _HOOKED, True)


_REAL_UUID1 = uuid.uuid1
_UUID_EPOCH = 0x01B21DD213814000  # 100-ns intervals between 1582-10-15 and 1970-01-01


def _uuid1(node: int | None = None, clock_seq: int | None = None) -> uuid.UUID:
    """``uuid.uuid1`` that, in a seeded call, takes its time from the call's clock and its clock sequence
    and node (a random multicast one, as RFC 4122 allows) from the call's stream."""
    rng = _current("bytes")
    if rng is None:
        return _REAL_UUID1(node, clock_seq)
    timestamp = _time_ns() // 100 + _UUID_EPOCH
    if clock_seq is None:
        clock_seq = rng.getrandbits(14)
    if node is None:
        node = rng.getrandbits(48) | 0x010000000000
    fields = (
        timestamp & 0xFFFFFFFF,
        (timestamp >> 32) & 0xFFFF,
        (timestamp >> 48) & 0x0FFF,
        (clock_seq >> 8) & 0x3F,
        clock_seq & 0xFF,
        node,
    )
    return uuid.UUID(fields=fields, version=1)


def _hook_stdlib_draws() -> None:
    """Make every draw of the standard library go through the hooked sources: ``random``'s module-level
    functions bound before the hook, ``SystemRandom`` (hence ``secrets``), and ``uuid.uuid1``."""
    shared = random._inst
    _hook_generator(shared)
    unhooked = {name: getattr(random, name) for name in ("random", "getrandbits", "randbytes")}
    for name, original in unhooked.items():
        hooked = getattr(shared, name)
        if original is not hooked:
            setattr(random, name, hooked)
            _SWAPS[id(original)] = (original, hooked)  # ``from random import random`` done before the hook
    _hook_urandom()
    random._urandom = os.urandom  # type: ignore[attr-defined]  # what SystemRandom draws through
    if not getattr(uuid.uuid1, _HOOKED, False):
        setattr(_uuid1, _HOOKED, True)
        _SWAPS[id(uuid.uuid1)] = (uuid.uuid1, _uuid1)
        uuid.uuid1 = _uuid1


def generic_seeder() -> ThreadSeeder:
    """A seeder for any Python WSGI emulator: the standard library's clocks and random sources.

    Inside a seeded call, ``time.time``/``time_ns``, ``datetime.now``/``utcnow``/``today`` and
    ``date.today`` (in every module but the standard library's and replay's own) read the call's
    recorded time, and ``random``'s functions, ``random.SystemRandom``, ``secrets``, ``os.urandom``,
    ``uuid.uuid1``/``uuid4`` and key pairs made by ``cryptography`` draw from the call's stream.
    Outside seeded calls (at import, in background threads) every source is the real one.
    Install it before the emulator is imported, so that names it binds at import are the hooked ones.
    """
    seeder = ThreadSeeder([random._inst], urandom=True)
    _hook_stdlib_draws()
    _EVERY_MODULE[0] = True
    hook_clock(())
    hook_key_generation(lambda: _current("keys"))
    return seeder


def moto_seeder() -> ThreadSeeder:
    """A seeder for moto: its ``mock_random``, the stdlib's shared generator and ``os.urandom``.

    moto.core's own bookkeeping ids are left unseeded, and every backend is
    created in a stream of its own (:func:`_seed_moto_backend_creation`).
    """
    from moto.moto_api._internal import mock_random

    seeder = ThreadSeeder([mock_random, random._inst], urandom=True, exclude=["moto.core"])
    _seed_moto_backend_creation(seeder)
    hook_clock(["moto."])
    hook_key_generation(lambda: _current("keys"))
    return seeder
