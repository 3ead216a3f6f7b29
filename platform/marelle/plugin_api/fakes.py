"""A base for the local fake services plugins ship (a fake PayFiP, a fake Stripe…): the real
client code of a plugin talks HTTP to it in the tests and in the demo, so nothing is mocked
inside the plugin.

Subclass :class:`LocalHTTPServer`, implement ``handler_class()`` (return a
:class:`http.server.BaseHTTPRequestHandler` subclass; each handler reaches the fake as
``self.fake``) and set ``thread_name``; ``start()`` serves it in a daemon thread on
``host:port`` (port 0: a free one, read back in ``port``), ``stop()`` or the ``with`` block
ends it. No pytest, no Django: the demo runs the same fakes as a command.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar


class FakeRequestHandler(BaseHTTPRequestHandler):
    """A quiet handler with keep-alive and a ``_send`` helper; subclass it for your fake."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet: tests and the demo read their own output
        pass

    def _send(self, status: int, body: str, content_type="text/html; charset=utf-8", headers=None):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class LocalHTTPServer:
    thread_name: ClassVar[str] = "fake-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self):
        handler = type("Handler", (self.handler_class(),), {"fake": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
