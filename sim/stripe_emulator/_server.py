"""The standalone server: the same emulator over HTTP on 127.0.0.1, for any Stripe client or curl.

It binds to the loopback interface only. Injected latency is really slept here (outside the
emulator's lock), a dropped connection is closed without an answer, and a background thread POSTs
webhook deliveries to their endpoints' URLs when they fall due (``--webhook-url`` registers one
operator endpoint for every event type).

Every request gets an answer, as from Stripe: one whose body cannot be read (``Content-Length``
missing a number, negative, past :data:`~._emulator.MAX_BODY_BYTES`, or longer than what arrives;
a chunked body) is refused with a 400 ``invalid_request_error`` and the connection closed, since
its unread bytes cannot be told apart from the next request; an unexpected failure inside the
emulator answers 500 ``api_error`` (and is logged) instead of a dropped connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ._emulator import BODY_TOO_LARGE, MAX_BODY_BYTES, EmulatorResponse, StripeEmulator
from ._params import whole_number

HOST = "127.0.0.1"
DEFAULT_PORT = 12111

#: Seconds a connection may stay silent mid-request before the server gives up on it (a client
#: announcing more body than it sends must not hold a thread forever).
READ_TIMEOUT = 30.0

#: An oversized body up to this many bytes is read and dropped before the 400 is sent, so a
#: client still writing it sees the answer rather than a connection reset; past it, the server
#: answers at once and hangs up.
DRAIN_LIMIT = 16 * MAX_BODY_BYTES

_LOG = logging.getLogger(__name__)

_JSON = {"Content-Type": "application/json"}
_INTERNAL_ERROR = json.dumps(
    {"error": {"type": "api_error", "message": "An unknown error occurred in the emulator."}}
).encode()


def random_webhook_secret() -> str:
    """A fresh ``whsec_`` secret from the system's CSPRNG, for a server run with no secret given:
    a fixed, published default would let anyone who reads the code forge deliveries."""
    return "whsec_" + secrets.token_urlsafe(32)


class EmulatorServer:
    """An HTTP server for ``emulator`` on ``127.0.0.1:port`` (``port=0`` picks a free one).

    Use as a context manager, or :meth:`start` and :meth:`close`. :attr:`url` is what to give
    ``stripe.StripeClient(..., base_addresses={"api": server.url})``.
    """

    def __init__(
        self,
        emulator: StripeEmulator | None = None,
        port: int = DEFAULT_PORT,
        *,
        webhook_url: str | None = None,
        deliver_webhooks: bool = True,
        poll_interval: float = 0.05,
    ) -> None:
        self.emulator = emulator if emulator is not None else StripeEmulator()
        if webhook_url is not None:
            self.emulator.add_webhook_endpoint(webhook_url)
        self._httpd = ThreadingHTTPServer((HOST, port), _handler_for(self.emulator))
        self._httpd.daemon_threads = True
        self._deliver = deliver_webhooks
        self._poll = poll_interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False

    @property
    def port(self) -> int:
        """The port actually bound."""
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. ``http://127.0.0.1:12111``."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> EmulatorServer:
        """Serve (and deliver webhooks) from background threads."""
        self._started = True
        self._threads.append(
            threading.Thread(target=self._httpd.serve_forever, args=(self._poll,), daemon=True)
        )
        if self._deliver:
            self._threads.append(threading.Thread(target=self._deliver_webhooks, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (webhooks from a background thread)."""
        self._started = True
        if self._deliver:
            thread = threading.Thread(target=self._deliver_webhooks, daemon=True)
            self._threads.append(thread)
            thread.start()
        try:
            self._httpd.serve_forever(self._poll)
        finally:
            self.close()

    def close(self) -> None:
        """Stop serving and delivering, and release the port."""
        self._stop.set()
        if self._started:
            self._started = False
            self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deliver_webhooks(self) -> None:
        while not self._stop.wait(self._poll):
            for delivery in self.emulator.due_deliveries():
                status = _post(
                    delivery.url, delivery.payload, delivery.signed_headers(int(time.time()))
                )
                self.emulator.report_delivery(delivery, status)


