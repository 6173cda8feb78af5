"""Shapes world: synthetic scenes of coloured shapes where the truth is known.

A scene holds 2-5 coloured shapes on a muted textured background with clutter and pixel noise,
plus each object's exact visible-pixel mask. Captions (for contrastive training) and queries that
refer to one object by colour, shape or both (with answers and the target's index, so the target
mask can be looked up) come from the objects, never from the pixels. Everything is deterministic
from a seed.

Dev tool: ``python -m attnprompt.shapes.world --out DIR --n 12 --aspect mixed`` writes example PNGs,
a preview sheet and a JSON of objects and queries.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import render
from .render import COLORS, SHAPES

ASPECTS: tuple[str, ...] = ("square", "wide", "tall", "mixed")
QUERY_KINDS: tuple[str, ...] = ("color+shape", "color", "shape", "presence")
SIZE_RANGE = (0.25, 0.5)
"""Object size (circumscribed diameter) as a fraction of the scene's short side."""
SHARE_PROB = 0.25
"""Chance that a new object copies one attribute of an earlier one; this is what makes hard cases."""
SAME_COLOR_GAP = 2
"""Minimum gap in pixels between two objects of the same colour."""
_PLACEMENT_TRIES = 60
_SCENE_TRIES = 40


@dataclass(frozen=True)
class ShapeObject:
    """One object as drawn. ``center`` is (x, y) in pixels; ``size`` is the diameter of the shape's
    circumscribed circle in pixels; ``angle`` is in degrees; ``rgb`` is the jittered colour actually
    painted (``COLORS[color]`` is the nominal one)."""

    shape: str
    color: str
    rgb: tuple[int, int, int]
    center: tuple[float, float]
    size: float
    angle: float

    @property
    def name(self) -> str:
        """``"red circle"``."""
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Query:
    """A question about a scene.

    ``kind`` says how the object is named: ``"color+shape"`` ("where is the red circle?", answer a
    coarse position such as ``"top left"``), ``"color"`` ("what shape is the blue object?", answer a
    shape), ``"shape"`` ("what color is the square?", answer a colour) or ``"presence"`` ("is there a
    green star?", answer ``"yes"``/``"no"``). ``target`` is the index of the referred object in
    ``Scene.objects`` (and ``Scene.masks``), or None for a "no" presence question. ``hard`` is True
    when some other object shares exactly one attribute (colour or shape) with the one named, so the
    query cannot be answered from a single attribute.
    """

    text: str
    answer: str
    kind: str
    target: int | None
    hard: bool


