"""How a replayed request reaches an emulator: in-process WSGI, or HTTP.

Both implement :class:`Transport`: ``send(request) -> Response``.
:class:`WSGITransport` calls the app directly (no sockets, no threads), the way
httpx's WSGI transport does; :class:`HTTPTransport` uses a ``requests`` session
against an emulator that is already running elsewhere.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

import requests

from ..errors import TransportError
from ..record.entry import Request, Response
from ..record.wsgi import environ_from_request, run_app

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["HTTPTransport", "Transport", "WSGITransport"]

# hop-by-hop or recomputed by the HTTP client
_NOT_FORWARDED = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "expect"})


class Transport(Protocol):
    """Sends one request and returns the whole response."""

    def send(self, request: Request) -> Response: ...


class WSGITransport:
    """Call a WSGI app in-process.

    :param app: the app to call.
    :param server_name: / :param server_port: what ``SERVER_NAME``/``SERVER_PORT`` say.
    """

    def __init__(self, app: WSGIApplication, server_name: str = "localhost", server_port: int = 80) -> None:
        self.app = app
        self.server_name = server_name
        self.server_port = server_port

    def send(self, request: Request) -> Response:
        return run_app(self.app, environ_from_request(request, self.server_name, self.server_port))


class HTTPTransport:
    """Send requests to ``base_url`` over HTTP with ``requests``.

    :param base_url: e.g. ``http://localhost:4566``.
    :param timeout: seconds to wait for each response.
    :param retries: how many more times to try a request whose connection failed.
    :param backoff: seconds before the first retry, doubled for each next one.
    :param session: a ``requests.Session`` to use (one is made otherwise).
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = session if session is not None else requests.Session()

    def send(self, request: Request) -> Response:
        headers = {name: value for name, value in request.headers if name.lower() not in _NOT_FORWARDED}
        attempt = 0
        while True:
            body = request.file.open() if request.file is not None else request.body  # a file streams
            prepared = self.session.prepare_request(
                requests.Request(request.method, self.base_url + "/", headers=headers, data=body or None)
            )
            prepared.url = self.base_url + request.target  # raw path and query, sent as recorded
            try:
                answer = self.session.send(prepared, timeout=self.timeout, allow_redirects=False)
            except requests.Timeout as exc:
                message = f"{self.base_url}: no response to {request.method} {request.path} within {self.timeout:g} s"
                raise TransportError(self.base_url, message) from exc
            except requests.ConnectionError as exc:
                if attempt >= self.retries:
                    raise TransportError(
                        self.base_url, f"cannot reach {self.base_url} ({attempt + 1} attempts): {exc}"
                    ) from exc
                time.sleep(self.backoff * (2**attempt))
                attempt += 1
                continue
            finally:
                if not isinstance(body, bytes):
                    body.close()
            return Response(answer.status_code, list(answer.headers.items()), answer.content)

    def close(self) -> None:
        self.session.close()
