"""Points in time in every form emulators answer with, and the window a call's own times fall in."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replay.restore.timestamps import TOLERANCE, CallWindow, parse_time

T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z


@pytest.mark.parametrize(
    ("value", "instant", "form"),
    [
        ("2025-11-24T16:00:00Z", T0, "iso"),
        ("2025-11-24T16:00:00.250Z", T0 + 0.25, "iso"),
        ("2025-11-24T16:00:00.250000+00:00", T0 + 0.25, "iso"),
        ("2025-11-24T17:00:00.000+0100", T0, "iso"),
        ("2025-11-24 16:00:00", T0, "iso"),
        ("2025-11-24", T0 - 16 * 3600, "date"),
        ("Mon, 24 Nov 2025 16:00:00 GMT", T0, "http"),
        (T0, T0, "seconds"),
        (int(T0), T0, "seconds"),
        (int(T0 * 1000), T0, "milliseconds"),
        ("1764000000000", T0, "text milliseconds"),
        ("1764000000.5", T0 + 0.5, "text seconds"),
    ],
)
def test_times_in_every_form(value: object, instant: float, form: str) -> None:
    parsed = parse_time(value)
    assert parsed is not None
    assert parsed[0] == pytest.approx(instant)
    assert parsed[2] == form


@pytest.mark.parametrize(
    "value",
    [True, 0, 42, 1_200_000_000_000_000, 3.5e9 * 10, "ACTIVE", "2025-13-45T00:00:00Z", "12345", "", None, [T0]],
)
def test_other_values_are_not_times(value: object) -> None:
    assert parse_time(value) is None


def test_a_window_explains_only_the_calls_own_times_in_one_form() -> None:
    window = CallWindow.of(T0, waited=2.0)
    assert window.explains(T0, T0 + 0.5)
    assert window.explains(T0, T0 + 2.0 + TOLERANCE)  # it waited two seconds
    assert window.explains("2025-11-24T16:00:00Z", "2025-11-24T16:00:01Z")
    assert window.explains("Mon, 24 Nov 2025 15:59:59 GMT", "Mon, 24 Nov 2025 16:00:00 GMT")  # truncated seconds
    assert not window.explains(T0, T0 + 2.0 + TOLERANCE + 0.1)
    assert not window.explains(T0, T0 + 3 * 365 * 86400)  # a date moved by years
    assert not window.explains(T0 - 3600, T0)  # the recorded time is another call's
    assert not window.explains(T0, "2025-11-24T16:00:00Z")  # another form
    assert not window.explains(3, 4)  # counts are not times
    assert not window.explains("ACTIVE", "ARCHIVED")


@pytest.mark.fuzz
@given(offset=st.floats(min_value=TOLERANCE + 0.01, max_value=100 * 365 * 86400))
def test_any_time_moved_past_the_tolerance_is_not_explained(offset: float) -> None:
    window = CallWindow.of(T0)
    moved = T0 + offset
    assert not window.explains(T0, moved)
    text = datetime.datetime.fromtimestamp(moved, datetime.timezone.utc).isoformat()
    assert not window.explains("2025-11-24T16:00:00+00:00", text)
