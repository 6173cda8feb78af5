"""A scriptable fake OpenAI-compatible chat-completions server, for tests.

A real HTTP server on ``127.0.0.1`` (random free port) in a background thread::

    with FakeChatServer() as server:
        target = OpenAIEndpointTarget("fake-model", base_url=server.base_url)
        server.inject(Failure.http(429, retry_after=0.1), Failure.slow(2.0))
        target.answer([image], ["What is this?"])
        assert server.chat_requests[0].json["messages"] ...

Endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``. Replies come from
``responder(request_json) -> str`` (default :func:`echo_responder`). Failures queued with
:meth:`FakeChatServer.inject` are applied, in order, one per chat request. Every request is
recorded in :attr:`FakeChatServer.requests`. With ``api_key`` set, requests without
``Authorization: Bearer <api_key>`` get 401; with ``models`` set, unknown models get 404.

Hostile modes, for testing clients against servers that misbehave with a 200: a body that is
not JSON (:meth:`Failure.garbage`), a body that trickles in one byte at a time
(:meth:`Failure.trickle`), a reply whose message has ``null`` / list content or no message
(:meth:`Failure.null_content`, :meth:`Failure.list_content`, :meth:`Failure.missing_message`),
a huge reply (:meth:`Failure.huge`) and a hang (:meth:`Failure.hang`). The server stays bounded:
every wait and every trickle has a count and a time limit, and :meth:`FakeChatServer.close`
wakes handlers that are still waiting.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

__all__ = [
    "FakeChatServer",
    "Failure",
    "RecordedRequest",
    "echo_responder",
    "decode_image_url",
    "image_urls",
    "prompt_text",
    "unused_base_url",
    "MAX_STALL_S",
]

#: No scripted delay, hang or trickle lasts longer than this, whatever a test asks for.
MAX_STALL_S = 120.0
_MISSING = object()

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


# -- helpers for reading chat requests ----------------------------------------------------------


def _parts(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [p for p in content if isinstance(p, Mapping)]
    return []


def prompt_text(request_json: Mapping[str, Any]) -> str:
    """The text parts of the last user message, joined with newlines."""
    users = [m for m in request_json.get("messages", []) if isinstance(m, Mapping) and m.get("role") == "user"]
    if not users:
        return ""
    return "\n".join(str(p.get("text", "")) for p in _parts(users[-1]) if p.get("type") == "text")


def image_urls(request_json: Mapping[str, Any]) -> list[str]:
    """Every ``image_url`` URL in the request, in message order."""
    urls = []
    for m in request_json.get("messages", []):
        if not isinstance(m, Mapping):
            continue
        for p in _parts(m):
            if p.get("type") == "image_url":
                iu = p.get("image_url")
                urls.append(iu.get("url", "") if isinstance(iu, Mapping) else str(iu))
    return urls


def decode_image_url(url: str) -> Image.Image:
    """The image inside a ``data:image/...;base64,`` URL (raises ValueError otherwise)."""
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
        raise ValueError(f"not a base64 image data URL: {url[:60]!r}")
    img = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
    img.load()
    return img


def echo_responder(request_json: Mapping[str, Any]) -> str:
    """Deterministic reply: the prompt, the image count and a short hash of each image URL."""
    urls = image_urls(request_json)
    tags = ",".join(hashlib.sha256(u.encode()).hexdigest()[:8] for u in urls)
    return f"echo: {prompt_text(request_json)} | images={len(urls)}" + (f" [{tags}]" if tags else "")


def unused_base_url() -> str:
    """A ``http://127.0.0.1:PORT/v1`` URL with nothing listening (a server that is down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# -- scripting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One scripted misbehaviour, applied to one chat request.

    ``delay`` seconds pass first; then, with ``status`` set, that HTTP error is returned (with
    ``headers``); with ``drop`` the connection is closed without a reply; otherwise a 200 is
    sent: ``body`` as given, else a chat completion whose first choice's message is ``choice``
    (``None``: the normal reply), with the body written one byte every ``byte_interval`` seconds when
    ``byte_interval`` is set (a slow answer, e.g. longer than the client's timeout, with ``delay``).
    """

    status: int | None = None
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None
    drop: bool = False
    body: bytes | None = None
    choice: Mapping[str, Any] | None = None
    byte_interval: float = 0.0

    @classmethod
    def http(cls, status: int, retry_after: float | str | None = None, message: str | None = None) -> Failure:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls(status=status, headers=headers, message=message)

    @classmethod
    def slow(cls, seconds: float) -> Failure:
        return cls(delay=seconds)

    @classmethod
    def disconnect(cls) -> Failure:
        return cls(drop=True)

    @classmethod
    def hang(cls, seconds: float) -> Failure:
        """Accept the request, say nothing for ``seconds`` (at most :data:`MAX_STALL_S`), then hang up."""
        return cls(delay=seconds, drop=True)

    @classmethod
    def garbage(cls, size: int = 64) -> Failure:
        """A 200 "application/json" reply of ``size`` bytes that are not JSON (an HTML error page)."""
        page = b"<html><body>502 Bad Gateway</body></html>"
        return cls(body=(page * (size // len(page) + 1))[:size])

    @classmethod
    def trickle(cls, interval: float, body: bytes | None = None) -> Failure:
        """Headers at once, then the body (default: a normal reply) one byte every ``interval`` seconds."""
        return cls(byte_interval=interval, body=body)

    @classmethod
    def null_content(cls) -> Failure:
        return cls(choice={"message": {"role": "assistant", "content": None}})

    @classmethod
    def list_content(cls) -> Failure:
        return cls(choice={"message": {"role": "assistant", "content": [{"type": "text", "text": "yes"}]}})

    @classmethod
    def missing_message(cls) -> Failure:
        return cls(choice={})

    @classmethod
    def huge(cls, size: int) -> Failure:
        """A valid reply whose content is ``size`` characters long."""
        return cls(choice={"message": {"role": "assistant", "content": "x" * size}})


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    time: float
    outcome: str = ""  # "ok", "http 429", "dropped", ...


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass

    # -- plumbing --

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True  # the client gave up (e.g. its timeout); nothing to do

    def _send_raw(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _trickle(self, body: bytes, interval: float) -> None:
        """Headers, then one byte every ``interval`` s: at most len(body) bytes and MAX_STALL_S seconds."""
        stop = self.server.owner._stopping
        end = time.monotonic() + MAX_STALL_S
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                if stop.wait(interval) or time.monotonic() > end:
                    return
        except OSError:
            return  # the client gave up

    def _error(self, status: int, message: str, headers: Mapping[str, str] | None = None, code: str | None = None):
        err = {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "param": None, "code": code}
        self._send_json(status, {"error": err}, headers)

    def _record(self, body: Any) -> RecordedRequest:
        rec = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            json=body,
            time=time.monotonic(),
        )
        self.server.owner._record(rec)
        return rec

    def _authorized(self) -> bool:
        key = self.server.owner.api_key
        return key is None or self.headers.get("Authorization", "") == f"Bearer {key}"

    # -- endpoints --

    def do_GET(self) -> None:  # noqa: N802
        rec = self._record(None)
        path = self.path.split("?")[0].rstrip("/")
        if path != "/v1/models":
            rec.outcome = "http 404"
            return self._error(404, f"no route GET {self.path}")
        if not self._authorized():
            rec.outcome = "http 401"
            return self._error(401, "Incorrect API key provided.", code="invalid_api_key")
        rec.outcome = "ok"
        models = self.server.owner.models or [self.server.owner.default_model]
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "attnprompt-fake"} for m in models]
        self._send_json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:  # noqa: N802
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = self._record(body)
        path = self.path.split("?")[0].rstrip("/")
        if path != "/v1/chat/completions":
            rec.outcome = "http 404"
            return self._error(404, f"no route POST {self.path}")

        failure = owner._next_failure()
        if failure is not None:
            if failure.delay > 0:
                rec.outcome = "delaying"
                owner._stopping.wait(min(failure.delay, MAX_STALL_S))
            if failure.drop:
                rec.outcome = "dropped"
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if failure.status is not None:
                rec.outcome = f"http {failure.status}"
                msg = failure.message or f"injected failure {failure.status}"
                return self._error(failure.status, msg, failure.headers)
            if failure.body is not None and not failure.byte_interval:
                rec.outcome = "garbage"
                return self._send_raw(200, failure.body)

        if not self._authorized():
            rec.outcome = "http 401"
            return self._error(401, "Incorrect API key provided.", code="invalid_api_key")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            rec.outcome = "http 400"
            return self._error(400, "request body must be JSON with 'model' and a 'messages' list")
        if body.get("stream"):
            rec.outcome = "http 400"
            return self._error(400, "streaming is not supported by the fake server")
        model = str(body["model"])
        if owner.models is not None and model not in owner.models:
            rec.outcome = "http 404"
            return self._error(
                404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
            )
        for url in image_urls(body):
            if url.startswith("data:"):
                try:
                    decode_image_url(url)
                except Exception as e:  # noqa: BLE001 - any decode failure is the client's fault
                    rec.outcome = "http 400"
                    return self._error(400, f"could not decode image: {e}")
        try:
            text = owner.responder(body)
        except Exception as e:  # noqa: BLE001 - report responder bugs as 500s
            rec.outcome = "http 500"
            return self._error(500, f"responder raised {type(e).__name__}: {e}")
        rec.outcome = "ok"
        prompt_tokens = sum(len(prompt_text({"messages": [m]}).split()) for m in body["messages"])
        completion_tokens = len(str(text).split())
        choice: Mapping[str, Any] = {"message": {"role": "assistant", "content": str(text)}}
        if failure is not None and failure.choice is not None:
            rec.outcome = "odd reply"
            choice = failure.choice
        reply = {
            "id": f"chatcmpl-fake-{owner._next_id()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, **choice, "finish_reason": "stop", "logprobs": None}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if failure is not None and failure.byte_interval:
            rec.outcome = "trickling"
            return self._trickle(failure.body if failure.body is not None else json.dumps(reply).encode(),
                                 failure.byte_interval)
        self._send_json(200, reply)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    owner: FakeChatServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that hung up (its deadline, a refused huge reply) is not a server bug
        super().handle_error(request, client_address)


class FakeChatServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 for tests (see module doc).

    Args:
        responder: ``request_json -> reply text``; default :func:`echo_responder`.
        failures: failures to apply, in order, to the first chat requests.
        api_key: if set, chat and model requests must carry ``Authorization: Bearer <api_key>``.
        models: if set, the only model ids accepted (others get 404) and listed by /v1/models.
    """

    default_model = "fake-model"

    def __init__(
        self,
        responder: Callable[[Mapping[str, Any]], str] | None = None,
        failures: Iterable[Failure] = (),
        api_key: str | None = None,
        models: Iterable[str] | None = None,
    ):
        self.responder = responder or echo_responder
        self.api_key = api_key
        self.models = list(models) if models is not None else None
        self.requests: list[RecordedRequest] = []
        self._failures: deque[Failure] = deque(failures)
        self._lock = threading.Lock()
        self._ids = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # wakes handlers still delaying or trickling on close()

    # -- lifecycle --

    def start(self) -> FakeChatServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeChatServer", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        httpd, self._httpd = self._httpd, None
        self._stopping.set()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeChatServer is not running (use it as a context manager or call start())")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting and inspection --

    def inject(self, *failures: Failure) -> None:
        """Queue failures; each later chat request consumes the next one."""
        with self._lock:
            self._failures.extend(failures)

    @property
    def pending_failures(self) -> int:
        with self._lock:
            return len(self._failures)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Recorded POSTs to /v1/chat/completions, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path.rstrip("/").endswith("/chat/completions")]

    def clear(self) -> None:
        """Forget recorded requests (queued failures stay)."""
        with self._lock:
            self.requests.clear()

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(rec)

    def _next_failure(self) -> Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids
