"""The endpoint target against a hostile OpenAI-compatible server (attnprompt.testing_server on
127.0.0.1): bodies that are not JSON, bodies that trickle in, null / list / missing content, huge
replies and hangs. Each is retried or refused with one clear error, and never cached as an answer."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from tests.conftest import import_or_fail_in_ci

import_or_fail_in_ci("openai", "the openai client (pip install 'openai>=1.0')", "CI installs the test extra")

from attnprompt import AttnPromptError  # noqa: E402
from attnprompt.targets import AnswerCache, OpenAIEndpointTarget  # noqa: E402
from attnprompt.testing_server import Failure, FakeChatServer  # noqa: E402

IMAGE = Image.new("RGB", (8, 8), (200, 30, 30))


def _target(server: FakeChatServer, tmp_path, **kw) -> OpenAIEndpointTarget:
    options = dict(max_retries=2, backoff=0.001, timeout=5.0, cache=AnswerCache(tmp_path / "cache"))
    options.update(kw)
    return OpenAIEndpointTarget("fake-model", base_url=server.base_url, **options)


def _ok(text: str) -> bool:
    return text.startswith("echo: what? | images=1")


@pytest.mark.parametrize("failure", [Failure.garbage(64), Failure.garbage(300_000)], ids=["small", "large"])
def test_non_json_200_is_retried(tmp_path, failure):
    with FakeChatServer(failures=[failure]) as server:
        [answer] = _target(server, tmp_path).answer([IMAGE], ["what?"])
        assert _ok(answer) and len(server.chat_requests) == 2


def test_non_json_every_time_is_one_clear_error_and_nothing_cached(tmp_path):
    with FakeChatServer(failures=[Failure.garbage(100)] * 3) as server:
        target = _target(server, tmp_path)
        with pytest.raises(AttnPromptError, match=r"failed after 3 attempts.*not JSON") as info:
            target.answer([IMAGE], ["what?"])
        assert "\n" not in str(info.value)
    assert len(AnswerCache(tmp_path / "cache")) == 0


@pytest.mark.parametrize("failure", [Failure.null_content(), Failure.list_content(), Failure.missing_message()],
                         ids=["null", "list", "missing"])
def test_replies_without_text_are_retried_never_cached(tmp_path, failure):
    with FakeChatServer(failures=[failure]) as server:
        [answer] = _target(server, tmp_path).answer([IMAGE], ["what?"])
        assert _ok(answer) and len(server.chat_requests) == 2
    with FakeChatServer(failures=[failure] * 3) as server:
        with pytest.raises(AttnPromptError, match="content is null|content is list|has no message"):
            _target(server, tmp_path / "b").answer([IMAGE], ["what?"])
    assert list(AnswerCache(tmp_path / "b" / "cache")._entries.values()) == []
    # the first cache holds the real answer only
    assert all(_ok(a) for a in AnswerCache(tmp_path / "cache")._entries.values())


def test_trickling_body_is_cut_at_the_attempt_deadline(tmp_path):
    # one byte every 0.2 s of a ~300-byte reply would take a minute; each attempt may take 1 s
    with FakeChatServer(failures=[Failure.trickle(0.2)] * 2) as server:
        target = _target(server, tmp_path, timeout=1.0, max_retries=1)
        start = time.monotonic()
        with pytest.raises(AttnPromptError, match="timed out after 1 s"):
            target.answer([IMAGE], ["what?"])
        assert time.monotonic() - start < 4.0
        assert len(server.chat_requests) == 2


def test_hang_then_answer(tmp_path):
    with FakeChatServer(failures=[Failure.hang(30)]) as server:
        start = time.monotonic()
        [answer] = _target(server, tmp_path, timeout=0.5).answer([IMAGE], ["what?"])
        assert _ok(answer) and time.monotonic() - start < 5.0


def test_huge_reply_is_refused_at_once_and_not_cached(tmp_path):
    with FakeChatServer(failures=[Failure.huge(5 * 1024 * 1024)]) as server:
        target = _target(server, tmp_path)
        with pytest.raises(AttnPromptError, match="larger than max_reply_bytes=4194304"):
            target.answer([IMAGE], ["what?"])
        assert len(server.chat_requests) == 1  # the same request would get the same reply
    assert len(AnswerCache(tmp_path / "cache")) == 0


def test_reply_cap_is_configurable(tmp_path):
    with FakeChatServer(failures=[Failure.huge(20_000)]) as server:
        with pytest.raises(AttnPromptError, match="max_reply_bytes=8192"):
            _target(server, tmp_path, max_reply_bytes=8192).answer([IMAGE], ["what?"])
        [answer] = _target(server, tmp_path / "b").answer([IMAGE], ["what?"])  # default cap: a normal reply
        assert _ok(answer)


def test_changed_endpoint_asks_the_new_server(tmp_path):
    """Defect 1: the answer cache is keyed by the endpoint too, not only the model name."""
    with FakeChatServer() as one, FakeChatServer(responder=lambda body: "other server") as two:
        assert _ok(_target(one, tmp_path).answer([IMAGE], ["what?"])[0])
        assert _target(two, tmp_path).answer([IMAGE], ["what?"]) == ["other server"]
        assert len(two.chat_requests) == 1
        assert _ok(_target(one, tmp_path).answer([IMAGE], ["what?"])[0]) and len(one.chat_requests) == 1


def test_server_close_wakes_stalled_handlers():
    server = FakeChatServer(failures=[Failure.hang(100)]).start()
    target = OpenAIEndpointTarget("fake-model", base_url=server.base_url, max_retries=0, timeout=0.5)
    with pytest.raises(AttnPromptError, match="timed out"):
        target.answer([IMAGE], ["what?"])
    start = time.monotonic()
    server.close()
    assert time.monotonic() - start < 5.0
