"""A moto S3 server on 127.0.0.1 whose conditional writes are atomic (tests and the soak).

moto checks ``If-Match`` / ``If-None-Match`` of a ``PutObject`` and then stores the object
without a lock, so two writers racing on one key (Icechunk's branch ref when two ingests
commit at once, or the creation claim of :mod:`pipeline.objectstore.claim`) can both
"win" there, where S3 itself lets exactly one win. :class:`AtomicMotoServer` serves moto's
application one request at a time, which makes those checks atomic as on S3.
"""

from __future__ import annotations

import threading

from moto.server import ThreadedMotoServer


def _serialized(app):
    lock = threading.Lock()

    def wsgi(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    return wsgi


class AtomicMotoServer(ThreadedMotoServer):
    """:class:`moto.server.ThreadedMotoServer` on 127.0.0.1 that handles one request at a
    time (atomic conditional writes). ``AtomicMotoServer().start()``, then
    ``get_host_and_port()`` and ``stop()`` as for moto's server."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = _serialized(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()
