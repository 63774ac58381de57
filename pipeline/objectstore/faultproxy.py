"""A TCP proxy on 127.0.0.1 that injects object-storage faults (tests and the soak).

Put between a client and an S3 endpoint (a moto server), :class:`FaultProxy` forwards bytes
both ways and, on demand:

- :meth:`FaultProxy.outage`: cuts open connections and closes every new one at once (the
  endpoint "dies"; clients see connections reset or closed) until :meth:`FaultProxy.restore`
  or for a number of seconds;
- :meth:`FaultProxy.slow`: waits before forwarding each piece of a request (slow responses);
- :meth:`FaultProxy.throttle`: answers the next *n* connections with ``503 SlowDown`` (the
  S3 throttling reply) and closes them.

Only loopback addresses are used: it listens on ``127.0.0.1`` and forwards to a loopback
target.
"""

from __future__ import annotations

import select
import socket
import threading
import time

_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
SLOW_DOWN_REPLY: bytes = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    + f"Content-Length: {len(_SLOW_DOWN_BODY)}\r\n\r\n".encode()
    + _SLOW_DOWN_BODY
)
"""What a throttled connection gets (S3's reply to too many requests)."""


class FaultProxy:
    """Forward 127.0.0.1:``port`` to *target* (a loopback ``(host, port)``), with faults.

    Parameters
    ----------
    target : (str, int)
        The endpoint proxied; its host must be a loopback address.

    Examples
    --------
    >>> proxy = FaultProxy(("127.0.0.1", 5000)).start()           # doctest: +SKIP
    >>> os.environ["AWS_ENDPOINT_URL"] = proxy.url                   # doctest: +SKIP
    >>> proxy.outage(seconds=2.0)                                    # doctest: +SKIP
    """

    def __init__(self, target: tuple[str, int]) -> None:
        host = socket.gethostbyname(target[0])
        if not host.startswith("127."):
            raise ValueError(f"FaultProxy target {target[0]!r}: expected a loopback address")
        self.target = (host, int(target[1]))
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down = False
        self._delay = 0.0
        self._throttle = 0
        self._open: set[socket.socket] = set()
        self.connections = 0
        """Connections accepted so far."""
        self.refused = 0
        """Connections closed by an outage or answered ``503 SlowDown``."""
        self.cut = 0
        """Open connections cut by an outage."""

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self._listener is None:
            raise ValueError("FaultProxy not started")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the endpoint URL clients use."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> FaultProxy:
        """Listen on 127.0.0.1:*port* (0: a free one) and serve in a daemon thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept, daemon=True, name="faultproxy").start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every connection."""
        if self._listener is not None:
            self._listener.close()
        self._cut()

    def outage(self, seconds: float | None = None) -> None:
        """Cut open connections; close new ones at once, for *seconds* or until restored."""
        with self._lock:
            self._down = seconds is None
            self._down_until = time.monotonic() + (seconds or 0.0)
        self._cut()

    def restore(self) -> None:
        """End an outage, slowness and throttling."""
        with self._lock:
            self._down, self._down_until, self._delay, self._throttle = False, 0.0, 0.0, 0

    def slow(self, seconds: float) -> None:
        """Wait *seconds* before forwarding each piece of a request (0: no delay)."""
        self._delay = float(seconds)

    def throttle(self, n: int) -> None:
        """Answer the next *n* connections with ``503 SlowDown``."""
        with self._lock:
            self._throttle = int(n)

    def _is_down(self) -> bool:
        return self._down or time.monotonic() < self._down_until

    def _cut(self) -> None:
        with self._lock:
            conns, self._open = list(self._open), set()
        self.cut += len(conns) // 2
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with self._lock:
                throttled = self._throttle > 0
                if throttled:
                    self._throttle -= 1
            if self._is_down() or throttled:
                self.refused += 1
                threading.Thread(target=self._refuse, args=(client, throttled), daemon=True).start()
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    @staticmethod
    def _refuse(client: socket.socket, throttled: bool) -> None:
        try:
            if throttled:
                client.settimeout(5)
                client.recv(65536)  # the request line and headers
                client.sendall(SLOW_DOWN_REPLY)
            else:
                client.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )  # close with a reset
        except OSError:
            pass
        client.close()

    def _pipe(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        with self._lock:
            self._open.update((client, server))
        peers = {client: server, server: client}
        try:
            while True:
                ready, _, _ = select.select(list(peers), [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client and self._delay:
                        time.sleep(self._delay)
                    if self._is_down():
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._open.discard(client)
                self._open.discard(server)
            for sock in (client, server):
                sock.close()
