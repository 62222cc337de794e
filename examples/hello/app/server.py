#!/usr/bin/env python3
"""hello: the example service gantry packages and deploys.

Serves on 127.0.0.1:$PORT (default 8000):
  GET /          -> "hello from <version>"
  GET /version   -> {"version": "<version>"}
  GET /healthz   -> 200 "ok", or 503 when the build is marked broken, after
                    FAIL_AFTER seconds (build_info.json), or after POST /fail.
                    With fail_all, every path answers 503 once health fails.
Its version and health behaviour come from build_info.json, written by build.py
when gantry packages it.
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
INFO = json.loads((HERE / "build_info.json").read_text()) if (HERE / "build_info.json").exists() else {}
VERSION = INFO.get("version", "unknown")
STARTED = time.monotonic()
FORCED_FAIL = False


def healthy() -> bool:
    if FORCED_FAIL or INFO.get("broken") is True:
        return False
    fail_after = INFO.get("fail_after")
    return fail_after is None or time.monotonic() - STARTED < float(fail_after)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if INFO.get("fail_all") is True and not healthy():
            self._send(503, "unhealthy\n")
        elif self.path == "/healthz":
            if healthy():
                self._send(200, "ok\n")
            else:
                self._send(503, "unhealthy\n")
        elif self.path == "/version":
            self._send(200, json.dumps({"version": VERSION}) + "\n", "application/json")
        elif self.path == "/":
            self._send(200, f"hello from {VERSION}\n")
        else:
            self._send(404, "not found\n")

    def do_POST(self) -> None:  # noqa: N802
        global FORCED_FAIL
        if self.path == "/fail":
            FORCED_FAIL = True
            self._send(200, "health will now fail\n")
        else:
            self._send(404, "not found\n")

    def log_message(self, *args) -> None:
        pass


class Server(ThreadingHTTPServer):
    # The default backlog of 5 makes connections wait for a SYN retry (1 s) under load.
    request_queue_size = 128
    daemon_threads = True


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    server = Server(("127.0.0.1", port), Handler)
    print(f"hello {VERSION} listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