@dataclass(eq=False)  # arrays and images have no useful ==; compare fields explicitly
class Scene:
    """A rendered scene with exact ground truth.

    ``image`` is RGB of size (W, H); ``masks`` is bool [N, H, W], the pixels of each object that are
    visible in ``image`` (a later object hides earlier ones, so masks are disjoint);
    ``full_masks`` is the unoccluded footprint of each object, same shape. ``seed`` and the image
    size reproduce the scene through :func:`make_scene` (with the same other arguments).
    """

    image: Image.Image
    objects: list[ShapeObject]
    masks: np.ndarray
    seed: int
    full_masks: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0, 0), bool))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, as PIL reports it."""
        return self.image.size

    def caption(self, rng: np.random.Generator | int | None = None) -> str:
        """``"a red circle, a blue square and a green star"``; objects in drawing order, or shuffled
        when ``rng`` is given (contrastive training should not learn the order)."""
        names = [o.name for o in self.objects]
        if rng is not None:
            order = _as_rng(rng).permutation(len(names))
            names = [names[i] for i in order]
        return _join([f"{_article(n)} {n}" for n in names])

    def position(self, index: int) -> str:
        """Coarse position of an object's visible pixels on a 3x3 grid: ``"top left"``, ``"top"``,
        ..., ``"center"``, ..., ``"bottom right"`` (from the mask's centroid)."""
        ys, xs = np.nonzero(self.masks[index])
        w, h = self.size
        col = _third(float(xs.mean()) + 0.5, w, ("left", "", "right"))
        row = _third(float(ys.mean()) + 0.5, h, ("top", "", "bottom"))
        return " ".join(p for p in (row, col) if p) or "center"

    def distractors(self, index: int) -> list[int]:
        """Indices of the other objects sharing exactly one attribute with object ``index``."""
        t = self.objects[index]
        return [
            j for j, o in enumerate(self.objects) if j != index and (o.color == t.color) != (o.shape == t.shape)
        ]

    def queries(self, rng: np.random.Generator | int | None = None) -> list[Query]:
        """Every unambiguous referring query, plus one "yes" and one "no" presence question.

        Per object: "where is the <color> <shape>?" when that pair is unique (always, as scenes hold
        no duplicate pairs); "what shape is the <color> object?" only when exactly one object has
        that colour; "what color is the <shape>?" only when exactly one object has that shape. The
        presence questions are drawn with ``rng`` (default: from the scene seed, so the list is
        deterministic): "yes" names a random object; "no" names an absent pair, half the time one
        sharing an attribute with an object in the scene when possible.
        """
        rng = _as_rng(self.seed if rng is None else rng)
        pairs = Counter((o.color, o.shape) for o in self.objects)
        colors = Counter(o.color for o in self.objects)
        shapes = Counter(o.shape for o in self.objects)
        out: list[Query] = []
        for i, o in enumerate(self.objects):
            hard = bool(self.distractors(i))
            if pairs[(o.color, o.shape)] == 1:
                out.append(Query(f"where is the {o.color} {o.shape}?", self.position(i), "color+shape", i, hard))
            if colors[o.color] == 1:
                out.append(Query(f"what shape is the {o.color} object?", o.shape, "color", i, hard))
            if shapes[o.shape] == 1:
                out.append(Query(f"what color is the {o.shape}?", o.color, "shape", i, hard))
        if not self.objects:
            return out

        i = int(rng.integers(len(self.objects)))
        o = self.objects[i]
        out.append(Query(f"is there {_article(o.name)} {o.name}?", "yes", "presence", i, bool(self.distractors(i))))

        absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in pairs]
        near = [(c, s) for c, s in absent if c in colors or s in shapes]
        far = [(c, s) for c, s in absent if c not in colors and s not in shapes]
        pool = near if near and (not far or rng.random() < 0.5) else far
        c, s = pool[int(rng.integers(len(pool)))]
        name = f"{c} {s}"
        out.append(Query(f"is there {_article(name)} {name}?", "no", "presence", None, c in colors or s in shapes))
        return out

    def to_dict(self) -> dict:
        """JSON-ready summary (no pixels): seed, size, objects, visible fractions, caption, queries."""
        full = self.full_masks.reshape(len(self.objects), -1).sum(1) if self.full_masks.size else None
        vis = self.masks.reshape(len(self.objects), -1).sum(1)
        return {
            "seed": self.seed,
            "size": list(self.size),
            "objects": [asdict(o) for o in self.objects],
            "visible_pixels": [int(v) for v in vis],
            "visible_fraction": None if full is None else [round(float(v / f), 3) for v, f in zip(vis, full)],
            "caption": self.caption(),
            "queries": [asdict(q) for q in self.queries()],
        }


def make_scene(
    seed: int,
    *,
    size: tuple[int, int] = (64, 64),
    n_objects: tuple[int, int] = (2, 5),
    clutter: float = 1.0,
    noise: float = 6.0,
    min_visible: float = 0.5,
) -> Scene:
    """Render one scene, deterministically from ``seed``.

    ``size`` is (width, height). The number of objects is uniform in ``n_objects`` (inclusive).
    Objects have a circumscribed diameter of 25-50% of the short side, lie wholly inside the image,
    and every object keeps at least ``min_visible`` of its footprint visible after all later objects
    are drawn (placements that break this are redrawn). No two objects share both colour and shape,
    and objects of the same colour never touch (at least ``SAME_COLOR_GAP`` pixels apart).
    ``clutter`` scales the number of background lines and dots; ``noise`` is the Gaussian pixel
    noise sigma (0 gives exact flat colours, handy for tests).
    """
    width, height = (int(v) for v in size)
    lo, hi = (int(v) for v in n_objects)
    if width < 16 or height < 16:
        raise ValueError(f"scene size must be at least 16x16, got {width}x{height}")
    if not 1 <= lo <= hi or hi > len(COLORS) * len(SHAPES):
        raise ValueError(f"n_objects must be 1 <= lo <= hi, got {n_objects}")
    if not 0.0 < min_visible <= 1.0:  # > 0 so every object keeps a non-empty mask
        raise ValueError(f"min_visible must be in (0, 1], got {min_visible}")

    rng = np.random.default_rng(seed)
    canvas = render.draw_clutter(rng, render.background(rng, width, height), clutter)
    n = int(rng.integers(lo, hi + 1))
    attributes = _pick_attributes(rng, n)
    for _ in range(_SCENE_TRIES):
        placed = _place(rng, attributes, width, height, min_visible)
        if placed is not None:
            break
    else:  # only reachable for cramped sizes / many objects
        raise RuntimeError(f"could not place {n} objects in {width}x{height} (seed {seed})")

    objects, full = placed
    owner = np.full((height, width), -1, dtype=np.int16)
    for k, (obj, m) in enumerate(zip(objects, full)):
        canvas[m] = obj.rgb
        owner[m] = k
    masks = owner[None] == np.arange(len(objects), dtype=np.int16)[:, None, None]
    pixels = render.add_noise(rng, canvas, noise)
    return Scene(Image.fromarray(pixels, "RGB"), objects, masks, int(seed), np.stack(full))


