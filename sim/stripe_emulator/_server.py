"""The standalone server: the same emulator over HTTP on 127.0.0.1, for any Stripe client or curl.

It binds to the loopback interface only. Injected latency is really slept here (outside the
emulator's lock), a dropped connection is closed without an answer, and a background thread POSTs
webhook deliveries to their endpoints' URLs when they fall due (``--webhook-url`` registers one
endpoint for every event type).
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ._emulator import StripeEmulator

HOST = "127.0.0.1"
DEFAULT_PORT = 12111


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
    """Run the emulator's HTTP server on ``127.0.0.1:port`` until interrupted."""
    server = EmulatorServer(emulator, port, webhook_url=webhook_url)
    print(
        f"Stripe emulator listening on {server.url} "
        f"(webhook secret {server.emulator.webhook_secret})",
        flush=True,
    )
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

        def do_GET(self) -> None:
            self._serve("get")

        def do_POST(self) -> None:
            self._serve("post")

        def do_DELETE(self) -> None:
            self._serve("delete")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            response = emulator.handle(method, self.path, dict(self.headers.items()), body)
            if response.latency:
                time.sleep(response.latency)
            if response.dropped:
                self.close_connection = True
                return
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: a request log line per call would drown the caller's output."""

    return Handler
