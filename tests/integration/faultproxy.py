"""A fault-injecting HTTP proxy on loopback between boto3 and DynamoDB Local.

DynamoDB Local never throttles and never returns UnprocessedItems, so the sink's handling of both
would go untested. This proxy forwards every request to DynamoDB Local, except that a seeded share
of BatchWriteItem calls is answered with a 400 ProvisionedThroughputExceededException (nothing
forwarded), and another share is forwarded only in part: the rest of the request comes back as
UnprocessedItems, exactly as DynamoDB reports items it did not write.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

BATCH_WRITE = "DynamoDB_20120810.BatchWriteItem"
THROTTLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded (injected)",
}


@dataclass
class FaultCounts:
    """What the proxy did, so a test can prove the faults really happened."""

    batch_calls: int = 0
    throttled: int = 0
    partial: int = 0
    withheld_items: int = 0
    forwarded_items: int = 0


class FaultProxy:
    """Start with `with FaultProxy(upstream, seed=..., throttle=0.2, partial=0.3) as proxy:`; point
    boto3 at `proxy.url`."""

    def __init__(self, upstream: str, *, seed: int, throttle: float = 0.0, partial: float = 0.0,
                 keep_fraction: float = 0.5) -> None:
        self.upstream = urlsplit(upstream)
        self.throttle = throttle
        self.partial = partial
        self.keep_fraction = keep_fraction
        self.counts = FaultCounts()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------ decisions

    def _decide(self, request: dict) -> tuple[str, dict, dict]:
        """('throttle'|'partial'|'forward', what to forward, what to withhold) for one BatchWriteItem."""
        with self._lock:
            self.counts.batch_calls += 1
            roll = self._rng.random()
            if roll < self.throttle:
                self.counts.throttled += 1
                return "throttle", {}, {}
            if roll < self.throttle + self.partial:
                forward: dict = {}
                withhold: dict = {}
                for table, writes in request["RequestItems"].items():
                    keep = [self._rng.random() < self.keep_fraction for _ in writes]
                    kept = [write for write, flag in zip(writes, keep) if flag]
                    held = [write for write, flag in zip(writes, keep) if not flag]
                    if kept:
                        forward[table] = kept
                    if held:
                        withhold[table] = held
                if withhold:
                    self.counts.partial += 1
                    self.counts.withheld_items += sum(map(len, withhold.values()))
                self.counts.forwarded_items += sum(map(len, forward.values()))
                return "partial", forward, withhold
            self.counts.forwarded_items += sum(map(len, request["RequestItems"].values()))
            return "forward", request["RequestItems"], {}

    # ------------------------------------------------------------ HTTP

    def _forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, list, bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            headers = {**headers, "Content-Length": str(len(body))}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                skip = ("content-length", "host")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                headers["Host"] = f"{proxy.upstream.hostname}:{proxy.upstream.port}"
                if self.headers.get("X-Amz-Target") != BATCH_WRITE:
                    self._relay(*proxy._forward("POST", self.path, headers, body))
                    return
                request = json.loads(body)
                action, forward, withhold = proxy._decide(request)
                if action == "throttle":
                    self._send(400, json.dumps(THROTTLED).encode())
                    return
                if action == "forward":
                    self._relay(*proxy._forward("POST", self.path, headers, body))
                    return
                result: dict = {"UnprocessedItems": {}}
                if forward:
                    status, upstream_headers, answer = proxy._forward(
                        "POST", self.path, headers, json.dumps({**request, "RequestItems": forward}).encode())
                    if status != 200:
                        self._relay(status, upstream_headers, answer)
                        return
                    result = json.loads(answer)
                for table, writes in withhold.items():
                    result.setdefault("UnprocessedItems", {}).setdefault(table, []).extend(writes)
                self._send(200, json.dumps(result).encode())

            def _relay(self, status: int, headers: list, body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("x-amz-crc32", str(zlib.crc32(body)))  # botocore checks it
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
