"""Service rules applied to a recorded call before it is replayed.

Only what the generic machinery (:mod:`replay.mapping`, :mod:`replay.seeding`)
cannot do is here, each rule documented:

* **SQS ReceiveMessage** is replayed with ``WaitTimeSeconds=0``, also when the
  recording named no wait (the queue's ``ReceiveMessageWaitTimeSeconds`` would
  apply).  Each recorded receive ran as an instant attempt (:mod:`replay.longpoll`),
  so on replay the messages it got are there at once; a long poll must never
  make a start-up wait (LocalStack's replay once took hours because of
  recorded long polls).
"""

from __future__ import annotations

from .entry import Entry, Request
from .longpoll import without_wait

__all__ = ["prepare"]


def prepare(entry: Entry) -> Request:
    """The request to reissue for ``entry``."""
    if entry.service == "sqs" and entry.operation == "ReceiveMessage":
        return without_wait(entry.request)
    return entry.request
