"""What keeps `vbsearch serve` answering under hostile or heavy clients (search/service.py uses these).

- `ServiceLimits`: the service's settings (`vbsearch serve --max-body ... --allow-host ...`).
- `BodyLimit` (ASGI middleware): refuses a body over the cap with 413 while it is being read: a declared
  Content-Length over the cap before a byte is read, a chunked body as soon as it passes the cap, so
  nothing is parsed and no token is checked for it.
- `TrustedHosts` (ASGI middleware): a request whose Host header names another host gets 400. A web page
  on another origin that rebinds its DNS name to 127.0.0.1 sends its own name as Host, so a localhost API
  without a token is not readable from a browser.
- `WorkLimit`: searches and previews run at most `max_concurrent` at a time; `max_queued` more wait up
  to `queue_wait_s`; the rest are answered 503 with Retry-After at once.

Both middlewares answer in the service's one error shape, {"detail": ...} (search.api_models.Problem).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from starlette.exceptions import HTTPException

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServiceLimits:
    max_body_bytes: int = 1_000_000  # request body cap, enforced while reading
    max_concurrent: int = 4  # searches and previews running at once
    max_queued: int = 8  # more may wait for a turn; beyond that, 503 at once
    queue_wait_s: float = 30.0  # a request that waited this long for a turn gets 503
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS  # Host header values accepted ("*": any)
    load_retry_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)  # waits between attempts to open the index

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.max_concurrent < 1 or self.max_queued < 0 or self.queue_wait_s <= 0:
            raise ValueError("service limits must be positive (max_queued may be 0)")


class Busy(Exception):
    """No turn for this request: answered 503 with Retry-After."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


async def send_problem(send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised while the body is read: an HTTPException, so FastAPI's body reader lets it through (it turns
    other exceptions into 400) and the app answers it as a Problem."""


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body over {self.max_bytes} bytes"
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        try:
            if declared is not None and int(declared) > self.max_bytes:
                return await send_problem(send, 413, too_large)
        except ValueError:
            return await send_problem(send, 400, "unreadable Content-Length")
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(413, too_large)
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _TooLarge:
            if not started:
                await send_problem(send, 413, too_large)


def host_of(header: str) -> str:
    """The host name of a Host header: without the port, IPv6 without its brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class TrustedHosts:
    def __init__(self, app, allowed: tuple[str, ...]):
        self.app = app
        self.any = "*" in allowed
        self.allowed = {host_of(h) for h in allowed}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.any:
            return await self.app(scope, receive, send)
        host = dict(scope.get("headers") or ()).get(b"host", b"").decode("latin-1")
        if host_of(host) not in self.allowed:
            return await send_problem(send, 400, "this service does not answer for that host name "
                                                 "(vbsearch serve --allow-host)")
        return await self.app(scope, receive, send)


class WorkLimit:
    def __init__(self, limits: ServiceLimits):
        self.limits = limits
        self._turns = threading.BoundedSemaphore(limits.max_concurrent)
        self._admitted = 0
        self._lock = threading.Lock()

    def check(self) -> None:
        """Busy now if every turn and queue place is taken: called on the event loop before a request is handed
        to a worker thread, so an overload is shed without a thread for each refused request."""
        if self._admitted >= self.limits.max_concurrent + self.limits.max_queued:
            raise Busy(f"busy: {self._admitted} requests running or waiting; try again shortly")

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._lock:
            self.check()
            self._admitted += 1
        try:
            if not self._turns.acquire(timeout=self.limits.queue_wait_s):
                raise Busy(f"busy: no turn within {self.limits.queue_wait_s:g} s; try again shortly")
            try:
                yield
            finally:
                self._turns.release()
        finally:
            with self._lock:
                self._admitted -= 1
