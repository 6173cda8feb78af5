"""Shapes world: scenes are deterministic, masks are exact, queries are unambiguous and correct."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from attnprompt.shapes import COLORS, SHAPES, Query, Scene, make_dataset, make_scene
from attnprompt.shapes import render, world

N_SCENES = 200


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return list(make_dataset(N_SCENES, 7, aspect="mixed"))


@pytest.fixture(scope="module")
def queries(scenes: list[Scene]) -> list[tuple[Scene, Query]]:
    return [(s, q) for s in scenes for q in s.queries()]


def same_scene(a: Scene, b: Scene) -> bool:
    return (
        np.array_equal(np.asarray(a.image), np.asarray(b.image))
        and np.array_equal(a.masks, b.masks)
        and a.objects == b.objects
        and a.queries() == b.queries()
        and a.caption() == b.caption()
    )


def test_same_seed_same_scene_and_different_seed_different_scene() -> None:
    a, b, c = make_scene(11), make_scene(11), make_scene(12)
    assert same_scene(a, b)
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    assert a.objects != c.objects
    # a dataset is reproducible, and each of its scenes can be rebuilt alone from its seed and size
    d1 = list(make_dataset(6, 3, aspect="mixed"))
    d2 = list(make_dataset(6, 3, aspect="mixed"))
    assert all(same_scene(x, y) for x, y in zip(d1, d2))
    assert all(same_scene(x, make_scene(x.seed, size=x.size)) for x in d1)
    assert len({x.seed for x in d1}) == 6
    assert not same_scene(d1[0], next(make_dataset(1, 4, aspect="mixed")))
    # an explicit rng drives the random parts of queries; the default is fixed by the scene seed
    assert a.queries(5) == a.queries(np.random.default_rng(5))


def test_masks_are_disjoint_nonempty_inside_and_mostly_visible(scenes: list[Scene]) -> None:
    for s in scenes:
        w, h = s.size
        n = len(s.objects)
        assert 2 <= n <= 5
        assert s.masks.dtype == bool and s.masks.shape == (n, h, w) == s.full_masks.shape
        assert s.masks.sum(0).max() <= 1, "visible masks overlap"
        assert not (s.masks & ~s.full_masks).any(), "visible pixels outside the object's footprint"
        for k, (o, m, f) in enumerate(zip(s.objects, s.masks, s.full_masks)):
            assert m.any()
            assert m.sum() >= 0.5 * f.sum(), (s.seed, k)
            assert o.size >= 0.1 * min(w, h)
            # the mask lies inside the object's circumscribed circle, which lies inside the image
            ys, xs = np.nonzero(f)
            r = o.size / 2 + 1.0
            assert np.all(np.hypot(xs + 0.5 - o.center[0], ys + 0.5 - o.center[1]) <= r + 0.75)
            assert r - 1 <= o.center[0] <= w - r + 1 and r - 1 <= o.center[1] <= h - r + 1
            # a later object hides an earlier one: pixels of k lost to occlusion belong to later objects
            hidden = f & ~m
            assert not (hidden & s.masks[: k + 1].any(0)).any()
            assert np.array_equal(hidden, f & s.masks[k + 1 :].any(0))
    # occlusion actually happens, otherwise the occlusion handling is untested
    assert sum(int((s.masks != s.full_masks).any()) for s in scenes) > N_SCENES // 10


def test_masks_match_rendered_pixels_exactly_without_noise() -> None:
    for seed in range(30):
        s = make_scene(seed, size=(96, 64), noise=0.0)
        img = np.asarray(s.image).astype(int)
        for o, m in zip(s.objects, s.masks):
            assert np.all(img[m] == o.rgb), (seed, o)
        # background and clutter are muted: outside the masks nothing looks like an object colour
        outside = img[~s.masks.any(0)]
        assert (outside.max(1) - outside.min(1)).max() <= render.MUTED_MAX_SPREAD
    assert min(max(c) - min(c) for c in COLORS.values()) - 2 * render.COLOR_JITTER > render.MUTED_MAX_SPREAD + 40


def test_object_pixels_have_the_object_colour_under_noise(scenes: list[Scene]) -> None:
    for s in scenes[:60]:
        img = np.asarray(s.image).astype(float)
        for o, m in zip(s.objects, s.masks):
            assert np.abs(np.subtract(o.rgb, COLORS[o.color])).max() <= render.COLOR_JITTER
            mean = img[m].mean(0)
            # sigma 6 noise averaged over >= ~40 pixels; clipping is rare as channels stay in [15, 245]
            assert np.abs(mean - o.rgb).max() < 3.5, (s.seed, o, mean)
            assert np.abs(mean - COLORS[o.color]).max() < render.COLOR_JITTER + 3.5


def test_aspect_ratios() -> None:
    assert next(make_dataset(1, 0, aspect="square")).size == (64, 64)
    assert next(make_dataset(1, 0, aspect="wide")).size == (128, 64)
    assert next(make_dataset(1, 0, aspect="tall")).size == (64, 128)
    assert next(make_dataset(1, 0, aspect="wide", base=48)).size == (96, 48)
    mixed = Counter(s.size for s in make_dataset(24, 0, aspect="mixed", base=32))
    assert set(mixed) == {(32, 32), (64, 32), (32, 64)}
    with pytest.raises(ValueError, match="aspect"):
        next(make_dataset(1, 0, aspect="portrait"))
    with pytest.raises(ValueError):
        make_scene(0, n_objects=(3, 2))


def _position(mask: np.ndarray) -> str:
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    row = ["top", "", "bottom"][min(2, int(3 * (ys.mean() + 0.5) / h))]
    col = ["left", "", "right"][min(2, int(3 * (xs.mean() + 0.5) / w))]
    return f"{row} {col}".strip() or "center"


def _shares_one(a, b) -> bool:
    return (a.color == b.color) != (a.shape == b.shape)


def test_every_query_is_unambiguous_and_correct(queries: list[tuple[Scene, Query]]) -> None:
    pattern = {
        "color+shape": re.compile(r"where is the (\w+) (\w+)\?"),
        "color": re.compile(r"what shape is the (\w+) object\?"),
        "shape": re.compile(r"what color is the (\w+)\?"),
        "presence": re.compile(r"is there an? (\w+) (\w+)\?"),
    }
    for s, q in queries:
        objs = s.objects
        match = pattern[q.kind].fullmatch(q.text)
        assert match, q
        if q.kind == "color+shape":
            c, sh = match.groups()
            hits = [i for i, o in enumerate(objs) if (o.color, o.shape) == (c, sh)]
            assert hits == [q.target] and q.answer == _position(s.masks[q.target])
        elif q.kind == "color":
            hits = [i for i, o in enumerate(objs) if o.color == match.group(1)]
            assert hits == [q.target] and q.answer == objs[q.target].shape
        elif q.kind == "shape":
            hits = [i for i, o in enumerate(objs) if o.shape == match.group(1)]
            assert hits == [q.target] and q.answer == objs[q.target].color
        else:
            c, sh = match.groups()
            hits = [i for i, o in enumerate(objs) if (o.color, o.shape) == (c, sh)]
            assert q.answer == ("yes" if hits else "no")
            assert q.target == (hits[0] if hits else None)
            assert c in COLORS and sh in SHAPES
            if q.target is None:
                assert q.hard == any(o.color == c or o.shape == sh for o in objs)
                continue
        assert q.hard == any(_shares_one(o, objs[q.target]) for j, o in enumerate(objs) if j != q.target)


def test_queries_cover_every_unambiguous_reference(scenes: list[Scene]) -> None:
    for s in scenes[:50]:
        got = {(q.kind, q.target) for q in s.queries() if q.kind != "presence"}
        colors = Counter(o.color for o in s.objects)
        shapes = Counter(o.shape for o in s.objects)
        want = {("color+shape", i) for i in range(len(s.objects))}
        want |= {("color", i) for i, o in enumerate(s.objects) if colors[o.color] == 1}
        want |= {("shape", i) for i, o in enumerate(s.objects) if shapes[o.shape] == 1}
        assert got == want
        assert len({(o.color, o.shape) for o in s.objects}) == len(s.objects)


def test_presence_answers_are_balanced(queries: list[tuple[Scene, Query]]) -> None:
    presence = [q for _, q in queries if q.kind == "presence"]
    answers = Counter(q.answer for q in presence)
    assert answers["yes"] == answers["no"] == N_SCENES
    no = [q for q in presence if q.answer == "no"]
    assert 0.2 < sum(q.hard for q in no) / len(no) < 0.9  # both binding-style and easy negatives


def test_hard_cases_occur_in_a_reasonable_fraction(queries: list[tuple[Scene, Query]]) -> None:
    for kind in ("color+shape", "color", "shape"):
        qs = [q for _, q in queries if q.kind == kind]
        assert len(qs) > 100
        frac = sum(q.hard for q in qs) / len(qs)
        assert 0.15 < frac < 0.9, (kind, frac)
    # both flavours of distractor: same colour other shape (a red circle and a red square) and vice versa
    same_color = same_shape = 0
    for s, q in queries:
        if q.kind == "color+shape" and q.hard:
            t = s.objects[q.target]
            others = [o for j, o in enumerate(s.objects) if j != q.target]
            same_color += any(o.color == t.color and o.shape != t.shape for o in others)
            same_shape += any(o.shape == t.shape and o.color != t.color for o in others)
    assert same_color > 50 and same_shape > 50


def test_vocabulary_and_variety_over_a_dataset(scenes: list[Scene]) -> None:
    objs = [o for s in scenes for o in s.objects]
    assert set(SHAPES) >= {"circle", "square", "triangle", "cross", "star"} and len(COLORS) >= 6
    assert {o.shape for o in objs} == set(SHAPES)
    assert len({o.color for o in objs}) >= 6 and {o.color for o in objs} == set(COLORS)
    assert {len(s.objects) for s in scenes} == {2, 3, 4, 5}
    sizes = np.array([o.size / min(s.size) for s in scenes for o in s.objects])
    assert sizes.min() >= 0.1 and sizes.max() - sizes.min() > 0.15
    angles = np.array([o.angle for o in objs if o.shape != "circle"])
    assert angles.std() > 60
    assert len({o.rgb for o in objs}) > 0.8 * len(objs)  # colour jitter
    # backgrounds differ from scene to scene
    corners = {tuple(np.asarray(s.image)[0, 0] // 16) for s in scenes}
    assert len(corners) > 20


def test_caption_names_every_object() -> None:
    s = make_scene(3, n_objects=(3, 3))
    names = [f"{o.color} {o.shape}" for o in s.objects]
    cap = s.caption()
    assert cap.count(",") == 1 and cap.count(" and ") == 1
    assert all(n in cap for n in names) and cap.startswith("a")
    shuffled = {s.caption(np.random.default_rng(k)) for k in range(20)}
    assert len(shuffled) > 1
    assert all(sorted(re.split(r", | and ", c)) == sorted(re.split(r", | and ", cap)) for c in shuffled)
    two = make_scene(0, n_objects=(2, 2)).caption()
    assert "," not in two and " and " in two


def test_dev_tool_writes_examples(tmp_path) -> None:
    assert world.main(["--out", str(tmp_path), "--n", "2", "--aspect", "wide", "--scale", "2"]) == 0
    records = json.loads((tmp_path / "scenes.json").read_text())
    assert len(records) == 2 and records[0]["size"] == [128, 64]
    assert (tmp_path / "scene_001.png").is_file() and (tmp_path / "preview.png").is_file()
    assert {q["kind"] for q in records[0]["queries"]} >= {"color+shape", "presence"}
