"""Quality benchmarks on the shapes world: where the truth is known.

- :func:`localization`: does a map point at the object the query names? Pointing, mass ratio
  and rank-1 (:mod:`attnprompt.shapes.metrics`) for ``psi_cls`` per layer, of the last k layers
  and of all layers, ``psi_comp`` inverted or not, the final masks of the ``official`` and
  built-in ``default`` presets and of the model's own default (its ``attnprompt_preset.json``),
  and the LVLM attention map and masks; against a uniform map, a centre prior and the
  query-agnostic CLS attention. Per query kind, and for square, 2:1 and 1:2 scenes under the
  ``stretch``, ``aligned``, ``tiled`` and ``auto`` geometries.
- :func:`vqa`: does the target model answer better on API-annotated images? Accuracy of the target
  on original and annotated images (CLIP and LVLM auxiliaries), with a paired bootstrap 95%
  confidence interval of each difference.

Both are deterministic for fixed weights and seeds, return plain dicts (JSON-ready) and are
printed as tables by ``benchmarks/localization.py`` and ``benchmarks/vqa.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

import numpy as np
import torch

from ..bench.stats import paired_bootstrap
from ..config import get_preset
from ..geometry import View
from ..maps import postprocess_single_map
from .metrics import CellLayout, cell_layout, centre_map, score_map, uniform_scores
from .world import Scene, make_dataset

if TYPE_CHECKING:
    from ..auxiliary.lvlm import LvlmAuxiliary
    from ..auxiliary.protocol import ClipAuxiliary

__all__ = ["QUERY_KINDS", "localization", "clip_scores", "vqa", "geometry_table"]

QUERY_KINDS = ("color+shape", "color", "shape")
"""Query kinds that name one object (presence questions are about whether it exists at all)."""

AGNOSTIC_QUERY = "an object"

GEOMETRY_MAPS = ("psi_cls all layers", "mask default preset", "mask model default")
"""The maps :func:`localization` compares across geometries."""


@dataclass
class _Item:
    scene: int
    text: str
    kind: str
    target: int


def _items(scenes: Sequence[Scene], kinds: Sequence[str]) -> list[_Item]:
    return [_Item(i, q.text, q.kind, q.target) for i, s in enumerate(scenes) for q in s.queries()
            if q.kind in kinds and q.target is not None]


class _Tally:
    """Running means of scores per (map name, query kind)."""

    def __init__(self) -> None:
        self.sums: dict[str, dict[str, np.ndarray]] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def add(self, name: str, kind: str, scores: Any) -> None:
        v = np.array([scores.pointing, scores.mass_ratio, scores.rank1])
        for k in (kind, "all"):
            self.sums.setdefault(name, {}).setdefault(k, np.zeros(3))
            self.sums[name][k] += v
            self.counts.setdefault(name, {}).setdefault(k, 0)
            self.counts[name][k] += 1

    def result(self) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for name, per_kind in self.sums.items():
            out[name] = {}
            for k, s in per_kind.items():
                n = self.counts[name][k]
                p, m, r = (s / n).tolist()
                out[name][k] = {"n": n, "pointing": round(p, 4), "mass_ratio": round(m, 3), "rank1": round(r, 4)}
        return out


def _clip_maps(prompter: Any, images: list, queries: list[str], geometry: str, batch_size: int,
               **overrides: Any) -> tuple[list[Any], float]:
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = prompter.annotate(images, queries, batch_size=batch_size, geometry=geometry, **overrides)
    return out, time.perf_counter() - t0


@dataclass
class _Square:
    """Square scenes, the queries that name one of their objects, and the scores of maps made for
    them (every geometry gives the same view of a square scene, so one cell layout serves all)."""

    scenes: list[Scene]
    items: list[_Item]
    layout: CellLayout
    tally: _Tally

    @classmethod
    def make(cls, aux: Any, n_scenes: int, seed: int, kinds: Sequence[str]) -> _Square:
        scenes = list(make_dataset(n_scenes, seed, aspect="square"))
        layout = cell_layout(aux.view(scenes[0].image, "aligned"), (aux.grid_size, aux.grid_size), scenes[0].size)
        return cls(scenes, _items(scenes, kinds), layout, _Tally())

    @property
    def images(self) -> list:
        return [self.scenes[it.scene].image for it in self.items]

    @property
    def texts(self) -> list[str]:
        return [it.text for it in self.items]

    def score(self, name: str, maps: Sequence[np.ndarray]) -> None:
        """Score one map per query under ``name``."""
        for it, m in zip(self.items, maps):
            self.tally.add(name, it.kind, score_map(m, self.layout, self.scenes[it.scene].masks, it.target))

    def score_psi_cls_and_comp(self, prompter: Any, comp_layer: int, batch_size: int) -> None:
        """All-layer ``psi_cls`` and ``psi_comp`` (inverted and not), from one pass."""
        every = tuple(range(prompter.auxiliary.num_layers))
        anns, _ = _clip_maps(prompter, self.images, self.texts, "aligned", batch_size, layers=every,
                             comp_layer=comp_layer)
        self.score("psi_cls all layers", [a.psi_cls for a in anns])
        self.score("psi_comp inverted", [-a.psi_comp for a in anns])
        self.score("psi_comp not inverted", [a.psi_comp for a in anns])

    def score_query_agnostic(self, prompter: Any, batch_size: int) -> None:
        """The baseline: all-layer ``psi_cls`` of a query that names nothing, one map per scene."""
        every = tuple(range(prompter.auxiliary.num_layers))
        generic = [a.psi_cls for a in _clip_maps(prompter, [s.image for s in self.scenes],
                                                 [AGNOSTIC_QUERY] * len(self.scenes), "aligned", batch_size,
                                                 layers=every, comp_layer=None)[0]]
        self.score("baseline: query-agnostic", [generic[it.scene] for it in self.items])

    def score_uniform(self) -> None:
        for it in self.items:
            self.tally.add("baseline: uniform", it.kind, uniform_scores(self.layout, self.scenes[it.scene].masks,
                                                                       it.target))


def localization(
    clip: str = "shapes-clip",
    lvlm: str | None = "shapes-llava",
    *,
    n_scenes: int = 200,
    seed: int = 12345,
    aspects: Sequence[str] = ("square", "wide", "tall"),
    geometries: Sequence[str] = ("stretch", "aligned", "tiled", "auto"),
    geometry_maps: Sequence[str] | Mapping[str, Sequence[str]] = GEOMETRY_MAPS,
    kinds: Sequence[str] = QUERY_KINDS,
    batch_size: int = 64,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Localisation scores of every map on ``n_scenes`` scenes per aspect (see the module doc).

    The detailed maps (per layer, last-k, psi_comp, presets, baselines, LVLM) are scored on square
    scenes, where every geometry gives the same view. The geometry comparison scores
    ``geometry_maps`` (of :data:`GEOMETRY_MAPS`: the all-layer ``psi_cls``, the built-in
    ``default`` preset's mask, the model's own default mask) on every aspect under every geometry
    (or, given as ``{map: geometries}``, under those geometries only).
    The LVLM's masks are its own default (``lvlm mask``) and the ``official`` post-processing of the
    same attention (``lvlm mask official preset``).
    Returns ``{"square": {map: {kind: scores}}, "geometry": {...}, "settings": {...}}``.
    """
    from ..prompter import Prompter

    say = progress or (lambda _msg: None)
    wanted = {m: tuple(geometry_maps[m]) if isinstance(geometry_maps, Mapping) else tuple(geometries)
              for m in geometry_maps}
    if set(wanted) - set(GEOMETRY_MAPS) or not wanted:
        raise ValueError(f"geometry_maps must be some of {GEOMETRY_MAPS}, got {list(geometry_maps)}")
    prompter = Prompter(clip, kind="clip", device="cpu")  # its own default: the model folder's preset
    aux = cast("ClipAuxiliary", prompter.auxiliary)
    n_layers = aux.num_layers
    every = tuple(range(n_layers))
    result: dict[str, Any] = {"settings": {"clip": clip, "lvlm": lvlm, "n_scenes": n_scenes, "seed": seed,
                                           "kinds": list(kinds), "layers": n_layers}}

    def view_of(image: Any, geometry: str) -> View:
        return aux.view(image, geometry)

    # -- square scenes: every map --------------------------------------------------------------
    square = _Square.make(aux, n_scenes, seed, kinds)
    scenes, items, images, texts, score_all = square.scenes, square.items, square.images, square.texts, square.score

    say("square scenes: psi_cls per layer")
    for layer in range(n_layers):
        anns, _ = _clip_maps(prompter, images, texts, "aligned", batch_size, layers=(layer,), comp_layer=None)
        score_all(f"psi_cls layer {layer}", [a.psi_cls for a in anns])
    for k in (2, 3):
        anns, _ = _clip_maps(prompter, images, texts, "aligned", batch_size, layers=every[-k:], comp_layer=None)
        score_all(f"psi_cls last {k}", [a.psi_cls for a in anns])
    square.score_psi_cls_and_comp(prompter, -2, batch_size)
    say("square scenes: preset masks and baselines")
    for preset in ("official", "default"):
        anns, _ = _clip_maps(prompter, images, texts, "aligned", batch_size,
                             **{k: v for k, v in _preset(preset).items() if k != "geometry"})
        score_all(f"mask {preset} preset", [a.mask for a in anns])
    anns, _ = _clip_maps(prompter, images, texts, "aligned", batch_size)
    score_all("mask model default", [a.mask for a in anns])
    square.score_query_agnostic(prompter, batch_size)
    score_all("baseline: centre", [centre_map(square.layout, scenes[0].size)] * len(items))
    square.score_uniform()
    if lvlm:
        say("square scenes: LVLM attention")
        lv = Prompter(lvlm, kind="lvlm", device="cpu")
        with torch.inference_mode():
            lanns = lv.annotate(images, texts, batch_size=batch_size)
        score_all("lvlm attention", [a.attention for a in lanns if a.attention is not None])  # all: an LVLM's
        score_all("lvlm mask", [a.mask for a in lanns])
        # the official post-processing of the same attention (the answers do not depend on it)
        official = get_preset("official", kind="lvlm")
        score_all("lvlm mask official preset", [
            postprocess_single_map(torch.from_numpy(a.attention)[None], enhance_coe=official.enhance,
                                   kernel=official.kernel, kernel_grid=official.kernel_grid,
                                   strict_order=official.strict_order)[0].numpy() for a in lanns])
        result["settings"]["lvlm_default"] = lv.config.to_dict()
    result["square"] = square.tally.result()

    # -- geometry: every aspect ---------------------------------------------------------------
    result["settings"]["clip_default"] = prompter.config.to_dict()
    geo: dict[str, Any] = {}
    default = {k: v for k, v in _preset("default").items() if k != "geometry"}
    model_default = {k: v for k, v in prompter.config.to_dict().items() if k != "geometry"}
    settings = {"psi_cls all layers": dict(layers=every, comp_layer=None), "mask default preset": default,
                "mask model default": model_default}

    for aspect in aspects:
        a_scenes = scenes if aspect == "square" else list(make_dataset(n_scenes, seed, aspect=aspect))
        a_items = _items(a_scenes, kinds)
        a_images = [a_scenes[it.scene].image for it in a_items]
        a_texts = [it.text for it in a_items]
        for geometry in geometries:
            names = [m for m in wanted if geometry in wanted[m]]
            if not names:
                continue
            say(f"geometry: {aspect} scenes, {geometry}")
            t = _Tally()
            v = view_of(a_scenes[0].image, geometry)
            for name in names:
                anns, seconds = _clip_maps(prompter, a_images, a_texts, geometry, batch_size, **settings[name])
                lay = cell_layout(v, anns[0].mask.shape, a_scenes[0].size)
                for it, ann in zip(a_items, anns):
                    m = ann.psi_cls if name.startswith("psi_cls") else ann.mask
                    t.add(name, it.kind, score_map(m, lay, a_scenes[it.scene].masks, it.target))
                if name == names[0]:
                    oracle = sum(float((lay.cell_means(a_scenes[it.scene].masks[it.target].astype(float)) >= 0.5)
                                       [lay.visible].any()) for it in a_items) / len(a_items)
                    geo.setdefault(aspect, {})[geometry] = {
                        "forwards_per_image": max(1, len(v.tiles)),
                        "seconds_per_query": round(seconds / len(a_items), 5),
                        "oracle_pointing": round(oracle, 4),
                    }
            geo[aspect][geometry]["scores"] = t.result()
    result["geometry"] = geo
    return result


