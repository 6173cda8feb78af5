"""OpenAI-compatible endpoint target, answer cache and fake server (offline, fast)."""

from __future__ import annotations

import json
import threading
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image

from attnprompt.errors import AttnPromptError
from attnprompt.targets import AnswerCache, OpenAIEndpointTarget, encode_image_data_url, image_digest
from attnprompt.testing_server import (
    FakeChatServer,
    Failure,
    decode_image_url,
    image_urls,
    prompt_text,
    unused_base_url,
)
from tests.conftest import import_or_fail_in_ci

openai = import_or_fail_in_ci("openai", "the openai client (pip install 'openai>=1.0')", "CI installs the api extra")

KEY_ENV = "ATTNPROMPT_TEST_ENDPOINT_KEY"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "OPENAI_BASE_URL", KEY_ENV):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    with FakeChatServer() as s:
        yield s


def make_target(server_or_url, **kw) -> OpenAIEndpointTarget:
    base_url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    kw.setdefault("backoff", 0.001)
    kw.setdefault("timeout", 5.0)
    kw.setdefault("api_key_env", KEY_ENV)
    return OpenAIEndpointTarget("fake-model", base_url=base_url, **kw)


def noise_image(seed: int, size=(13, 9), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8), mode)


# -- the client ---------------------------------------------------------------------------------


def test_answers_in_input_order_under_concurrency():
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def responder(req):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        n = int(prompt_text(req).split()[-1])
        time.sleep(0.01 * (12 - n))  # early items finish last
        with lock:
            in_flight -= 1
        return f"answer to {n} with {len(image_urls(req))} image"

    with FakeChatServer(responder=responder) as s:
        target = make_target(s, max_concurrency=4)
        images = [noise_image(i) for i in range(12)]
        prompts = [f"question {i}" for i in range(12)]
        answers = target.answer(images, prompts)
    assert answers == [f"answer to {i} with 1 image" for i in range(12)]
    assert len(s.chat_requests) == 12
    assert 2 <= peak <= 4  # concurrent, and bounded by max_concurrency


def test_image_arrives_as_png_data_url_with_same_pixels(server):
    rgb = noise_image(1)
    rgba = noise_image(2, mode="RGBA")
    target = make_target(server, system_prompt="Be brief.")
    target.answer([rgb, rgba], ["first", "second"])
    by_prompt = {prompt_text(r.json): r.json for r in server.chat_requests}
    for prompt, img in (("first", rgb), ("second", rgba)):
        req = by_prompt[prompt]
        assert req["model"] == "fake-model" and req["max_tokens"] == 512 and req["temperature"] == 0.0
        system, user = req["messages"]
        assert system == {"role": "system", "content": "Be brief."}
        assert user["role"] == "user"
        text_part, image_part = user["content"]
        assert text_part == {"type": "text", "text": prompt}
        assert image_part["type"] == "image_url"
        url = image_part["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        back = decode_image_url(url)
        assert back.format == "PNG" and back.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(back), np.asarray(img.convert("RGB")))


def test_image_first_and_text_only_requests(server):
    target = make_target(server, image_first=True)
    out = target.answer([noise_image(3), None], ["with image", "no image"])
    assert out[0].startswith("echo: with image | images=1")
    assert out[1] == "echo: no image | images=0"
    req = next(r.json for r in server.chat_requests if prompt_text(r.json) == "with image")
    assert [p["type"] for p in req["messages"][0]["content"]] == ["image_url", "text"]


def test_retries_rate_limits_server_errors_timeouts_and_drops(server):
    server.inject(
        Failure.http(429),
        Failure.http(500),
        Failure.http(503),
        Failure.slow(1.5),  # longer than the client's timeout
        Failure.disconnect(),
    )
    target = make_target(server, max_retries=5, timeout=0.4)
    assert target.answer([noise_image(4)], ["hello"])[0].startswith("echo: hello | images=1")
    assert target.requests_sent == 6
    outcomes = [r.outcome for r in server.chat_requests]
    assert outcomes[:3] == ["http 429", "http 500", "http 503"] and outcomes[4:] == ["dropped", "ok"]
    assert server.pending_failures == 0


