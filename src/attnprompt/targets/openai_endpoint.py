"""A target model behind an OpenAI-compatible chat-completions endpoint.

Works with the OpenAI API and with local servers that speak the same protocol (vLLM, SGLang,
LMDeploy, ...). Images go as base64 PNG data URLs in ``image_url`` content parts.

Retries are ours, not the ``openai`` client's (it is built with ``max_retries=0``): 408, 429,
5xx, timeouts and connection errors are retried with exponential backoff and jitter, honouring
``Retry-After`` / ``retry-after-ms``; any other 4xx fails at once with an
:class:`~attnprompt.errors.AttnPromptError` that says what to fix.

Replies are read as untrusted input: each attempt has an overall deadline (``timeout`` covers
connecting, sending, waiting and the whole body, however slowly it trickles) and a size cap
(``max_reply_bytes``). A 200 reply whose body is not JSON, or whose message has no text content
(``null``, missing, a list), is retried like a server error and never becomes (or is cached
as) an answer; when the retries run out, one error says what the server sent.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from typing import Any, cast

from PIL import Image

from attnprompt.errors import AttnPromptError
from ..files import JSONError, load_json
from attnprompt.targets.cache import AnswerCache, image_digest
from attnprompt.targets.http_limits import ReplyTooLarge, attempt_limits, limited_transport

__all__ = ["OpenAIEndpointTarget", "encode_image_data_url", "NO_API_KEY"]

#: The key sent when the environment variable is unset (local vLLM/SGLang servers ignore it).
NO_API_KEY = "EMPTY"
#: Longest single wait between attempts, whatever the backoff or Retry-After says.
MAX_WAIT_S = 120.0
#: Default cap on the size of one reply (headers and body), in bytes.
MAX_REPLY_BYTES = 4 * 1024 * 1024


def encode_image_data_url(image: Image.Image) -> str:
    """``data:image/png;base64,...`` of ``image`` converted to RGB (what the cache digest hashes)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _http_module(openai: Any) -> Any:
    """The httpx package the openai client is built on (``httpx``, or ``httpx2`` in recent releases)."""
    for base in openai.DefaultHttpxClient.__mro__:
        top = base.__module__.split(".")[0]
        if top.startswith("httpx"):
            return sys.modules[top]
    import httpx

    return httpx


class _Stopped(Exception):
    """Another item of the same batch failed; this one stops retrying."""


class _BadReply(Exception):
    """A 200 reply that holds no usable answer (retried like a server error)."""


