"""A naive proxy of the kind in the article that started this project: stdlib only, threaded,
one worker serialising upstream calls, buffering whole responses, polling for them every 50 ms.
Kept as the comparison point for the benchmarks."""

from __future__ import annotations

import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from bench.common import ROOT, pinned, process


def serve(port: int, target: str) -> None:
    requests: queue.Queue = queue.Queue()
    slots: dict[int, tuple[int, bytes, dict[str, str]]] = {}
    lock = threading.Lock()
    counter = iter(range(1, 10**9))

    def worker() -> None:
        while True:
            request_id, method, path, headers, body = requests.get()
            request = Request(f"{target}{path}", data=body, method=method)
            for key, value in headers.items():
                request.add_header(key, value)
            try:
                with urlopen(request, timeout=600) as response:
                    result = (response.status, response.read(), dict(response.getheaders()))
            except HTTPError as error:
                result = (error.code, error.read(), dict(error.headers))
            with lock:
                slots[request_id] = result

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            if self.path.startswith("/v1/messages/count_tokens"):
                self._send(200, b'{"input_tokens": 100}', {"Content-Type": "application/json"})
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")
            }
            request_id = next(counter)
            requests.put((request_id, "POST", self.path, headers, body))
            while True:  # the article's polling loop
                with lock:
                    if request_id in slots:
                        status, data, response_headers = slots.pop(request_id)
                        break
                time.sleep(0.05)
            self._send(status, data, {"Content-Type": response_headers.get("Content-Type", "application/json")})

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    threading.Thread(target=worker, daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def naive_proxy_process(port: int, upstream_port: int, cpu: int | None = None):
    """The naive proxy in its own process, optionally pinned to CPU."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.naive_proxy import serve; serve({port}, 'http://127.0.0.1:{upstream_port}')"
    return process(pinned([sys.executable, "-c", code], cpu), port)