def clip_scores(
    clip: str,
    *,
    n_scenes: int = 100,
    seed: int = 999,
    comp_layer: int = -2,
    kinds: Sequence[str] = QUERY_KINDS,
    device: str = "cpu",
    batch_size: int = 64,
) -> dict[str, dict[str, dict[str, float]]]:
    """The CLIP rows the shapes world requires, on square scenes, in one pass: all-layer
    ``psi_cls``, ``psi_comp`` inverted and not, and the query-agnostic and uniform baselines.

    The same names and scores as :func:`localization`'s ``"square"`` table (which also scores the
    per-layer maps, the presets, the LVLM and the geometries), at a fraction of its cost: for
    choosing among trained CLIPs on validation seeds.
    """
    from ..prompter import Prompter

    prompter = Prompter(clip, kind="clip", device=device)
    square = _Square.make(prompter.auxiliary, n_scenes, seed, kinds)
    square.score_psi_cls_and_comp(prompter, comp_layer, batch_size)
    square.score_query_agnostic(prompter, batch_size)
    square.score_uniform()
    return square.tally.result()


def _preset(name: str) -> dict[str, Any]:
    return get_preset(name, kind="clip").to_dict()


def geometry_table(result: dict[str, Any], map_name: str = "psi_cls all layers") -> dict[str, dict[str, float]]:
    """Pointing (all kinds) per aspect and geometry, and each non-square score as a share of the
    square score under the same geometry (geometries under which ``map_name`` was not scored are
    left out)."""
    geo = result["geometry"]
    out: dict[str, dict[str, float]] = {}
    for geometry in next(iter(geo.values())):
        if any(map_name not in per_geo[geometry]["scores"] for per_geo in geo.values()):
            continue
        square = geo.get("square", {}).get(geometry, {}).get("scores", {}).get(map_name, {}).get("all", {})
        row: dict[str, float] = {}
        for aspect, per_geo in geo.items():
            score = per_geo[geometry]["scores"][map_name]["all"]["pointing"]
            row[aspect] = score
            if aspect != "square" and square:
                row[f"{aspect} / square"] = round(score / square["pointing"], 4) if square["pointing"] else 0.0
        out[geometry] = row
    return out


