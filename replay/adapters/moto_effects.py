"""Calls whose answer does not show that they changed moto's state, and how to tell that they did.

An SQS ``ReceiveMessage`` that returns no message is recorded only if it
changed something, and only moto's state can tell: on its way through a
queue, moto moves a message whose receive count reached the redrive policy's
``maxReceiveCount`` to the dead-letter queue, drops a message that is visible
again from the queue's in-flight set (for FIFO queues, that frees its group),
and counts a receive of a message past its retention period without returning
it.  :func:`watch_receive` takes marks of the queue (and its dead-letter
queue) before the call that change with each of those: the number of
messages, the number in flight, the sum of receive counts.  If the marks
differ after the call, the receive is recorded like any other state change
(another call to the same queue at the same moment may also move the marks:
the receive is then recorded although it changed nothing, which is harmless).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import orjson

if TYPE_CHECKING:
    from ..record.entry import Request

__all__ = ["watch_receive"]


def _queue_name(request: Request) -> str:
    url: object = None
    if "json" in (request.header("Content-Type") or "").lower():
        try:
            data = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            data = None
        url = data.get("QueueUrl") if isinstance(data, dict) else None
    else:
        for pairs in (request.query, request.body.decode("latin-1")):
            for part in pairs.split("&"):
                if part.startswith("QueueUrl="):
                    url = unquote_plus(part[len("QueueUrl=") :])
    if isinstance(url, str) and url:
        return url.rstrip("/").rsplit("/", 1)[-1]
    return request.path.rstrip("/").rsplit("/", 1)[-1]


def _queues(name: str) -> list[Any]:
    """Every moto queue called ``name`` (any account or region) and its dead-letter queue."""
    from moto.backends import get_backend

    found = []
    for regions in dict.values(get_backend("sqs")):
        for backend in dict.values(regions):
            queue = backend.queues.get(name)
            if queue is not None:
                found.append(queue)
                if queue.dead_letter_queue is not None:
                    found.append(queue.dead_letter_queue)
    return found


def _marks(queues: list[Any]) -> list[tuple[int, int, int]]:
    return [
        (
            len(queue._messages),
            len(queue.pending_messages),
            sum(message.approximate_receive_count for message in queue._messages),
        )
        for queue in queues
    ]


def watch_receive(request: Request) -> Callable[[], bool]:
    """Marks of the queue an SQS ``ReceiveMessage`` reads, taken now; the check tells whether they moved."""
    queues = _queues(_queue_name(request))
    before = _marks(queues)
    return lambda: _marks(queues) != before
