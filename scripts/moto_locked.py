#!/usr/bin/env python3
"""A DynamoDB-compatible test server (moto) that handles one request at a time.

For replay-guard's tests only. Plain moto serves requests on several threads
without a lock around its in-memory tables, so two conditional writes on the
same key can both pass their condition; real DynamoDB never allows that, and
the concurrency tests would flake. This wrapper serialises every request
behind one lock, so each conditional write is atomic, as in DynamoDB.

Usage: python3 scripts/moto_locked.py [--port N]   (N = 0: a free port)

- Listens on 127.0.0.1 only, never on another address.
- Prints `PORT=<n>` on stdout (flushed) once listening.
- Exits by itself on SIGTERM/SIGINT, or when its parent process dies
  (so a crashed test run leaves no server behind).
- `--no-old-items` makes it ignore ReturnValuesOnConditionCheckFailure, like
  DynamoDB-compatible servers that return no old item on a failed
  condition, so the store's fallback read gets tested.
- SIGUSR1 pauses it (requests hang, state is kept: an unresponsive store);
  SIGUSR2 resumes it.

Needs `moto[server]` (pip install "moto[server]"); tested with moto 5.2.1.
"""

import argparse
import io
import json
import logging
import os
import signal
import sys
import threading
import time

from moto.server import create_backend_app
from werkzeug.serving import make_server


class LockedApp:
    """WSGI middleware: one request inside moto at a time, body included."""

    def __init__(self, app, no_old_items=False):
        self.app = app
        self.no_old_items = no_old_items
        self.lock = threading.Lock()
        # Set while serving; cleared by SIGUSR1 to simulate a hung store.
        self.up = threading.Event()
        self.up.set()

    def __call__(self, environ, start_response):
        self.up.wait()
        if self.no_old_items:
            strip_old_item_request(environ)
        with self.lock:
            result = self.app(environ, start_response)
            try:
                body = [bytes(chunk) for chunk in result]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return body


def strip_old_item_request(environ):
    """Drop ReturnValuesOnConditionCheckFailure from a JSON request body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length)
    try:
        body = json.loads(raw)
        if isinstance(body, dict) and body.pop("ReturnValuesOnConditionCheckFailure", None):
            raw = json.dumps(body).encode()
    except ValueError:
        pass
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))


def watch_parent(parent: int) -> None:
    """Exit the whole process as soon as the parent that started us is gone."""
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--no-old-items",
        action="store_true",
        help="never return the old item of a failed conditional write",
    )
    args = parser.parse_args()

    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = LockedApp(create_backend_app("dynamodb"), args.no_old_items)
    server = make_server("127.0.0.1", args.port, app, threaded=True)

    def stop(_signum, _frame):
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, lambda _s, _f: app.up.clear())
    signal.signal(signal.SIGUSR2, lambda _s, _f: app.up.set())

    print(f"PORT={server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