def aspect_size(aspect: str, base: int = 64) -> tuple[int, int]:
    """(width, height) for ``"square"`` (base x base), ``"wide"`` (2:1) or ``"tall"`` (1:2)."""
    sizes = {"square": (base, base), "wide": (2 * base, base), "tall": (base, 2 * base)}
    if aspect not in sizes:
        raise ValueError(f"aspect must be one of {sorted(sizes)}, got {aspect!r}")
    return sizes[aspect]


def scene_seed(seed: int, index: int) -> int:
    """The seed of scene ``index`` in dataset ``seed``; hashed so nearby datasets do not overlap."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def make_dataset(
    n: int,
    seed: int,
    *,
    aspect: str = "square",
    base: int = 64,
    n_objects: tuple[int, int] = (2, 5),
    clutter: float = 1.0,
    noise: float = 6.0,
) -> Iterator[Scene]:
    """``n`` scenes, lazily. ``aspect`` is ``"square"``, ``"wide"`` (2:1, e.g. 128x64), ``"tall"``
    (1:2) or ``"mixed"`` (each scene picks one of the three). Scene ``i`` has seed
    ``scene_seed(seed, i)``, so any scene can be rebuilt alone with :func:`make_scene`."""
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    picker = np.random.default_rng(np.random.SeedSequence([int(seed), 2**31]))  # apart from scene seeds
    for i in range(n):
        a = ("square", "wide", "tall")[int(picker.integers(3))] if aspect == "mixed" else aspect
        yield make_scene(
            scene_seed(seed, i), size=aspect_size(a, base), n_objects=n_objects, clutter=clutter, noise=noise
        )


def _pick_attributes(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """(colour, shape) per object, distinct pairs; often one attribute is copied from an earlier
    object, because shared attributes are what the hard queries need."""
    colors, shapes = list(COLORS), list(SHAPES)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        c, s = colors[int(rng.integers(len(colors)))], shapes[int(rng.integers(len(shapes)))]
        if out and rng.random() < SHARE_PROB:
            ref_c, ref_s = out[int(rng.integers(len(out)))]
            if rng.random() < 0.5:
                c = ref_c
            else:
                s = ref_s
        if (c, s) not in out:
            out.append((c, s))
    return out


def _place(
    rng: np.random.Generator, attributes: Sequence[tuple[str, str]], width: int, height: int, min_visible: float
) -> tuple[list[ShapeObject], list[np.ndarray]] | None:
    """Sample geometry for each object in order; None when one cannot be placed (caller retries)."""
    short = min(width, height)
    objects: list[ShapeObject] = []
    full: list[np.ndarray] = []
    owner = np.full((height, width), -1, dtype=np.int16)
    areas: list[int] = []
    halo: dict[str, np.ndarray] = {}  # per colour: footprints grown by SAME_COLOR_GAP
    for k, (color, shape) in enumerate(attributes):
        for _ in range(_PLACEMENT_TRIES):
            size = float(rng.uniform(*SIZE_RANGE) * short)
            r = size / 2.0
            # one pixel of margin keeps the whole footprint (PIL fills edge pixels inclusively) inside
            cx = float(rng.uniform(r + 1.0, width - r - 1.0))
            cy = float(rng.uniform(r + 1.0, height - r - 1.0))
            angle = 0.0 if shape == "circle" else float(rng.uniform(0.0, 360.0))
            m = render.rasterize(shape, (cx, cy), size, angle, width, height)
            if color in halo and (m & halo[color]).any():
                continue  # same-colour objects that touch read as one blob, so the truth would lie
            covered = owner[m]
            lost = np.bincount(covered[covered >= 0], minlength=k)
            if all(vis - lost[j] >= min_visible * areas[j] for j, vis in enumerate(_visible(owner, k))):
                break
        else:
            return None
        rgb = render.jitter_color(rng, COLORS[color])
        objects.append(ShapeObject(shape, color, rgb, (cx, cy), size, angle))
        full.append(m)
        areas.append(int(m.sum()))
        owner[m] = k
        grown = _dilate(m, SAME_COLOR_GAP)
        halo[color] = grown if color not in halo else halo[color] | grown
    return objects, full


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a bool mask by ``radius`` pixels (square neighbourhood)."""
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def _visible(owner: np.ndarray, k: int) -> list[int]:
    return np.bincount(owner[owner >= 0], minlength=k)[:k].tolist()


