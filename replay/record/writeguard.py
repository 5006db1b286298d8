"""Refusing state-changing calls while persistence fails (Redis's ``MISCONF``): never acknowledge what is not kept.

When the log cannot take an entry (``ENOSPC``, ``EIO``, ``EROFS`` ...), or a
checkpoint or a snapshot cannot be written, the backend tells its
:class:`WriteGuard` (:meth:`WriteGuard.failed`, with the operation to retry).
From then on:

* every state-changing call is answered ``503`` with an AWS-style
  ``ServiceUnavailable`` error naming the data dir and the cause, *before* it
  reaches the emulator (:func:`refusal`); reads keep working;
* a thread of the guard retries the failed operation, at most once a second
  (with backoff for the costly ones: a checkpoint), and when it succeeds the
  guard opens again: no restart is needed when space comes back;
* the health endpoint says ``"features": {"persistence": "error"}`` with the
  cause; one log line when the guard closes, one when it opens again.

Nothing acknowledged is lost: the call whose entry could not be written is
itself answered 503 (it may have taken effect in memory, unrecorded: the only
such call).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from .classify import Call

__all__ = [
    "WriteGuard",
    "refusal",
    "unavailable",
]

logger = logging.getLogger("replay.persistence")

_MAX_BACKOFF = 30.0


class WriteGuard:
    """Whether state-changing calls may go on for ``data_dir`` (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.cause: str | None = None  # why persistence fails; None: it works
        self.since: float | None = None
        self._retry: Callable[[], object] | None = None
        self._backoff = 1.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    @property
    def ok(self) -> bool:
        return self.cause is None

    def failed(self, cause: str, retry: Callable[[], object], backoff: float = 1.0) -> None:
        """Persistence failed (``cause``, one line); ``retry`` (raising on failure) is tried until it works."""
        with self._lock:
            if self._stopped:
                return
            first = self.cause is None
            self.cause, self._retry, self._backoff = cause, retry, max(1.0, backoff)
            if first:
                self.since = time.time()
                logger.error(
                    "persistence failed for %s: %s; refusing state-changing calls until a write succeeds",
                    self.data_dir,
                    cause,
                )
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._retrying, name="replay-persistence-retry", daemon=True)
                self._thread.start()

    def _retrying(self) -> None:
        delay = self._backoff
        while not self._wake.wait(delay):
            with self._lock:
                retry, cause = self._retry, self.cause
            if retry is None or cause is None:
                return
            try:
                retry()
            except Exception as exc:  # still failing: try again later
                with self._lock:
                    self.cause = _one_line(exc) or cause
                delay = min(_MAX_BACKOFF, delay * 2) if self._backoff > 1.0 else 1.0
                continue
            with self._lock:
                if self._retry is not retry:  # failed again meanwhile, with another operation to retry
                    delay = self._backoff
                    continue
                self.cause, self.since, self._retry = None, None, None
            logger.warning("persistence works again for %s: accepting state-changing calls", self.data_dir)
            return

    def status(self) -> dict[str, object] | None:
        """``{"cause", "since"}`` while persistence fails, else ``None``."""
        cause, since = self.cause, self.since
        return None if cause is None else {"cause": cause, "since": since}

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._wake.set()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def refusal(guard: WriteGuard, call: Call, json_protocol: bool) -> tuple[str, list[tuple[str, str]], bytes]:
    """The answer to a state-changing call while ``guard`` is closed: status, headers and an AWS-style body."""
    message = (
        f"persistence failed for {guard.data_dir}: {guard.cause}; state-changing calls are refused "
        "until a write succeeds again (reads still work)"
    )
    return unavailable(message, call.service, json_protocol)


def unavailable(message: str, service: str, json_protocol: bool) -> tuple[str, list[tuple[str, str]], bytes]:
    """A 503 ``ServiceUnavailable`` answer in the AWS error format of ``service``: status, headers and body."""
    if json_protocol:
        body = orjson.dumps({"__type": "ServiceUnavailable", "message": message, "Message": message})
        headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-ErrorType", "ServiceUnavailable")]
    else:
        escaped = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if service == "s3":
            text = f"<Error><Code>ServiceUnavailable</Code><Message>{escaped}</Message></Error>"
        else:
            text = (
                "<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code>"
                f"<Message>{escaped}</Message></Error><RequestId>replay-refused</RequestId></ErrorResponse>"
            )
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + text.encode("utf-8")
        headers = [("Content-Type", "application/xml")]
    headers.append(("Content-Length", str(len(body))))
    return "503 Service Unavailable", headers, body