def test_retry_after_is_honoured(server):
    server.inject(Failure.http(429, retry_after=1))
    target = make_target(server, backoff=0.001)
    t0 = time.monotonic()
    assert target.answer([None], ["hi"]) == ["echo: hi | images=0"]
    first, second = server.chat_requests
    assert second.time - first.time >= 0.95
    assert time.monotonic() - t0 < 5


def test_retry_after_parsing():
    from attnprompt.targets.openai_endpoint import _retry_after_seconds

    assert _retry_after_seconds({"retry-after": "2"}) == 2.0
    assert _retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= _retry_after_seconds({"retry-after": later}) <= 31
    assert _retry_after_seconds({"retry-after": "soon"}) is None
    assert _retry_after_seconds({}) is None


def test_backoff_grows_exponentially_with_jitter():
    target = make_target(unused_base_url(), backoff=1.0)
    waits = [[target._wait_before(n, None) for _ in range(200)] for n in range(4)]
    for n, ws in enumerate(waits):
        assert all(0.5 * 2**n <= w < 1.5 * 2**n for w in ws)
        assert len(set(ws)) > 100  # jittered
    assert target._wait_before(0, 0.3) == 0.3  # Retry-After wins over backoff
    assert target._wait_before(30, None) == 120.0  # capped


def test_gives_up_after_max_retries_naming_item_and_last_error(tmp_path):
    def responder(req):
        if prompt_text(req) == "bad":
            raise RuntimeError("model crashed")
        return "fine"

    cache = AnswerCache(tmp_path)
    with FakeChatServer(responder=responder) as s:
        target = make_target(s, max_retries=2, cache=cache, max_concurrency=1)
        with pytest.raises(AttnPromptError) as info:
            target.answer([None, None], ["good", "bad"])
        bad = [r for r in s.chat_requests if prompt_text(r.json) == "bad"]
    msg = str(info.value)
    assert "item 1" in msg and "3 attempts" in msg and "max_retries=2" in msg
    assert "HTTP 500" in msg and "model crashed" in msg and "fake-model" in msg
    assert len(bad) == 3
    # the answer that succeeded before the failure was kept
    assert AnswerCache(tmp_path).get(AnswerCache.key("fake-model", None, "good", target.settings())) == "fine"


def test_timeouts_give_up_saying_so(server):
    server.inject(Failure.slow(0.6), Failure.slow(0.6))
    target = make_target(server, max_retries=1, timeout=0.2)
    with pytest.raises(AttnPromptError, match=r"item 0 failed after 2 attempts.*timed out after 0.2 s"):
        target.answer([None], ["x"])
    assert len(server.chat_requests) == 2


def test_400_fails_at_once(server):
    server.inject(Failure.http(400, message="image too large"))
    target = make_target(server, max_retries=5)
    with pytest.raises(AttnPromptError, match="request rejected.*HTTP 400.*image too large"):
        target.answer([None], ["x"])
    assert len(server.chat_requests) == 1


@pytest.mark.parametrize("key_set", [False, True])
def test_401_fails_at_once_and_names_the_env_var(monkeypatch, key_set):
    if key_set:
        monkeypatch.setenv(KEY_ENV, "wrong-key")
    with FakeChatServer(api_key="right-key") as s:
        target = make_target(s, max_retries=5)
        with pytest.raises(AttnPromptError) as info:
            target.answer([noise_image(5)], ["x"])
        assert len(s.chat_requests) == 1
        assert s.chat_requests[0].headers["authorization"] == ("Bearer wrong-key" if key_set else "Bearer EMPTY")
    msg = str(info.value)
    assert "authentication failed" in msg and f"${KEY_ENV}" in msg
    assert ("is not set" in msg) != key_set


def test_right_key_is_sent(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "right-key")
    with FakeChatServer(api_key="right-key") as s:
        assert make_target(s).answer([None], ["x"]) == ["echo: x | images=0"]


