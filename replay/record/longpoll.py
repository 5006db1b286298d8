"""Long polls as a series of instant attempts, so that a waiting client holds nothing.

An SQS ``ReceiveMessage`` may wait up to 20 s for a message (its
``WaitTimeSeconds``, or the queue's ``ReceiveMessageWaitTimeSeconds`` when the
request names none).  Inside the emulator that wait would hold what a call
holds while it runs: the checkpoint's mutation gate, the snapshot backend's
service lock, the seeded clock.  :class:`LongPolls` keeps the wait outside:

1. the request is passed on with ``WaitTimeSeconds=0`` (an instant attempt,
   recorded as such when it changed state, see :mod:`replay.record.middleware`); a
   request whose wait is not valid goes on as it was sent, for the emulator to
   refuse;
2. if it returned messages, or failed, or the wait is over, that is the answer;
3. otherwise the layer waits, holding nothing, until another state-changing
   call has finished (a message may have arrived) or a second has passed
   (a visibility timeout may have run out), and tries again.

The client sees what a long poll answers: the messages as soon as there are
some, or an empty answer when its wait is over.  Replay needs no wait (each
recorded attempt is instant; :mod:`replay.restore.rules`).  :meth:`LongPolls.stop`
ends every wait at once (the server calls it when it stops), so a SIGTERM
during a long poll does not wait for it.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from werkzeug.wsgi import ClosingIterator

from .classify import Classifier, DefaultClassifier, query_param
from .entry import Request, Response
from .wsgi import REQUEST_KEY, request_from_environ, run_app

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["MAX_WAIT", "LongPolls", "requested_wait", "without_wait"]

MAX_WAIT = 20
"""The longest wait SQS allows, in seconds."""

_RETRY = 1.0  # seconds between attempts when nothing happens (moto's own long poll looks once a second)


def _pairs_without_wait(pairs: str) -> str:
    """A ``k=v&k=v`` string with ``WaitTimeSeconds=0`` (in place of any other value, else added)."""
    parts = pairs.split("&") if pairs else []
    found = False
    for index, part in enumerate(parts):
        if part.startswith("WaitTimeSeconds="):
            parts[index] = "WaitTimeSeconds=0"
            found = True
    if not found:
        parts.append("WaitTimeSeconds=0")
    return "&".join(parts)


def _is_json(request: Request) -> bool:
    return "json" in (request.header("Content-Type") or "").lower()


def _json_body(request: Request) -> dict[str, Any] | None:
    """The JSON object a JSON-protocol request carries; ``None`` when it carries none."""
    try:
        data = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _parameter(request: Request, name: str) -> object:
    """Parameter ``name`` of a ``ReceiveMessage``, from its JSON body, query string or form body."""
    if _is_json(request):
        data = _json_body(request)
        return data.get(name) if data is not None else None
    found = query_param(request.query, name)
    return found if found is not None else query_param(request.body.decode("latin-1"), name)


def without_wait(request: Request) -> Request:
    """``request`` (an SQS ``ReceiveMessage``) asking for no wait at all; ``request`` itself if it already does."""
    if _is_json(request):
        data = _json_body(request)
        if data is None or data.get("WaitTimeSeconds") == 0:
            return request
        data["WaitTimeSeconds"] = 0
        body = orjson.dumps(data)
        return Request(request.method, request.path, request.query, request.headers, body, safe_headers=True)
    if "Action=" in request.query:  # the query protocol sent as GET
        query = _pairs_without_wait(request.query)
        if query == request.query:
            return request
        return request.replace(query=query)
    body = _pairs_without_wait(request.body.decode("latin-1")).encode("latin-1")
    if body == request.body:
        return request
    return Request(request.method, request.path, request.query, request.headers, body, safe_headers=True)


def requested_wait(request: Request) -> int | None:
    """The ``WaitTimeSeconds`` a ``ReceiveMessage`` names, ``None`` if none.

    :raises ValueError: it names one that is not a whole number of seconds from 0 to :data:`MAX_WAIT`.
    """
    raw = _parameter(request, "WaitTimeSeconds")
    if raw is None:
        return None
    seconds = int(str(raw))
    if not 0 <= seconds <= MAX_WAIT:
        raise ValueError(f"WaitTimeSeconds {seconds} is not from 0 to {MAX_WAIT}")
    return seconds


def _queue_url(request: Request) -> str | None:
    url = _parameter(request, "QueueUrl")
    return url if isinstance(url, str) and url else None


def _has_messages(response: Response) -> bool:
    return b'"Messages"' in response.body or b"<Message>" in response.body


class LongPolls:
    """Serve SQS long polls to ``app`` as instant attempts (see the module docstring).

    :param app: the app to call (the emulator, wrapped by its persistence backend).
    :param classifier: tells a ``ReceiveMessage`` and the calls that change state.
    """

    def __init__(self, app: WSGIApplication, classifier: Classifier | None = None) -> None:
        self.app = app
        self.classifier: Classifier = classifier if classifier is not None else DefaultClassifier()
        self._changed = threading.Condition()
        self._generation = 0  # counts finished state-changing calls
        self._stopping = False

    def stop(self) -> None:
        """End every long poll now (each answers with what its last attempt got); new ones do not wait."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = request_from_environ(environ)
        call = self.classifier(request)
        if call.operation == "ReceiveMessage" and call.service == "sqs" and request.file is None:
            return self._receive(environ, start_response, request)
        if not call.mutating:
            return self.app(environ, start_response)
        try:
            iterable = self.app(environ, start_response)
        except BaseException:
            self._touch()
            raise
        if type(iterable) is list:
            self._touch()
            return iterable
        return ClosingIterator(iterable, self._touch)

    def _touch(self) -> None:
        """A state-changing call finished: waiting polls look again."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _attempt(self, environ: WSGIEnvironment, request: Request) -> Response:
        """Pass ``request`` (instant) on to the app, with an environ of its own; the whole response."""
        attempt: WSGIEnvironment = dict(environ)
        attempt["wsgi.input"] = io.BytesIO(request.body)
        attempt["CONTENT_LENGTH"] = str(len(request.body))
        if request.query != environ.get("QUERY_STRING", ""):
            attempt["QUERY_STRING"] = request.query
            attempt["RAW_URI"] = attempt["REQUEST_URI"] = request.target
        attempt[REQUEST_KEY] = request
        return run_app(self.app, attempt)

    def _queue_default(self, environ: WSGIEnvironment, request: Request) -> int:
        """The queue's ``ReceiveMessageWaitTimeSeconds``, asked of the app (0 when it cannot tell)."""
        url = _queue_url(request)
        names = ("ReceiveMessageWaitTimeSeconds",)
        if _is_json(request):
            headers = [
                (name, "AmazonSQS.GetQueueAttributes" if name.lower() == "x-amz-target" else value)
                for name, value in request.headers
            ]
            body = orjson.dumps({"QueueUrl": url, "AttributeNames": list(names)}) if url else b"{}"
            ask = Request("POST", request.path, "", headers, body, safe_headers=True)
        else:
            form = "Action=GetQueueAttributes&AttributeName.1=ReceiveMessageWaitTimeSeconds"
            if url:
                form += "&QueueUrl=" + quote(url, safe="")
            headers = [
                (name, "application/x-www-form-urlencoded" if name.lower() == "content-type" else value)
                for name, value in request.headers
            ]
            ask = Request("POST", request.path, "", headers, form.encode(), safe_headers=True)
        environ = {key: value for key, value in environ.items() if key != "HTTP_X_AMZ_TARGET"}
        if _is_json(request):
            environ["HTTP_X_AMZ_TARGET"] = "AmazonSQS.GetQueueAttributes"
        else:
            environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
        environ["REQUEST_METHOD"] = "POST"
        answer = self._attempt(environ, ask)
        if not answer.ok:
            return 0
        text = answer.body
        try:
            if text.lstrip()[:1] == b"{":
                value = orjson.loads(text).get("Attributes", {}).get("ReceiveMessageWaitTimeSeconds")
            else:
                after = text.split(b"<Name>ReceiveMessageWaitTimeSeconds</Name>", 1)[1]
                value = after.split(b"<Value>", 1)[1].split(b"</Value>", 1)[0].decode()
            return max(0, min(MAX_WAIT, int(value)))
        except (IndexError, ValueError, TypeError, AttributeError):
            return 0

    def _wait(self, generation: int, timeout: float) -> bool:
        """Wait until a state-changing call finished since ``generation``, or ``timeout``; ``False``: stopping."""
        with self._changed:
            if not self._stopping:
                self._changed.wait_for(lambda: self._generation != generation or self._stopping, timeout)
            return not self._stopping

    def _receive(self, environ: WSGIEnvironment, start_response: StartResponse, request: Request) -> Iterable[bytes]:
        started = time.monotonic()
        try:
            wait = requested_wait(request)
        except ValueError:  # the emulator answers it (with its own error), as it was sent
            return self.app(environ, start_response)
        instant = without_wait(request)
        while True:
            with self._changed:
                generation = self._generation
            response = self._attempt(environ, instant)
            if not response.ok or _has_messages(response):
                break
            if wait is None:
                wait = self._queue_default(environ, request)
            remaining = started + wait - time.monotonic()
            if remaining <= 0:
                break
            if not self._wait(generation, min(_RETRY, remaining)):
                break
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Unknown"
        start_response(f"{response.status} {phrase}", list(response.headers))
        return [response.body]
