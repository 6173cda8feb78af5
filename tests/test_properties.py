"""Property-based tests (Hypothesis) of the one contract of every entry point: a result, or one
``error:`` line and a non-zero exit (the Python API: one AttnPromptError), never a traceback.

Generated: manifest rows (any JSON values, missing keys, raw bytes, lone surrogates), queries,
item ids and option values, through the CLI (in process) and the Python API. The tiny random
CLIP is loaded once and handed to every Prompter, so an example costs milliseconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import pytest

from tests.conftest import import_or_fail_in_ci

import_or_fail_in_ci("hypothesis", "hypothesis (pip install 'hypothesis>=6.80')", "CI installs the test extra")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from attnprompt import AttnPromptError, Prompter  # noqa: E402
from attnprompt.cli import main  # noqa: E402
from attnprompt.io import append_jsonl, read_jsonl_tolerant, read_manifest, safe_stem  # noqa: E402

FAST = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# text with everything a hostile file can hold: controls, non-BMP, lone surrogates
NASTY = ["\ud800", "what \udc80 is it", "\x00", "\u202e\u200b", "\U0001f642" * 9, "a\r\nb", "\\u0000", "CON",
         "../../etc/passwd", "x" * 300]
TEXT = st.one_of(st.sampled_from(NASTY), st.text(st.characters(codec=None, exclude_categories=()), max_size=24))
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                           max_leaves=6)


@pytest.fixture(scope="module")
def world(tiny_clip_dir):
    """A folder with a good image, a broken one, and the tiny CLIP loaded once."""
    root = Path(tempfile.mkdtemp(prefix="attnprompt-props-"))
    Image.new("RGB", (40, 30), (10, 200, 30)).save(root / "good.png")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "folder").mkdir()
    auxiliary = Prompter(str(tiny_clip_dir), device="cpu").auxiliary
    yield root, auxiliary, str(tiny_clip_dir)
    shutil.rmtree(root, ignore_errors=True)


def run_cli(argv: list[str], auxiliary) -> tuple[int, str, str]:
    """``main(argv)`` in process with the preloaded auxiliary; any exception but SystemExit escapes."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch("attnprompt.prompter.load_auxiliary", lambda *a, **k: auxiliary), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own "usage ... error: ..." for a malformed option
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


def assert_contract(rc: int, err: str) -> None:
    assert "Traceback" not in err
    if rc not in (0, 1):  # 1: some rows failed, recorded in the output manifest
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2 and lines and "error: " in lines[-1], err


ROW = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(TEXT, st.integers(), JSON_VALUES),
        "image": st.one_of(st.sampled_from(["good.png", "broken.png", "missing.png", "folder", "", "../good.png"]),
                           TEXT, JSON_VALUES),
        "question": st.one_of(st.sampled_from(["what is it?", "", "   "]), TEXT, JSON_VALUES),
        "extra": JSON_VALUES,
    },
)
LINE = st.one_of(ROW.map(lambda r: json.dumps(r).encode()), st.binary(max_size=40))


@FAST
@given(lines=st.lists(LINE, max_size=5))
def test_cli_annotate_manifest_contract(world, lines):
    root, auxiliary, model = world
    folder = Path(tempfile.mkdtemp(dir=root))
    (folder / "good.png").write_bytes((root / "good.png").read_bytes())
    (folder / "m.jsonl").write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    rc, out, err = run_cli(["annotate", "--manifest", str(folder / "m.jsonl"), "--out-dir", str(folder / "o"),
                            "--model", model, "--quiet", "--workers", "1"], auxiliary)
    assert_contract(rc, err)
    if rc in (0, 1):  # every usable row has one record, and the records read back
        records = read_jsonl_tolerant(folder / "o" / "manifest.jsonl") if (folder / "o" / "manifest.jsonl").exists() else []
        assert rc == (0 if all(r["status"] == "ok" for r in records) else 1)
        for r in records:
            if r["status"] == "ok":
                assert (folder / "o" / r["output"]).is_file()
    shutil.rmtree(folder, ignore_errors=True)


@FAST
@given(query=TEXT)
def test_cli_single_image_query_contract(world, query):
    root, auxiliary, model = world
    out = Path(tempfile.mkdtemp(dir=root)) / "o.png"
    rc, _, err = run_cli(["annotate", str(root / "good.png"), "-q", query, "--model", model, "-o", str(out)], auxiliary)
    assert_contract(rc, err)
    assert (rc == 0) == out.is_file()


OPTION_VALUES = st.one_of(st.integers(-10**12, 10**12).map(str), st.sampled_from(
    ["0", "-1", "1", "3", "22", "-4..-1", "0..1000000000", "5..2", "1,2", "nan", "inf", "1e400", "", "x", "..", "-"]),
    TEXT)
OPTIONS = st.sampled_from(["--batch-size", "--layer", "--comp-layer", "--enhance", "--kernel", "--gray",
                           "--interpolation", "--geometry", "--preset", "--format", "--workers", "--dtype", "--device"])


@FAST
@given(pairs=st.lists(st.tuples(OPTIONS, OPTION_VALUES), min_size=1, max_size=3))
def test_cli_option_values_contract(world, pairs):
    root, auxiliary, model = world
    out = Path(tempfile.mkdtemp(dir=root)) / "o.png"
    argv = ["annotate", str(root / "good.png"), "-q", "what is it?", "--model", model, "-o", str(out)]
    for option, value in pairs:
        argv += [f"{option}={value}"]
    rc, _, err = run_cli(argv, auxiliary)
    assert_contract(rc, err)


EVAL_OPTIONS = st.sampled_from(["--batch-size", "--max-new-tokens", "--limit", "--concurrency", "--conditions",
                                "--benchmark", "--preset"])


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(st.tuples(EVAL_OPTIONS, OPTION_VALUES), min_size=1, max_size=2))
def test_cli_eval_option_values_contract(pairs):
    # no data folder and no server: every example ends in an error line (never a traceback)
    with tempfile.TemporaryDirectory() as out:
        argv = ["eval", "--benchmark", "pope", "--data", "/nonexistent/attnprompt", "--target", "m",
                "--endpoint", "http://127.0.0.1:9/v1", "--out", out]
        for option, value in pairs:
            argv += [f"{option}={value}"]
        rc, _, err = run_cli(argv, None)
    assert_contract(rc, err)
    assert rc != 0


@FAST
@given(queries=st.lists(st.one_of(TEXT, JSON_VALUES), min_size=1, max_size=3), data=st.data())
def test_python_api_contract(world, queries, data):
    root, auxiliary, _ = world
    prompter = Prompter(auxiliary=auxiliary)
    images = data.draw(st.lists(st.sampled_from([str(root / "good.png"), str(root / "broken.png"),
                                                 str(root / "missing.png"), str(root)]),
                                min_size=len(queries), max_size=len(queries)))
    try:
        results = prompter.annotate(images, queries)
    except AttnPromptError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(results) == len(queries)


@FAST
@given(ids=st.lists(st.one_of(TEXT, st.integers().map(str)), min_size=1, max_size=6, unique=True))
def test_ids_map_to_safe_distinct_names_and_round_trip(ids):
    stems = [safe_stem(i) for i in ids]
    assert len(set(s.lower() for s in stems)) == len(ids)
    for stem in stems:
        assert stem and "/" not in stem and "\\" not in stem and not stem.startswith(".") and len(stem) <= 80
        stem.encode("ascii")
    folder = Path(tempfile.mkdtemp())
    for i in ids:
        append_jsonl(folder / "r.jsonl", {"id": i})
    assert [r["id"] for r in read_jsonl_tolerant(folder / "r.jsonl")] == ids
    shutil.rmtree(folder, ignore_errors=True)


@FAST
@given(data=st.binary(max_size=200))
def test_manifest_reader_never_raises_on_bytes(data):
    folder = Path(tempfile.mkdtemp())
    for name in ("m.jsonl", "m.csv"):
        (folder / name).write_bytes(data)
        try:
            rows = read_manifest(folder / name)
        except AttnPromptError as exc:
            assert "\n" not in str(exc)
        else:
            for row in rows:
                assert row.error is None or "\n" not in row.error
                assert row.error is not None or (row.id and row.question.strip())
    shutil.rmtree(folder, ignore_errors=True)