# --- vqa ------------------------------------------------------------------------------------------


VQA_KINDS = ("shape", "color", "color+shape", "presence")


def vqa(
    target: str = "shapes-llava",
    clip: str = "shapes-clip",
    lvlm: str | None = "shapes-llava",
    *,
    n_scenes: int = 200,
    seed: int = 777,
    n_objects: tuple[int, int] = (3, 5),
    clutter: float = 2.0,
    kinds: Sequence[str] = VQA_KINDS,
    presets: Sequence[str] = ("default", "official"),
    n_boot: int = 2000,
    batch_size: int = 64,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Accuracy of ``target`` on original vs API-annotated cluttered scenes (see the module doc).

    Conditions: ``original``; ``api-clip/<preset>`` for each CLIP preset (a name, or a preset file
    such as ``attnprompt tune``'s ``preset.json``, named by its file name); ``api-lvlm`` (the LVLM
    auxiliary's default preset). Answers are exact matches after lower-casing and stripping.
    Each condition's difference to ``original`` comes with a paired bootstrap 95% CI.
    """
    from ..auxiliary.dispatch import load_auxiliary
    from ..prompter import Prompter

    say = progress or (lambda _msg: None)
    scenes = list(make_dataset(n_scenes, seed, n_objects=n_objects, clutter=clutter))
    items = [(s, q) for s in scenes for q in s.queries() if q.kind in kinds]
    texts = [q.text for _, q in items]
    truth = [q.answer for _, q in items]
    target_model = cast("LvlmAuxiliary", load_auxiliary(target, kind="lvlm", device="cpu"))

    def answers(images: list) -> list[str]:
        out: list[str] = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                out += target_model.answer(images[i:i + batch_size], texts[i:i + batch_size], max_new_tokens=4)
        return out

    conditions: dict[str, list] = {"original": [s.image for s, _ in items]}
    for preset in presets:
        say(f"annotating with {clip} ({preset} preset)")
        p = Prompter(clip, kind="clip", preset=preset, device="cpu")
        name = Path(preset).stem if Path(preset).suffix == ".json" else preset  # a preset file by its name
        with torch.inference_mode():
            conditions[f"api-clip/{name}"] = [a.image for a in p.annotate(conditions["original"], texts,
                                                                            batch_size=batch_size)]
    if lvlm:
        say(f"annotating with {lvlm}")
        lv = Prompter(lvlm, kind="lvlm", device="cpu", auxiliary=target_model if lvlm == target else None)
        with torch.inference_mode():
            conditions["api-lvlm"] = [a.image for a in lv.annotate(conditions["original"], texts,
                                                                   batch_size=batch_size)]
    correct: dict[str, np.ndarray] = {}
    for name, images in conditions.items():
        say(f"target answers: {name}")
        got = answers(images)
        correct[name] = np.array([a.strip().lower() == t for a, t in zip(got, truth)], dtype=float)

    kinds_of = np.array([q.kind for _, q in items])
    table: dict[str, Any] = {}
    for name, c in correct.items():
        row: dict[str, Any] = {"accuracy": round(float(c.mean()), 4), "n": int(len(c))}
        row["per_kind"] = {k: round(float(c[kinds_of == k].mean()), 4) for k in kinds if (kinds_of == k).any()}
        if name != "original":
            row["vs_original"] = paired_bootstrap(correct["original"], c, n_boot=n_boot, seed=seed)
        table[name] = row
    return {"settings": {"target": target, "clip": clip, "lvlm": lvlm, "n_scenes": n_scenes, "seed": seed,
                         "n_objects": list(n_objects), "clutter": clutter, "kinds": list(kinds)},
            "conditions": table}