def serve(
    port: int = DEFAULT_PORT,
    *,
    emulator: StripeEmulator | None = None,
    webhook_url: str | None = None,
) -> None:
    """Run the emulator's HTTP server on ``127.0.0.1:port`` until interrupted.

    With ``webhook_url``, every event is POSTed there signed with the emulator's
    ``webhook_secret``, which is printed at start so the receiver can be configured with it.
    """
    server = EmulatorServer(emulator, port, webhook_url=webhook_url)
    line = f"Stripe emulator listening on {server.url}"
    if webhook_url is not None:
        line += f" (webhooks to {webhook_url}, secret {server.emulator.webhook_secret})"
    print(line, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def _post(url: str, payload: bytes, headers: dict[str, str]) -> int:
    """POST one delivery; the endpoint's status, or 0 when it could not be reached."""
    if not url.startswith(("http://", "https://")):
        return 0
    request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return 0


def _handler_for(emulator: StripeEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "stripe-emulator"
        timeout = READ_TIMEOUT

        def do_GET(self) -> None:
            self._serve("get")

        def do_POST(self) -> None:
            self._serve("post")

        def do_DELETE(self) -> None:
            self._serve("delete")

        def do_PUT(self) -> None:
            # Stripe answers methods it has no route for with its 404 envelope, not a 501.
            self._serve("put")

        def do_PATCH(self) -> None:
            self._serve("patch")

        def _serve(self, method: str) -> None:
            body, problem = self._read_body()
            if problem is not None:
                self._send(emulator.malformed(problem))
                return
            try:
                response = emulator.handle(method, self.path, dict(self.headers.items()), body)
            except Exception:
                _LOG.exception("the emulator failed on %s %s", method.upper(), self.path)
                self.close_connection = True
                self._send(EmulatorResponse(500, _INTERNAL_ERROR, _JSON))
                return
            if response.latency:
                time.sleep(response.latency)
            if response.dropped:
                self.close_connection = True
                return
            self._send(response)

        def _read_body(self) -> tuple[bytes, str | None]:
            """The request body, or why it cannot be read.

            When bytes of the body are left unread, the connection is marked for closing: they
            would otherwise be parsed as the next request.
            """
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                self.close_connection = True
                return (
                    b"",
                    "Invalid request: chunked bodies are not supported; send Content-Length.",
                )
            lengths = self.headers.get_all("Content-Length") or []
            if not lengths:
                return b"", None
            length = whole_number(lengths[0].strip())
            if length is None or len(set(lengths)) > 1:
                self.close_connection = True
                shown = ", ".join(value[:40] for value in lengths)
                return b"", f"Invalid request: Content-Length {shown!r} is not one byte count."
            if length > MAX_BODY_BYTES:
                if length <= DRAIN_LIMIT:
                    # Read it away so a client still writing it gets the answer, not a reset.
                    self._discard(length)
                else:
                    self.close_connection = True
                return b"", BODY_TOO_LARGE
            body = self.rfile.read(length) if length else b""
            if len(body) < length:
                self.close_connection = True
                return b"", f"Invalid request: the body ended after {len(body)} of {length} bytes."
            return body, None

        def _discard(self, length: int) -> None:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    self.close_connection = True
                    return
                length -= len(chunk)

        def _send(self, response: EmulatorResponse) -> None:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(response.body)

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """What the HTTP layer refuses on its own (an unparsable request line, oversized
            headers, an unsupported method) is answered in Stripe's JSON envelope too."""
            error = {
                "type": "invalid_request_error",
                "message": message or explain or "Bad request",
            }
            body = json.dumps({"error": error}).encode()
            self.close_connection = True
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: a request log line per call would drown the caller's output."""

    return Handler
