"""The views' HTTP listener, and the metrics' own one.

Connections are served by one asyncio loop in a thread: an idle or slow connection costs a
socket and a coroutine, never a thread, and is cut when it has not sent a whole request head
(or, kept alive, a next one) within `request_timeout_s`. Only a whole request that passed the
guard (`guard.py`: Host, then token) takes one of `max_requests` worker threads, which read the
views under the projection's lock; with every worker busy the answer is 503 at once, not a
queue. So a token holder is served while hundreds of idle sockets are open."""

from __future__ import annotations

import asyncio
import logging
import re
import resource
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from katagate.access.tokens import TokenFile
from katagate.eventlog.health import PROBES, Health
from katagate.eventlog.health_server import HealthServer, serve_health
from katagate.projector import guard
from katagate.projector.http import Reply, answer, problem
from katagate.projector.live import LiveProjection
from katagate.projector.metrics import registry_for
from katagate.projector.settings import ProjectorSettings

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
METHODS = ("GET", "HEAD")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
LISTEN_BACKLOG = 1024
FD_RESERVE = 64  # descriptors kept for Kafka, SQLite and the metrics listener


class HeadError(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status.phrase)
        self.reply = reply


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    version: str
    headers: dict[str, list[str]]  # lower-case names, values in order

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for v in self.headers.get("connection", [])
                  for t in v.split(",")}
        return self.version == "HTTP/1.1" and "close" not in tokens


def parse_head(head: bytes) -> Request:
    """A request head (up to and with its blank line), or HeadError with the answer."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[1].startswith("/"):
        raise _bad(f"not a request line: {lines[0][:100]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HeadError(problem(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                                {"error": f"{version[:20]!r}: HTTP/1.1 or HTTP/1.0 only"}))
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not HEADER_NAME.fullmatch(name):
            raise _bad(f"not a header line: {line[:100]!r}")
        headers.setdefault(name.lower(), []).append(value.strip())
    # The views take no body; one we would not read would be taken for the next request.
    if "transfer-encoding" in headers or any(v != "0" for v in headers.get("content-length",
                                                                            [])):
        raise _bad("a request to the projector carries no body")
    path, _, query = target.partition("?")
    return Request(method, path, query, version, headers)


def _bad(text: str) -> HeadError:
    return HeadError(problem(HTTPStatus.BAD_REQUEST, {"error": text}))


def render(reply: Reply, *, with_body: bool, close: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status.value} {reply.status.phrase}",
             f"Date: {formatdate(usegmt=True)}",
             f"Content-Type: {reply.content_type}",
             f"Content-Length: {len(reply.body)}",
             "Cache-Control: no-store",
             "X-Content-Type-Options: nosniff",
             *(f"{name}: {value}" for name, value in reply.headers)]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (reply.body if with_body
                                                                   else b"")


class ViewServer:
    """Bound when made (port 0 works; `address` is the real one); `start` serves, `close`
    stops. Counters are touched by the loop's thread only."""

    def __init__(self, live: LiveProjection, settings: ProjectorSettings,
                 tokens: TokenFile, health: Health) -> None:
        self.live, self.settings, self.tokens, self.health = live, settings, tokens, health
        family = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        self.listener = socket.create_server((settings.host, settings.port), family=family,
                                             backlog=LISTEN_BACKLOG)
        bound = self.listener.getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        self.accepted = guard.host_names(settings.allowed_hosts, settings.host,
                                         self.address[1])
        limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if limit != resource.RLIM_INFINITY and settings.max_connections > limit - FD_RESERVE:
            log.warning("projector: max_connections %d leaves too few of the %d open files this "
                        "process may have; lower it or raise the limit (ulimit -n)",
                        settings.max_connections, limit)
        self.active = 0  # requests in the workers
        self.connections = 0
        self._pool = ThreadPoolExecutor(settings.max_requests,
                                        thread_name_prefix="projector-view")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="projector-http", daemon=True)
        self._listening = threading.Event()
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._thread.start()
        self._listening.wait(30)

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
        self.listener.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, sock=self.listener,
                                            limit=MAX_HEAD_BYTES, backlog=LISTEN_BACKLOG)
        self._listening.set()
        await self._stop.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # cancelled on close
            self._tasks.add(task)
        self.connections += 1
        try:
            if self.connections > self.settings.max_connections:
                await self._send(writer, problem(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    {"error": f"{self.settings.max_connections} connections are open "
                              "(max_connections); retry later"},
                    (("Retry-After", str(guard.RETRY_AFTER_S)),)), with_body=True, close=True)
                return
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, TimeoutError):
            pass  # the client went, or would not take its answer in time
        finally:
            self.connections -= 1
            if task is not None:
                self._tasks.discard(task)
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # an answer it does not take is not kept for it
            else:
                writer.close()

    async def _exchange(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> bool:
        """One request and its answer; True when the connection stays open for another."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                          self.settings.request_timeout_s)
        except asyncio.LimitOverrunError:
            await self._send(writer, problem(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                {"error": f"the request head is over {MAX_HEAD_BYTES} bytes"}),
                with_body=True, close=True)
            return False
        except (TimeoutError, asyncio.IncompleteReadError):
            return False  # idle, slow, or gone: the place is given back
        try:
            request = parse_head(head)
        except HeadError as exc:
            await self._send(writer, exc.reply, with_body=True, close=True)
            return False
        try:
            reply = self._admit(request)
            if reply is None:
                reply = await self._answer(request)
        except Exception:
            log.exception("projector http: %s %s", request.method, request.path[:200])
            reply = problem(HTTPStatus.INTERNAL_SERVER_ERROR,
                            {"error": "internal error; see the projector's log"})
        await self._send(writer, reply, with_body=request.method != "HEAD",
                         close=not request.keep_alive)
        return request.keep_alive

    def _admit(self, request: Request) -> Reply | None:
        """The guard's answer, or None for a request to be answered by a worker."""
        misdirected = guard.check_host(request.headers.get("host", []), self.accepted)
        if misdirected is not None:
            return misdirected
        if request.method not in METHODS:
            return problem(HTTPStatus.METHOD_NOT_ALLOWED,
                           {"error": f"{request.method[:20]!r}: the views are read with GET"},
                           (("Allow", ", ".join(METHODS)),))
        probe = PROBES.get(request.path)
        if probe is not None:
            return guard.probe(*self.health.answer(probe))
        return guard.check_token(request.headers.get("authorization", []), self.tokens.match)

    async def _answer(self, request: Request) -> Reply:
        if self.active >= self.settings.max_requests:
            return guard.busy(self.settings.max_requests)
        self.active += 1
        try:
            return await self._loop.run_in_executor(self._pool, answer, self.live,
                                                    request.path, request.query)
        finally:
            self.active -= 1

    async def _send(self, writer: asyncio.StreamWriter, reply: Reply, *, with_body: bool,
                    close: bool) -> None:
        writer.write(render(reply, with_body=with_body, close=close))
        await asyncio.wait_for(writer.drain(), self.settings.request_timeout_s)


def serve_metrics(live: LiveProjection, settings: ProjectorSettings,
                  health: Health) -> HealthServer | None:
    """/metrics, /healthz and /readyz on `metrics_host:metrics_port`, unauthenticated; None
    when off."""
    return serve_health(settings.metrics_host, settings.metrics_port, health,
                        registry_for(live))