def _retry_after_seconds(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), else None."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            v = float(ms) / 1000.0
            return v if math.isfinite(v) and v >= 0 else None
        ra = headers.get("retry-after")
    except (TypeError, ValueError, AttributeError):
        return None
    if ra is None:
        return None
    ra = str(ra).strip()
    try:
        v = float(ra)
        return v if math.isfinite(v) and v >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error_detail(err: Exception) -> str:
    """A short one-line description of an openai exception (status + server message)."""
    status = getattr(err, "status_code", None)
    msg = None
    body = getattr(err, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            msg = inner.get("message")
        elif isinstance(inner, str):
            msg = inner
    if not msg:
        msg = str(err) or type(err).__name__
    msg = " ".join(str(msg).split())
    if len(msg) > 300:
        msg = msg[:297] + "..."
    return f"HTTP {status}: {msg}" if status is not None else f"{type(err).__name__}: {msg}"


class OpenAIEndpointTarget:
    """Answers (image, prompt) pairs with a model served behind ``/v1/chat/completions``.

    Args:
        model: the model id the server knows (``gpt-4o``, ``llava-hf/llava-1.5-7b-hf``, ...).
        base_url: e.g. ``http://localhost:8000/v1``; default ``$OPENAI_BASE_URL``, else OpenAI.
        api_key_env: environment variable holding the API key; unset means ``"EMPTY"``
            (fine for local servers; OpenAI will answer 401, reported with this name).
        max_concurrency: requests in flight at once.
        max_retries: retries after the first attempt for 408/429/5xx/timeouts/connection errors.
        timeout: seconds per HTTP attempt, all of it: connecting, sending, waiting and reading
            the whole reply (a body that trickles in byte by byte is cut off here).
        backoff: base wait in seconds; attempt ``n`` waits about ``backoff * 2**n`` (jittered
            by a factor in [0.5, 1.5), at most 120 s) unless the server sent ``Retry-After``.
        cache: answers are looked up before any request and stored after each success.
        max_tokens, temperature: generation settings sent with every request (and part of
            the cache key).
        system_prompt: optional system message put before every :meth:`answer` request.
        image_first: put the image part before the text part (default: text, then image).
        max_reply_bytes: largest reply accepted (default 4 MiB); a larger one fails at once.

    Several images per prompt: give a list of images in place of one; they are sent as
    consecutive image parts, in order (up to :attr:`max_images`; MMMU's questions refer to
    several).
    """

    #: images one prompt may carry (the harness gives multi-image questions all their images)
    max_images = 8

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 60.0,
        backoff: float = 1.0,
        cache: AnswerCache | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        system_prompt: str | None = None,
        image_first: bool = False,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ):
        if not model or not isinstance(model, str):
            raise AttnPromptError("OpenAI endpoint: a model name is required")
        if int(max_concurrency) < 1:
            raise AttnPromptError(f"OpenAI endpoint: max_concurrency must be >= 1, got {max_concurrency}")
        if int(max_retries) < 0:
            raise AttnPromptError(f"OpenAI endpoint: max_retries must be >= 0, got {max_retries}")
        if not timeout or timeout <= 0:
            raise AttnPromptError(f"OpenAI endpoint: timeout must be > 0 seconds, got {timeout}")
        if int(max_tokens) < 1:
            raise AttnPromptError(f"OpenAI endpoint: max_tokens must be >= 1, got {max_tokens}")
        if backoff < 0:
            raise AttnPromptError(f"OpenAI endpoint: backoff must be >= 0, got {backoff}")
        if int(max_reply_bytes) < 1024:
            raise AttnPromptError(f"OpenAI endpoint: max_reply_bytes must be >= 1024, got {max_reply_bytes}")
        try:
            import openai
        except ImportError as e:
            raise AttnPromptError(
                "OpenAI endpoint targets need the openai client: pip install 'openai>=1.0'"
            ) from e
        self._openai = openai
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.api_key_env = api_key_env
        self.api_key_set = bool(os.environ.get(api_key_env))
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)
        self.backoff = float(backoff)
        self.cache = cache
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.system_prompt = system_prompt
        self.image_first = bool(image_first)
        self.max_reply_bytes = int(max_reply_bytes)
        self.name = f"openai:{model}"
        self._client = openai.OpenAI(
            api_key=os.environ.get(api_key_env) or NO_API_KEY,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.timeout,
            http_client=openai.DefaultHttpxClient(transport=limited_transport(_http_module(openai))),
        )
        self.endpoint = str(self._client.base_url).rstrip("/")
        self.requests_sent = 0  # HTTP attempts made (cache hits make none)
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIEndpointTarget(model={self.model!r}, endpoint={self.endpoint!r})"

    # -- settings and messages ------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Every setting that changes an :meth:`answer` (the cache key includes all of them)."""
        return {
            "endpoint": self.endpoint,  # another server may serve another model under the same name
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "system_prompt": self.system_prompt,
            "image_first": self.image_first,
        }

    def build_messages(self, image: Image.Image | Sequence[Image.Image] | None, prompt: str) -> list[dict[str, Any]]:
        """The chat messages sent for one (image or images, prompt) pair."""
        parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        if image is not None:
            shown: list[Image.Image] = list(image) if isinstance(image, (list, tuple)) else [cast(Image.Image, image)]
            imgs = [{"type": "image_url", "image_url": {"url": encode_image_data_url(im)}} for im in shown]
            parts = [*imgs, *parts] if self.image_first else [*parts, *imgs]
        messages: list[dict[str, Any]] = []
        if self.system_prompt is not None:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": parts})
        return messages

    # -- public API -----------------------------------------------------------------------

    def answer(self, images: Sequence[Image.Image | None], prompts: Sequence[str]) -> list[str]:
        """One answer per (image, prompt) pair, in input order.

        Cached pairs make no request; identical pairs in one call make one request. Each
        success is stored in the cache at once, so a crash or a failure part-way loses
        nothing already answered. The first failure stops the batch with an
        :class:`AttnPromptError` naming the item and the last error.
        """
        images, prompts = list(images), list(prompts)
        if len(images) != len(prompts):
            raise AttnPromptError(
                f"OpenAI endpoint: got {len(images)} images but {len(prompts)} prompts; they must pair up"
            )
        for i, (im, p) in enumerate(zip(images, prompts)):
            several = isinstance(im, (list, tuple))
            if isinstance(im, (list, tuple)) and not (0 < len(im) <= self.max_images
                                                      and all(isinstance(x, Image.Image) for x in im)):
                raise AttnPromptError(f"OpenAI endpoint: item {i}: a list of images must hold 1 to {self.max_images} "
                                      "PIL images")
            if im is not None and not several and not isinstance(im, Image.Image):
                raise AttnPromptError(f"OpenAI endpoint: item {i}: image must be a PIL image, got {type(im).__name__}")
            if not isinstance(p, str):
                raise AttnPromptError(f"OpenAI endpoint: item {i}: prompt must be a string, got {type(p).__name__}")
        settings = self.settings()
        results: list[str | None] = [None] * len(prompts)
        digests = [None if im is None else "+".join(image_digest(x) for x in im) if isinstance(im, (list, tuple))
                   else image_digest(im) for im in images]
        pending: dict[str, list[int]] = {}  # cache key -> indices sharing it
        for i, (d, p) in enumerate(zip(digests, prompts)):
            key = AnswerCache.key(self.model, d, p, settings)
            if key in pending:
                pending[key].append(i)
                continue
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                results[i] = hit
            else:
                pending[key] = [i]
        # duplicates of a cached pair
        for key, idx in list(pending.items()):
            first = idx[0]
            if results[first] is not None:
                for j in idx:
                    results[j] = results[first]
                del pending[key]

        if pending:
            stop = threading.Event()

            def work(key: str, idx: list[int]) -> str:
                i = idx[0]
                messages = self.build_messages(images[i], prompts[i])
                what = f"item {i}" + (f" (and duplicates {idx[1:]})" if len(idx) > 1 else "")
                text = self._complete(messages, {}, what, stop)
                if self.cache is not None:
                    meta = {"model": self.model, "endpoint": self.endpoint, "image": digests[i],
                            "prompt": prompts[i], "settings": settings, "item": i}
                    self.cache.put(key, text, meta)
                return text

            pool = ThreadPoolExecutor(
                max_workers=min(self.max_concurrency, len(pending)), thread_name_prefix="attnprompt-openai"
            )
            try:
                futures = {pool.submit(work, k, idx): idx for k, idx in pending.items()}
                done, not_done = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
                if failed:
                    stop.set()
                    for f in not_done:
                        f.cancel()
                    # report the earliest real failure (not a stop caused by it)
                    real = [f for f in failed if not isinstance(f.exception(), _Stopped)]
                    err = min(real or failed, key=lambda f: futures[f][0]).exception()
                    assert err is not None
                    raise err
                for f, idx in futures.items():
                    for j in idx:
                        results[j] = f.result()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return [r if r is not None else "" for r in results]

    def chat(self, messages: Sequence[Mapping[str, Any]], *, use_cache: bool = True, **settings: Any) -> str:
        """The reply to a list of chat messages (e.g. a judge prompt), with retries and caching.

        ``settings`` override ``max_tokens`` / ``temperature`` and may add any other
        chat-completions argument (``top_p``, ``seed``, ``response_format``...). The cache key is
        the model, the canonical JSON of the messages and the resolved settings.
        ``system_prompt`` is not added: the messages are sent as given.
        """
        msgs = [dict(m) for m in messages]
        if not msgs:
            raise AttnPromptError("OpenAI endpoint: chat() needs at least one message")
        resolved = {"max_tokens": self.max_tokens, "temperature": self.temperature, **settings}
        key = None
        if self.cache is not None and use_cache:
            try:
                prompt = json.dumps(msgs, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError) as e:
                raise AttnPromptError(f"OpenAI endpoint: chat messages must be JSON-serialisable: {e}") from e
            key = AnswerCache.key(self.model, None, prompt, {"kind": "chat", "endpoint": self.endpoint, **resolved})
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        extra = {k: v for k, v in resolved.items() if k not in ("max_tokens", "temperature")}
        text = self._complete(msgs, extra, "chat request", None,
                              max_tokens=resolved["max_tokens"], temperature=resolved["temperature"])
        if key is not None and self.cache is not None:
            self.cache.put(key, text, {"model": self.model, "endpoint": self.endpoint, "kind": "chat",
                                       "settings": resolved})
        return text

    # -- the request loop -----------------------------------------------------------------

    def _wait_before(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_WAIT_S)
        return min(self.backoff * (2**attempt) * random.uniform(0.5, 1.5), MAX_WAIT_S)

    def _complete(
        self,
        messages: list[dict[str, Any]],
        extra: Mapping[str, Any],
        what: str,
        stop: threading.Event | None,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> str:
        openai = self._openai
        attempts = self.max_retries + 1
        last = "no attempt made"
        for attempt in range(attempts):
            if stop is not None and stop.is_set():
                raise _Stopped()
            retry_after: float | None = None
            with self._count_lock:
                self.requests_sent += 1
            try:
                with attempt_limits(self.timeout, self.max_reply_bytes):
                    raw = self._client.chat.completions.with_raw_response.create(
                        model=self.model,
                        messages=messages,  # type: ignore[arg-type]
                        max_tokens=self.max_tokens if max_tokens is None else max_tokens,
                        temperature=self.temperature if temperature is None else temperature,
                        **extra,
                    )
                    body = raw.http_response.content  # read within the attempt's limits
                return _text_of(body)
            except _BadReply as e:
                last = str(e)
            except openai.APIStatusError as e:
                status = int(e.status_code)
                if status in (408, 429) or status >= 500:
                    last = _error_detail(e)
                    retry_after = _retry_after_seconds(getattr(e.response, "headers", None))
                else:
                    raise self._fatal(status, e, what) from e
            except openai.APITimeoutError:
                last = f"timed out after {self.timeout:g} s"
            except (ReplyTooLarge, openai.APIConnectionError) as e:
                cause = e.__cause__ or e.__context__
                if isinstance(e, ReplyTooLarge) or isinstance(cause, ReplyTooLarge):
                    # the same request would get the same reply: refused at once
                    raise AttnPromptError(
                        f"OpenAI endpoint {self.endpoint}, model {self.model!r}, {what}: the reply is larger than "
                        f"max_reply_bytes={self.max_reply_bytes}; refused") from None
                last = f"connection error: {cause or e}"
            except openai.OpenAIError as e:
                raise AttnPromptError(
                    f"OpenAI endpoint {self.endpoint}, model {self.model!r}, {what}: {_error_detail(e)}"
                ) from e
            if attempt + 1 < attempts:
                delay = self._wait_before(attempt, retry_after)
                if stop is not None:
                    if stop.wait(delay):
                        raise _Stopped()
                elif delay > 0:
                    time.sleep(delay)
        raise AttnPromptError(
            f"OpenAI endpoint {self.endpoint}, model {self.model!r}: {what} failed after "
            f"{attempts} attempt{'s' if attempts != 1 else ''} (max_retries={self.max_retries}); "
            f"last error: {last}"
        )

    def _fatal(self, status: int, err: Exception, what: str) -> AttnPromptError:
        where = f"OpenAI endpoint {self.endpoint}, model {self.model!r}, {what}"
        detail = _error_detail(err)
        if status == 401:
            hint = (
                f"check the API key in ${self.api_key_env}"
                if self.api_key_set
                else f"${self.api_key_env} is not set (sent the placeholder {NO_API_KEY!r}); set it to a valid API key"
            )
            return AttnPromptError(f"{where}: authentication failed ({detail}); {hint}")
        if status == 403:
            return AttnPromptError(
                f"{where}: permission denied ({detail}); the key in ${self.api_key_env} may lack access to this model"
            )
        if status == 404:
            return AttnPromptError(
                f"{where}: not found ({detail}); check the model name {self.model!r} and the base_url "
                f"{self.endpoint!r} (it usually ends in /v1)"
            )
        return AttnPromptError(f"{where}: request rejected ({detail})")



def _text_of(body: bytes) -> str:
    """The answer text of a chat-completions reply body; :class:`_BadReply` when it has none."""
    try:
        reply = load_json(body)
    except JSONError as e:
        raise _BadReply(f"the reply is not JSON ({e.reason}): {body[:80]!r}") from None
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _BadReply(f"the reply has no choices: {body[:120]!r}")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _BadReply("the reply's first choice has no message")
    content = message.get("content")
    if isinstance(content, str):
        return content
    refusal = message.get("refusal")
    if content is None and isinstance(refusal, str) and refusal:
        return refusal  # the API's own way of declining, a real answer
    kind = "null" if content is None else type(content).__name__
    raise _BadReply(f"the reply's message content is {kind}, not text")
