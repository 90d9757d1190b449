"""A local HTTP server that speaks the Anthropic Messages wire format.

The official SDK talks to it over real HTTP, so everything from header handling to
status-code mapping and timeouts goes through the SDK's own code paths. Each test
scripts the answers it wants, in order:

    ("ok", text)         200 with a Messages response whose text block is `text`
    ("status", code)     `code` with Anthropic's error body (429 adds retry-after: 0)
    ("sleep", seconds)   answer nothing for `seconds` (the client should time out first)

Every request that reaches the server is recorded (path, headers, JSON body).

Like the real API, it takes the key from `x-api-key` or, as the 2.x SDKs send it, from
`Authorization: Bearer`, and under anthropic-version 2026-10-21 (the 2.x SDKs' default)
it refuses the sampling parameters temperature, top_p and top_k with a 400.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

# From this API version on, the Messages API rejects sampling parameters outright.
NO_SAMPLING_SINCE = "2026-10-21"
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")


class FakeAnthropic:
    def __init__(self, api_key: str):
        self.api_key = api_key
        self.plan: deque[tuple] = deque()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *steps: tuple) -> None:
        with self._lock:
            self.plan.extend(steps)

    def start(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers that are "sleeping" on a planned timeout
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_step(self) -> tuple:
        with self._lock:
            if self.plan:
                return self.plan.popleft()
        return ("status", 400, "unplanned request: the test scripted fewer responses")

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_unparsed": raw.decode("utf-8", "replace")}
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                if self.path.split("?")[0] != "/v1/messages":
                    return self._error(404, f"no route {self.path}")
                if self._api_key() != fake.api_key:
                    return self._error(401, "invalid x-api-key")
                version = self.headers.get("anthropic-version") or ""
                if not version:
                    return self._error(400, "anthropic-version: header is required")
                if version >= NO_SAMPLING_SINCE and (extra := [p for p in SAMPLING_PARAMS if p in body]):
                    return self._error(400, f"{extra[0]}: Extra inputs are not permitted")
                step = fake._next_step()
                kind = step[0]
                if kind == "ok":
                    return self._message(body.get("model", "unknown"), step[1])
                if kind == "status":
                    message = step[2] if len(step) > 2 else f"planned HTTP {step[1]}"
                    return self._error(step[1], message)
                if kind == "sleep":
                    fake._stop.wait(step[1])
                    with contextlib.suppress(OSError):  # the client gave up and closed the connection
                        self._error(500, "answered after the planned delay")
                    return None
                raise AssertionError(f"unknown planned step {step!r}")

            def _api_key(self) -> str | None:
                if (key := self.headers.get("x-api-key")) is not None:
                    return key
                auth = self.headers.get("authorization") or ""
                return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

            def _send_json(self, status: int, payload: dict, extra_headers: dict | None = None) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
                for name, value in (extra_headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def _message(self, model: str, text: str) -> None:
                self._send_json(
                    200,
                    {
                        "id": f"msg_{uuid.uuid4().hex[:24]}",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [{"type": "text", "text": text}],
                        "stop_reason": "end_turn",
                        "stop_sequence": None,
                        "usage": {"input_tokens": 10, "output_tokens": 10},
                    },
                )

            def _error(self, status: int, message: str) -> None:
                error_type = ERROR_TYPES.get(status, "api_error")
                headers = {"retry-after": "0"} if status == 429 else None
                self._send_json(status, {"type": "error", "error": {"type": error_type, "message": message}}, headers)

        return Handler