def test_404_fails_at_once_and_names_model_and_base_url():
    with FakeChatServer(models=["llava-1.5-7b"]) as s:
        target = make_target(s, max_retries=5)
        with pytest.raises(AttnPromptError) as info:
            target.answer([None], ["x"])
        assert len(s.chat_requests) == 1
        base = s.base_url
    msg = str(info.value)
    assert "'fake-model'" in msg and base in msg and "model name" in msg and "base_url" in msg


def test_wrong_base_url_path_is_a_clear_404(server):
    target = make_target(server.base_url.removesuffix("/v1") + "/v2")
    with pytest.raises(AttnPromptError, match="not found.*base_url"):
        target.answer([None], ["x"])


def test_server_down_gives_clear_error_after_retries():
    url = unused_base_url()
    target = make_target(url, max_retries=2)
    with pytest.raises(AttnPromptError) as info:
        target.answer([None], ["x"])
    msg = str(info.value)
    assert "3 attempts" in msg and "connection error" in msg.lower() and url in msg
    assert target.requests_sent == 3


def test_mismatched_lengths_and_bad_settings():
    with pytest.raises(AttnPromptError, match="2 images but 1 prompts"):
        make_target(unused_base_url()).answer([None, None], ["x"])
    with pytest.raises(AttnPromptError, match="max_concurrency"):
        make_target(unused_base_url(), max_concurrency=0)


def test_base_url_defaults_from_env(monkeypatch, server):
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    target = OpenAIEndpointTarget("fake-model", api_key_env=KEY_ENV, backoff=0.001)
    assert target.endpoint == server.base_url
    assert target.answer([None], ["x"]) == ["echo: x | images=0"]
    assert target.name == "openai:fake-model"


# -- the cache ----------------------------------------------------------------------------------


def test_cache_hit_makes_zero_requests_on_rerun(tmp_path, server):
    images = [noise_image(i) for i in range(5)]
    prompts = [f"q{i}" for i in range(5)]
    first = make_target(server, cache=AnswerCache(tmp_path)).answer(images, prompts)
    assert len(server.chat_requests) == 5
    server.clear()
    # a fresh process: new cache object over the same folder, same pixels in new objects
    again = make_target(server, cache=AnswerCache(tmp_path)).answer([im.copy() for im in images], prompts)
    assert again == first
    assert server.chat_requests == []
    # any change of model input or setting misses
    make_target(server, cache=AnswerCache(tmp_path), temperature=0.7).answer(images[:1], prompts[:1])
    make_target(server, cache=AnswerCache(tmp_path)).answer([noise_image(99)], prompts[:1])
    make_target(server, cache=AnswerCache(tmp_path)).answer(images[:1], ["other"])
    assert len(server.chat_requests) == 3


def test_duplicate_pairs_in_one_call_make_one_request(server):
    im = noise_image(7)
    out = make_target(server).answer([im, im.copy(), im], ["same", "same", "other"])
    assert out[0] == out[1] != out[2]
    assert len(server.chat_requests) == 2


def test_cache_survives_torn_last_line(tmp_path):
    cache = AnswerCache(tmp_path)
    k1, k2, k3 = (AnswerCache.key("m", None, p, {"t": 0}) for p in ("a", "b", "c"))
    cache.put(k1, "one", {"note": "x"})
    cache.put(k2, "two")
    with open(cache.path, "ab") as f:
        f.write(b'{"key": "' + k3.encode() + b'", "answer": "thr')  # crash mid-write
    reopened = AnswerCache(tmp_path)
    assert (reopened.get(k1), reopened.get(k2), reopened.get(k3)) == ("one", "two", None)
    assert len(reopened) == 2
    reopened.put(k3, "three")
    after = AnswerCache(tmp_path)
    assert (after.get(k1), after.get(k2), after.get(k3)) == ("one", "two", "three")
    assert after.skipped_lines == 1
    lines = cache.path.read_bytes().split(b"\n")
    assert json.loads(lines[-2])["answer"] == "three" and lines[-1] == b""