def _as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _article(name: str) -> str:
    return "an" if name[:1] in "aeiou" else "a"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _third(v: float, extent: int, names: tuple[str, str, str]) -> str:
    return names[min(2, int(3.0 * v / extent))]


# --- dev tool -----------------------------------------------------------------------------------

_LABEL_COLORS = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)],
    dtype=np.uint8,
)


def mask_image(scene: Scene) -> Image.Image:
    """The visible masks as a label picture (grey background, one colour per object index)."""
    w, h = scene.size
    out = np.full((h, w, 3), 60, np.uint8)
    for k, m in enumerate(scene.masks):
        out[m] = _LABEL_COLORS[k % len(_LABEL_COLORS)]
    return Image.fromarray(out, "RGB")


def preview(scenes: Sequence[Scene], scale: int = 4, columns: int = 3) -> Image.Image:
    """A contact sheet: each scene next to its label masks, upscaled without smoothing."""
    cell_w = max(s.size[0] for s in scenes) * 2 * scale + 8
    cell_h = max(s.size[1] for s in scenes) * scale + 8
    rows = math.ceil(len(scenes) / columns)
    sheet = Image.new("RGB", (cell_w * min(columns, len(scenes)), cell_h * rows), (255, 255, 255))
    for i, s in enumerate(scenes):
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        big = (s.size[0] * scale, s.size[1] * scale)
        sheet.paste(s.image.resize(big, Image.Resampling.NEAREST), (x, y))
        sheet.paste(mask_image(s).resize(big, Image.Resampling.NEAREST), (x + big[0], y))
    return sheet


def main(argv: Sequence[str] | None = None) -> int:
    """Write example scenes for eyeballing: ``scene_NNN.png``, ``scene_NNN_masks.png``,
    ``preview.png`` and ``scenes.json``."""
    p = argparse.ArgumentParser(prog="python -m attnprompt.shapes.world", description=main.__doc__)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--aspect", choices=ASPECTS, default="mixed")
    p.add_argument("--base", type=int, default=64)
    p.add_argument("--clutter", type=float, default=1.0)
    p.add_argument("--noise", type=float, default=6.0)
    p.add_argument("--scale", type=int, default=4, help="upscaling of preview.png")
    args = p.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    scenes = list(
        make_dataset(args.n, args.seed, aspect=args.aspect, base=args.base, clutter=args.clutter, noise=args.noise)
    )
    records = []
    for i, s in enumerate(scenes):
        s.image.save(args.out / f"scene_{i:03d}.png")
        mask_image(s).save(args.out / f"scene_{i:03d}_masks.png")
        records.append({"file": f"scene_{i:03d}.png", **s.to_dict()})
    if scenes:
        preview(scenes, args.scale).save(args.out / "preview.png")
    (args.out / "scenes.json").write_text(json.dumps(records, indent=1))
    print(f"wrote {len(scenes)} scenes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
