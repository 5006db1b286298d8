"""Values that are points in time, and the window a call's own times fall in.

A seeded replay runs each call at its recorded time (:mod:`replay.record.seeding`),
so the times it generates come back equal.  A time that differs is explained
by the clock only when it is one of the call's *own* times: both the recorded
and the replayed value parse as times (:func:`parse_time`) in the same form,
and both lie in the call's window (:class:`CallWindow`): from its arrival
minus :data:`TOLERANCE` to its arrival plus the time it spent waiting plus
:data:`TOLERANCE`.  A date moved by years, a time from an earlier call, or a
replay that read a clock other than the recorded one are divergences.

Forms recognised: ISO 8601 date-times (``T`` or space, optional fraction and
zone; a date-time without a zone is UTC) and dates, HTTP dates (RFC 1123),
and Unix seconds (10 integer digits) or milliseconds (13), as numbers or as
strings of digits.  A number is never a time because it is large: only when
it reads as one inside the window.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import re
from typing import Any

__all__ = ["TOLERANCE", "CallWindow", "parse_time"]

TOLERANCE = 1.0
"""Seconds a call's own times may lie before its arrival or after its end (times truncated to seconds)."""

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?"
)
_HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} (GMT|UTC|[+-]\d{4})")
_DIGITS = re.compile(r"(\d{10}|\d{13})(\.\d+)?")
_SECONDS = (1e9, 1e10)  # 2001-09-09 .. 2286-11-20
_MILLISECONDS = (1e12, 1e13)


def _number(value: float, fraction: bool) -> tuple[float, float, str] | None:
    if _SECONDS[0] <= value < _SECONDS[1]:
        return float(value), 1e-6 if fraction else 1.0, "seconds"
    if _MILLISECONDS[0] <= value < _MILLISECONDS[1]:
        return value / 1000.0, 1e-3, "milliseconds"
    return None


def _iso(match: re.Match[str]) -> tuple[float, float, str] | None:
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime.datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=datetime.timezone.utc,
        )
    except ValueError:
        return None
    instant = moment.timestamp()
    if zone and zone != "Z":
        sign = -1 if zone[0] == "+" else 1
        digits = zone[1:].replace(":", "")
        instant += sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    if fraction:
        instant += int(fraction) / 10 ** len(fraction)
        resolution = 10.0 ** -len(fraction)
    elif hour is None:
        resolution = 86400.0
    else:
        resolution = 1.0 if second is not None else 60.0
    form = "date" if hour is None else "iso"
    return instant, resolution, form


def parse_time(value: Any) -> tuple[float, float, str] | None:
    """``(unix seconds, resolution in seconds, form)`` when ``value`` is a point in time, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _number(float(value), isinstance(value, float))
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    if value[0].isdigit():
        digits = _DIGITS.fullmatch(value)
        if digits is not None:
            parsed = _number(float(value), digits.group(2) is not None)
            return None if parsed is None else (parsed[0], parsed[1], "text " + parsed[2])
        iso = _ISO.fullmatch(value)
        return _iso(iso) if iso is not None else None
    if _HTTP_DATE.fullmatch(value):
        moment = email.utils.parsedate_to_datetime(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp(), 1.0, "http"
    return None


@dataclasses.dataclass(frozen=True)
class CallWindow:
    """When a recorded call ran: from ``start`` (its arrival, Unix seconds) to ``end``."""

    start: float
    end: float

    @classmethod
    def of(cls, time: float, waited: float = 0.0) -> CallWindow:
        """The window of a call that arrived at ``time`` and spent ``waited`` seconds waiting."""
        return cls(time, time + max(0.0, waited))

    def holds(self, instant: float, resolution: float) -> bool:
        """Is a time read with ``resolution`` (values are truncated to it) one of this call's own?"""
        return self.start - TOLERANCE - resolution <= instant <= self.end + TOLERANCE

    def explains(self, recorded: Any, replayed: Any) -> bool:
        """Are both values times of the same form, both inside this window?"""
        old, new = parse_time(recorded), parse_time(replayed)
        if old is None or new is None or old[2] != new[2]:
            return False
        return self.holds(old[0], old[1]) and self.holds(new[0], new[1])