def test_cache_is_thread_safe_and_shared_between_instances(tmp_path):
    cache = AnswerCache(tmp_path)
    other = AnswerCache(tmp_path)  # e.g. another process
    keys = [AnswerCache.key("m", None, str(i), {}) for i in range(200)]

    def writer(start):
        for i in range(start, 200, 8):
            cache.put(keys[i], f"answer {i}\nwith a newline", {"i": i})

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 200
    assert other.get(keys[123]) == "answer 123\nwith a newline"  # picked up on a miss
    fresh = AnswerCache(tmp_path)
    assert len(fresh) == 200 and fresh.skipped_lines == 0
    assert all(fresh.get(k) == f"answer {i}\nwith a newline" for i, k in enumerate(keys))


def test_cache_key_is_canonical():
    im = noise_image(8)
    base = AnswerCache.key("m", im, "p", {"a": 1, "b": 2})
    assert AnswerCache.key("m", image_digest(im), "p", {"b": 2, "a": 1}) == base
    assert AnswerCache.key("m2", im, "p", {"a": 1, "b": 2}) != base
    assert AnswerCache.key("m", None, "p", {"a": 1, "b": 2}) != base
    assert AnswerCache.key("m", im, "p ", {"a": 1, "b": 2}) != base
    assert AnswerCache.key("m", im, "p", {"a": 1, "b": 3}) != base


def test_image_digest_hashes_pixels_not_encoding(tmp_path):
    im = noise_image(9)
    im.save(tmp_path / "a.png", compress_level=0)
    im.save(tmp_path / "b.png", compress_level=9, optimize=True)
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    assert image_digest(a) == image_digest(b) == image_digest(im)
    changed = np.asarray(im).copy()
    changed[0, 0, 0] ^= 1
    assert image_digest(Image.fromarray(changed)) != image_digest(im)
    # same bytes, other shape
    flat = Image.fromarray(np.asarray(im).reshape(1, -1, 3))
    assert image_digest(flat) != image_digest(im)
    # the digest matches what is sent
    assert image_digest(decode_image_url(encode_image_data_url(noise_image(10, mode="RGBA")))) == image_digest(
        noise_image(10, mode="RGBA")
    )


# -- chat() for judges --------------------------------------------------------------------------


def test_chat_retries_and_caches(tmp_path, server):
    server.inject(Failure.http(503), Failure.http(429, retry_after=0))
    target = make_target(server, cache=AnswerCache(tmp_path))
    msgs = [{"role": "system", "content": "You are a judge."}, {"role": "user", "content": "Score: 1 or 0?"}]
    assert target.chat(msgs, max_tokens=5) == "echo: Score: 1 or 0? | images=0"
    assert len(server.chat_requests) == 3
    assert server.chat_requests[-1].json["max_tokens"] == 5
    assert server.chat_requests[-1].json["messages"] == msgs
    server.clear()
    again = make_target(server, cache=AnswerCache(tmp_path))
    assert again.chat(msgs, max_tokens=5) == "echo: Score: 1 or 0? | images=0"
    assert server.chat_requests == []
    again.chat(msgs, max_tokens=6)  # other settings miss
    again.chat(msgs, max_tokens=5, use_cache=False)
    assert len(server.chat_requests) == 2


def test_chat_fatal_errors_are_not_retried(server):
    server.inject(Failure.http(403))
    with pytest.raises(AttnPromptError, match="permission denied"):
        make_target(server).chat([{"role": "user", "content": "x"}])
    assert len(server.chat_requests) == 1


# -- the fake server itself ---------------------------------------------------------------------


def test_fake_server_speaks_the_protocol(server):
    import urllib.request

    with urllib.request.urlopen(server.base_url + "/models", timeout=5) as r:
        models = json.load(r)
    assert models["object"] == "list" and models["data"][0]["id"] == "fake-model"
    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(server.base_url + "/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        out = json.load(r)
    assert out["object"] == "chat.completion" and out["id"] and isinstance(out["created"], int)
    assert out["model"] == "fake-model"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "echo: hi | images=0"}
    assert out["choices"][0]["finish_reason"] == "stop"
    assert set(out["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    # and the official client parses it
    client = openai.OpenAI(api_key="x", base_url=server.base_url, max_retries=0)
    assert [m.id for m in client.models.list()] == ["fake-model"]
