"""The web app: its knob <-> config mapping, every endpoint through gradio_client, and the page in
a real browser (Debian's chromium driven by Playwright; screenshots are kept in the test's tmp
folder)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, import_or_fail_in_ci, skip_or_fail_in_ci

import_or_fail_in_ci("gradio", "gradio", "CI installs the app extra")
gradio_client = import_or_fail_in_ci("gradio_client", "gradio_client", "CI installs the app extra")

from attnprompt import Prompter  # noqa: E402
from attnprompt.app import build_app, config_from_values, knob_names, launch, parse_auth  # noqa: E402
from attnprompt.config import LVLM_PRESETS, PRESETS, MaskConfig  # noqa: E402
from attnprompt.errors import AttnPromptError  # noqa: E402
from attnprompt.shapes.world import make_scene  # noqa: E402

SCENE = REPO / "examples" / "shapes_scene.png"
QUESTION = "where is the orange square?"


def _display_values(cfg: MaskConfig) -> list:
    from attnprompt.app import _display

    return [_display(n, getattr(cfg, n)) for n in knob_names()]


def test_every_maskconfig_field_is_a_knob() -> None:
    assert knob_names() == [f.name for f in dataclasses.fields(MaskConfig)]


@pytest.mark.parametrize("kind,table", [("clip", PRESETS), ("lvlm", LVLM_PRESETS)])
def test_controls_round_trip_every_preset(kind: str, table: dict) -> None:
    for name, cfg in table.items():
        values = dict(zip(knob_names(), _display_values(cfg)))
        assert config_from_values(kind, name, values) == cfg
        # what the controls show wins over the preset they started from
        values["gray"] = 77
        values["layers"] = "-4..-1" if kind == "clip" else "1"
        changed = config_from_values(kind, name, values)
        assert changed.gray == 77 and changed.layers == ((-4, -3, -2, -1) if kind == "clip" else (1,))


def test_bad_control_values_are_one_line_errors() -> None:
    values = dict(zip(knob_names(), _display_values(PRESETS["default"])))
    with pytest.raises(AttnPromptError, match="layer"):
        config_from_values("clip", "default", {**values, "layers": "two"})
    with pytest.raises(AttnPromptError, match="comp layer"):
        config_from_values("clip", "default", {**values, "comp_layer": "x"})
    with pytest.raises(AttnPromptError, match="kernel"):
        config_from_values("clip", "default", {**values, "kernel": 4})


def test_parse_auth() -> None:
    assert parse_auth("ann:pw1,bob:pw2") == [("ann", "pw1"), ("bob", "pw2")]
    assert parse_auth(None) is None
    with pytest.raises(AttnPromptError, match="USER:PASSWORD"):
        parse_auth("nopassword")


# -- the served app --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    examples = tmp_path_factory.mktemp("examples")
    shutil.copy(SCENE, examples / SCENE.name)
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))  # the shapes examples go here
    page = build_app(device="cpu", examples=examples)
    _, url, _ = launch(page, host="127.0.0.1", port=None, block=False)
    yield url
    page.close()
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(scope="module")
def client(served: str):
    return gradio_client.Client(served, verbose=False)


def _knobs(cfg: MaskConfig, **changes) -> list:
    values = dict(zip(knob_names(), _display_values(cfg)))
    values.update(changes)
    return list(values.values())


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_endpoints_are_the_documented_ones(client) -> None:
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(named) == {"/annotate", "/ask_target", "/preset_settings"}


def test_annotate_endpoint_clip_gives_the_library_result(client) -> None:
    official = PRESETS["official"]
    original, heatmap, prompt, answer, settings = client.predict(
        gradio_client.handle_file(str(SCENE)), QUESTION, "clip", "shapes-clip", "official", *_knobs(official, gray=60),
        api_name="/annotate")
    [expected] = Prompter("shapes-clip", device="cpu").annotate(str(SCENE), QUESTION, **official.replace(gray=60).to_dict())
    assert np.array_equal(_pixels(original), np.asarray(expected.original))
    assert np.array_equal(_pixels(prompt), np.asarray(expected.image))  # PNG: no loss on the way
    # the heatmap panel carries a colour bar beside the map: wider than the image
    assert Image.open(heatmap).width > Image.open(original).width
    assert answer == ""
    assert "gray 60" in settings and "geometry stretch" in settings and "reduction" not in settings


def test_annotate_endpoint_lvlm_answer_and_highlight(client) -> None:
    prompter = Prompter("shapes-llava", device="cpu")
    cfg = prompter.config  # "default" is the model's own preset (its attnprompt_preset.json)
    scene = make_scene(11, size=(64, 64)).image
    path = Path(os.environ["XDG_CACHE_HOME"]) / "scene11.png"
    scene.save(path)
    question = "what color is the square?"
    _, _, prompt, answer, _ = client.predict(gradio_client.handle_file(str(path)), question, "lvlm", "shapes-llava",
                                             "default", *_knobs(cfg), api_name="/annotate")
    [expected] = prompter.annotate(scene, question)
    assert answer == expected.answer and answer.strip()
    assert np.array_equal(_pixels(prompt), np.asarray(expected.image))
    # selecting a word of the answer redraws the map from those tokens only (the page sends the
    # selection as the highlight knob)
    word = answer.split()[0]
    _, _, prompt_hl, _, settings = client.predict(
        gradio_client.handle_file(str(path)), question, "lvlm", "shapes-llava", "default", *_knobs(cfg, highlight=word),
        api_name="/annotate")
    [expected_hl] = prompter.annotate(scene, question, highlight=word)
    assert np.array_equal(_pixels(prompt_hl), np.asarray(expected_hl.image))
    assert f"highlight {word}" in settings


def test_preset_settings_endpoint(client) -> None:
    values = client.predict("clip", "official", "shapes-clip", api_name="/preset_settings")
    assert list(values) == _display_values(PRESETS["official"])
    values = client.predict("lvlm", "paper", "shapes-llava", api_name="/preset_settings")
    assert list(values) == _display_values(LVLM_PRESETS["paper"])


def test_errors_are_one_message(client) -> None:
    knobs = _knobs(PRESETS["default"])
    with pytest.raises(Exception, match="type a question"):
        client.predict(gradio_client.handle_file(str(SCENE)), "  ", "clip", "shapes-clip", "default", *knobs,
                       api_name="/annotate")
    with pytest.raises(Exception, match="does not exist"):
        client.predict(gradio_client.handle_file(str(SCENE)), QUESTION, "clip", "./no/such/model", "default", *knobs,
                       api_name="/annotate")
    with pytest.raises(Exception, match="kernel size"):
        client.predict(gradio_client.handle_file(str(SCENE)), QUESTION, "clip", "shapes-clip", "default",
                       *_knobs(PRESETS["default"], kernel=2), api_name="/annotate")


def test_ask_target_local_model(client) -> None:
    from attnprompt.targets.hf import HFTarget

    scene = make_scene(23, size=(64, 64)).image
    prompted = scene.point(lambda v: v // 2)
    a, b = (Path(os.environ["XDG_CACHE_HOME"]) / n for n in ("t_orig.png", "t_prompt.png"))
    scene.save(a)
    prompted.save(b)
    question = "what shape is red?"
    on_original, on_prompt = client.predict(
        gradio_client.handle_file(str(a)), gradio_client.handle_file(str(b)), question, "local model",
        "shapes-llava", "", "OPENAI_API_KEY", 8, api_name="/ask_target")
    expected = HFTarget("shapes-llava", device="cpu", max_new_tokens=8).answer([scene, prompted], [question] * 2)
    assert [on_original, on_prompt] == expected


def test_ask_target_endpoint_uses_the_key_from_the_environment(client, monkeypatch) -> None:
    pytest.importorskip("openai")
    from attnprompt.testing_server import FakeChatServer, decode_image_url, image_urls

    monkeypatch.setenv("APP_TEST_KEY", "sekret")
    scene = make_scene(5, size=(64, 64)).image
    prompted = scene.point(lambda v: v // 2)
    a, b = (Path(os.environ["XDG_CACHE_HOME"]) / n for n in ("e_orig.png", "e_prompt.png"))
    scene.save(a)
    prompted.save(b)
    with FakeChatServer(api_key="sekret") as server:
        on_original, on_prompt = client.predict(
            gradio_client.handle_file(str(a)), gradio_client.handle_file(str(b)), "how many shapes?",
            "OpenAI-compatible endpoint", "fake-model", server.base_url, "APP_TEST_KEY", 16, api_name="/ask_target")
        sent = [np.asarray(decode_image_url(image_urls(r.json)[0]).convert("RGB")) for r in server.requests]
    assert len(sent) == 2  # the key was accepted (the server refuses requests without it)
    assert {im.tobytes() for im in sent} == {np.asarray(scene).tobytes(), np.asarray(prompted).tobytes()}
    assert "how many shapes?" in on_original and "how many shapes?" in on_prompt


# -- the real page in a real browser ---------------------------------------------------------------

def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    skip_or_fail_in_ci("a chromium browser", "scripts/setup.sh test installs Debian's chromium")
    raise AssertionError  # unreachable


def test_browser_upload_ask_run_and_read_back(served: str, tmp_path: Path) -> None:
    sync_api = import_or_fail_in_ci("playwright.sync_api", "playwright", "CI installs the test extra")
    import urllib.request

    executable = _chromium()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(served, wait_until="domcontentloaded")
            page.locator("#input-image input[type=file]").set_input_files(str(SCENE))
            page.locator("#question textarea").fill(QUESTION)
            page.locator("#run").click()
            for elem in ("original", "heatmap", "prompt"):
                page.locator(f"#{elem} img").wait_for(timeout=90_000)
            page.locator("#settings").get_by_text("preset default").wait_for(timeout=30_000)
            page.locator("#ask").click()
            answer_prompt = page.locator("#answer-prompt textarea")
            sync_api.expect(answer_prompt).not_to_have_value("", timeout=90_000)
            sync_api.expect(page.locator("#answer-original textarea")).not_to_have_value("", timeout=30_000)
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            sources = {e: page.locator(f"#{e} img").get_attribute("src") for e in ("original", "heatmap", "prompt")}
            answers = (page.locator("#answer-original textarea").input_value(), answer_prompt.input_value())
            # an error is shown in the page as a message, not a traceback
            page.locator("#question textarea").fill("")
            page.locator("#run").click()
            toast = page.get_by_text("type a question about the image")
            toast.first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "app-error.png"))
            assert "Traceback" not in page.content()
        finally:
            browser.close()
    pictures = {}
    for name, src in sources.items():
        with urllib.request.urlopen(src, timeout=30) as resp:
            pictures[name] = np.asarray(Image.open(resp).convert("RGB"))
    [expected] = Prompter("shapes-clip", device="cpu").annotate(str(SCENE), QUESTION)
    assert np.array_equal(pictures["original"], np.asarray(expected.original))
    assert np.array_equal(pictures["prompt"], np.asarray(expected.image))
    assert pictures["heatmap"].shape[1] > pictures["original"].shape[1]  # map plus colour bar
    from attnprompt.targets.hf import HFTarget

    want = HFTarget("shapes-llava", device="cpu", max_new_tokens=32).answer(
        [expected.original, expected.image], [QUESTION] * 2)
    assert answers == tuple(want)
    print(f"screenshots: {tmp_path}")


def test_knob_controls_follow_the_registries(client) -> None:
    from attnprompt.config import INTERPOLATIONS
    from attnprompt.styles import STYLES

    components = {c["props"].get("elem_id"): c["props"] for c in client.config["components"]}
    for name in knob_names():
        assert f"knob-{name}" in components, name
    choices = [c[0] if isinstance(c, (list, tuple)) else c for c in components["knob-style"]["choices"]]
    assert choices == list(STYLES)
    interp = [c[0] if isinstance(c, (list, tuple)) else c for c in components["knob-interpolation"]["choices"]]
    assert interp == list(INTERPOLATIONS)


def test_annotate_endpoint_with_a_style(client) -> None:
    cfg = PRESETS["default"].replace(style="soft", style_params={"floor": 0.4})
    _, _, prompt, _, settings = client.predict(
        gradio_client.handle_file(str(SCENE)), QUESTION, "clip", "shapes-clip", "default", *_knobs(cfg),
        api_name="/annotate")
    [expected] = Prompter("shapes-clip", device="cpu").annotate(str(SCENE), QUESTION, **cfg.to_dict())
    assert np.array_equal(_pixels(prompt), np.asarray(expected.image))
    assert "style soft" in settings


def test_browser_selecting_the_lvlm_answer_redraws_the_map(served: str, tmp_path: Path) -> None:
    sync_api = import_or_fail_in_ci("playwright.sync_api", "playwright", "CI installs the test extra")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(served, wait_until="domcontentloaded")
            page.get_by_label("lvlm").check()
            sync_api.expect(page.locator("#model input")).to_have_value("shapes-llava", timeout=60_000)
            page.locator("#input-image input[type=file]").set_input_files(str(SCENE))
            page.locator("#question textarea").fill("what color is the star?")
            page.locator("#run").click()
            answer = page.locator("#aux-answer textarea")
            sync_api.expect(answer).not_to_have_value("", timeout=90_000)
            settings = page.locator("#settings")
            sync_api.expect(settings).to_contain_text("auxiliary shapes-llava", timeout=30_000)
            assert "highlight" not in settings.inner_text()
            word = answer.input_value().split()[0]
            # what a person's mouse selection does: select the first word of the answer
            answer.evaluate("e => { e.focus(); e.setSelectionRange(0, e.value.split(' ')[0].length);"
                            " e.dispatchEvent(new Event('select', {bubbles: true})); }")
            sync_api.expect(settings).to_contain_text(f"highlight {word}", timeout=90_000)
            page.screenshot(path=str(tmp_path / "app-lvlm-highlight.png"), full_page=True)
        finally:
            browser.close()
