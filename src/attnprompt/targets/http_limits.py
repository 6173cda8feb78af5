"""An overall deadline and a size cap for each HTTP attempt of the endpoint client.

httpx's timeouts bound each socket operation, not a request: a server that sends its headers
and then one byte every few seconds never trips a 60 s read timeout and can hold an attempt for
hours, and nothing bounds the size of a reply. The endpoint client therefore talks through a
transport whose sockets clamp every connect, read and write to the time left in the current
attempt, and count the bytes received against a budget. Limits are per thread (each request of
the endpoint client runs on one thread from start to end), set with :func:`attempt_limits`.

The openai client uses httpx (``httpx2`` in its newest releases); the transport is built from
whichever it uses. An expired deadline raises httpcore's ``ReadTimeout`` / ``WriteTimeout``
(the openai client reports an ``APITimeoutError``); an exhausted budget raises :class:`ReplyTooLarge` (the openai
client wraps it in an ``APIConnectionError`` whose ``__cause__`` it is).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from types import ModuleType
from typing import Any, Iterator

__all__ = ["ReplyTooLarge", "attempt_limits", "limited_transport"]

_LIMITS = threading.local()


class ReplyTooLarge(Exception):
    """The server sent more bytes than the attempt's budget."""


@contextlib.contextmanager
def attempt_limits(seconds: float, max_bytes: int) -> Iterator[None]:
    """Bound every socket operation of this thread's HTTP traffic: ``seconds`` in all, ``max_bytes`` received."""
    _LIMITS.deadline = time.monotonic() + seconds
    _LIMITS.budget = max_bytes
    _LIMITS.max_bytes = max_bytes
    try:
        yield
    finally:
        _LIMITS.deadline = None


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = getattr(_LIMITS, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the attempt's overall deadline passed")
    return left if timeout is None else min(timeout, left)


class _LimitedStream:
    """httpcore's ``NetworkStream`` interface around a real stream (httpcore duck-types it)."""

    def __init__(self, inner: Any, core: ModuleType):
        self._inner = inner
        self._core = core

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, _time_left(timeout, self._core.ReadTimeout))
        if getattr(_LIMITS, "deadline", None) is not None:
            _LIMITS.budget -= len(data)
            if _LIMITS.budget < 0:
                raise ReplyTooLarge(f"the reply exceeds {_LIMITS.max_bytes} bytes")
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(timeout, self._core.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        return _LimitedStream(self._inner.start_tls(ssl_context, server_hostname,
                                                    _time_left(timeout, self._core.ConnectTimeout)), self._core)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _LimitedBackend:
    """httpcore's ``NetworkBackend`` interface whose streams are :class:`_LimitedStream`."""

    def __init__(self, inner: Any, core: ModuleType):
        self._inner = inner
        self._core = core

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> Any:
        stream = self._inner.connect_tcp(host, port, _time_left(timeout, self._core.ConnectTimeout),
                                         local_address, socket_options)
        return _LimitedStream(stream, self._core)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        stream = self._inner.connect_unix_socket(path, _time_left(timeout, self._core.ConnectTimeout),
                                                 socket_options)
        return _LimitedStream(stream, self._core)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def limited_transport(http: ModuleType) -> Any:
    """An ``http.HTTPTransport`` (``http`` is httpx or httpx2) whose connections obey :func:`attempt_limits`.

    httpx exposes no network-backend option, so the backend of its connection pool is wrapped
    in place; if a future httpx lays the pool out differently this fails loudly here (and in the
    tests) instead of silently dropping the limits.
    """
    transport = http.HTTPTransport()
    pool = transport._pool
    backend = getattr(pool, "_network_backend", None)
    core = sys.modules.get(type(pool).__module__.split(".")[0])
    if backend is None or core is None or not hasattr(core, "ReadTimeout"):
        raise RuntimeError(f"{http.__name__} {getattr(http, '__version__', '')}: no connection-pool network "
                           "backend to limit; the endpoint client needs updating for this version")
    pool._network_backend = _LimitedBackend(backend, core)
    return transport
