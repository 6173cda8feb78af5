"""Held-out shapes scenes written in a benchmark's on-disk layout, so ``attnprompt eval`` and
``attnprompt tune`` read them with the benchmark's own reader and score them with its own scorer.

    write_folder("pope", OUT, n_scenes=200, split="validation")   -> OUT/coco_pope_*.json + OUT/images/
    write_folder("vizwiz", OUT, n_scenes=200, split="test")       -> OUT/val.json + OUT/val/
    python -m attnprompt.shapes.folders pope OUT --scenes 200 --split validation

Every folder also holds ``shapes_items.jsonl``: one record per benchmark item (the id the
benchmark's reader gives it) with the question kind (VizWiz: ``color+shape``, ``color``, ``shape``,
``presence``; POPE: ``present``, or ``absent (random|popular|adversarial)`` by how the absent
object was drawn), whether a distractor shares one attribute (``hard``), the scene seed, the
index of the object the question names (``target``; ``None`` for an absent one) and the answer,
for per-kind tables (:func:`read_item_kinds`) and for relating answers to where a mask points.

Folders are deterministic: the same split (or seed) and options give byte-identical files.
The ``validation`` and ``test`` splits use disjoint dataset seeds (:data:`SPLIT_SEEDS`), apart
from the seeds the shipped models were trained on (``train_llava`` uses datasets 1000 and 1001),
so choices made on validation scenes are tested on scenes never seen.

Layouts:

- ``pope``: ``coco_pope_{random,popular,adversarial}.json`` (JSON lines ``question_id, image,
  text, label``; each file numbers from 1) and ``images/``. Per scene and split one "yes"
  question (an object in the scene) and one "no" question (an absent colour-shape pair): the
  ``random`` split draws the absent pair uniformly, ``popular`` one whose shape is in the scene,
  ``adversarial`` one whose colour is in the scene (POPE's adversarial split asks about objects
  that co-occur with those present; here the near miss is a shared attribute).
- ``vizwiz``: ``val.json`` (a list of ``image, question, answers`` (10 identical human answers),
  ``answerable, answer_type``) and ``val/``; VizWiz has one question per image, so each question
  has its own copy of its scene. Questions are the world's referring queries (where is the red
  circle? what shape is the blue object? what color is the square?) and its presence questions.
- ``mmmu``: ``<Subject>/validation-00000-of-00001.parquet`` as the hub repository MMMU/MMMU (the
  scene embedded as ``image_1``, ``<image 1>`` after the question). Per scene three questions:
  "what shape is the X object?" as a 4-option multiple choice (subject Math), "what color is
  the S?" as a 4-option multiple choice (subject Art), and "where is the X S?" as an open question
  answered with the position words (subject Geography). Needs pyarrow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import AttnPromptError
from ..files import atomic_save_image, atomic_write_text
from .render import COLORS, SHAPES
from .world import Scene, make_dataset, scene_seed

__all__ = ["SPLIT_SEEDS", "WRITERS", "ITEMS_FILE", "split_seed", "write_folder", "write_pope", "write_vizwiz", "write_mmmu",
           "read_items", "read_item_kinds", "register_writer"]

#: Dataset seeds of the held-out splits (disjoint from each other and from the training datasets).
SPLIT_SEEDS: dict[str, int] = {"validation": 5001, "test": 5002}
ITEMS_FILE = "shapes_items.jsonl"
#: Scenes like ``benchmarks/vqa.py``'s: 3-5 objects and twice the clutter, where a prompt could help.
DEFAULT_OBJECTS = (3, 5)
DEFAULT_CLUTTER = 2.0
POPE_SPLITS = ("random", "popular", "adversarial")
VIZWIZ_KINDS = ("color+shape", "color", "shape", "presence")


def split_seed(split: str | int) -> int:
    """The dataset seed of a named split (``validation``, ``test``), or an explicit integer seed."""
    if isinstance(split, int):
        return split
    if split not in SPLIT_SEEDS:
        raise AttnPromptError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_SEEDS)} or give a seed")
    return SPLIT_SEEDS[split]


def _scenes(n_scenes: int, seed: int, n_objects: tuple[int, int], clutter: float) -> list[Scene]:
    if n_scenes < 1:
        raise AttnPromptError(f"the number of scenes must be at least 1, got {n_scenes}")
    return list(make_dataset(n_scenes, seed, n_objects=n_objects, clutter=clutter))


def _lines(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _absent(scene: Scene, rule: str, rng: np.random.Generator) -> tuple[str, str]:
    """An absent colour-shape pair: ``random`` any, ``popular`` a present shape, ``adversarial`` a
    present colour (falling back to any absent pair when the rule leaves none)."""
    pairs = {(o.color, o.shape) for o in scene.objects}
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in pairs]
    shapes = {o.shape for o in scene.objects}
    colors = {o.color for o in scene.objects}
    pool = {"random": absent,
            "popular": [p for p in absent if p[1] in shapes],
            "adversarial": [p for p in absent if p[0] in colors]}[rule] or absent
    return pool[int(rng.integers(len(pool)))]


def _article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def write_pope(out: str | os.PathLike[str], n_scenes: int = 200, *, split: str | int = "validation",
               n_objects: tuple[int, int] = DEFAULT_OBJECTS, clutter: float = DEFAULT_CLUTTER) -> Path:
    """Write a POPE-layout folder of ``n_scenes`` shapes scenes (two questions per scene and POPE
    split, see the module doc); returns the folder."""
    seed = split_seed(split)
    root = Path(out)
    (root / "images").mkdir(parents=True, exist_ok=True)
    scenes = _scenes(n_scenes, seed, n_objects, clutter)
    files: dict[str, list[dict[str, Any]]] = {s: [] for s in POPE_SPLITS}
    items: dict[str, list[dict[str, Any]]] = {s: [] for s in POPE_SPLITS}  # in the reader's order
    for i, scene in enumerate(scenes):
        name = f"shapes_{seed}_{i:06d}.png"
        atomic_save_image(scene.image, root / "images" / name, format="PNG")
        for k, rule in enumerate(POPE_SPLITS):
            rng = np.random.default_rng(np.random.SeedSequence([seed, i, k]))
            index = int(rng.integers(len(scene.objects)))
            color, shape = _absent(scene, rule, rng)
            asks = [(scene.objects[index].name, "yes", bool(scene.distractors(index)), index),
                    (f"{color} {shape}", "no", color in {o.color for o in scene.objects}
                     or shape in {o.shape for o in scene.objects}, None)]
            for obj, label, hard, target in asks:
                qid = len(files[rule]) + 1
                # The world's phrasing, which the shipped target was trained on ("is there a red star?").
                files[rule].append({"question_id": qid, "image": name, "text": f"is there {_article(obj)} {obj}?",
                                    "label": label})
                kind = "present" if label == "yes" else f"absent ({rule})"
                items[rule].append({"id": f"{rule}-{qid}", "kind": kind, "hard": hard, "scene_seed": scene.seed,
                                    "target": target, "answer": label})
    for rule, rows in files.items():
        atomic_write_text(root / f"coco_pope_{rule}.json", _lines(rows))
    atomic_write_text(root / ITEMS_FILE, _lines(r for rule in POPE_SPLITS for r in items[rule]))
    return root


def write_vizwiz(out: str | os.PathLike[str], n_scenes: int = 200, *, split: str | int = "validation",
                 n_objects: tuple[int, int] = DEFAULT_OBJECTS, clutter: float = DEFAULT_CLUTTER,
                 kinds: Sequence[str] = VIZWIZ_KINDS) -> Path:
    """Write a VizWiz-layout folder: every query of ``kinds`` about ``n_scenes`` scenes, one image
    file per question (see the module doc); returns the folder."""
    unknown = [k for k in kinds if k not in VIZWIZ_KINDS]
    if unknown or not kinds:
        raise AttnPromptError(f"unknown question kind(s) {unknown or kinds}; choose from {', '.join(VIZWIZ_KINDS)}")
    seed = split_seed(split)
    root = Path(out)
    (root / "val").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for scene in _scenes(n_scenes, seed, n_objects, clutter):
        for q in scene.queries():
            if q.kind not in kinds:
                continue
            stem = f"VizWiz_val_{len(rows):08d}"
            atomic_save_image(scene.image, root / "val" / f"{stem}.png", format="PNG")
            rows.append({"image": f"{stem}.png", "question": q.text,
                         "answers": [{"answer": q.answer, "answer_confidence": "yes"}] * 10,
                         "answerable": 1, "answer_type": "yes/no" if q.kind == "presence" else "other"})
            items.append({"id": stem, "kind": q.kind, "hard": q.hard, "scene_seed": scene.seed, "target": q.target,
                          "answer": q.answer})
    atomic_write_text(root / "val.json", "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    atomic_write_text(root / ITEMS_FILE, _lines(items))
    return root


#: MMMU-like subjects of the world's question kinds (subject, subfield, question type)
MMMU_KINDS: dict[str, tuple[str, str, str]] = {
    "color": ("Math", "Geometry", "multiple-choice"),
    "shape": ("Art", "Color", "multiple-choice"),
    "color+shape": ("Geography", "Position", "open"),
}


def write_mmmu(out: str | os.PathLike[str], n_scenes: int = 200, *, split: str | int = "validation",
               n_objects: tuple[int, int] = DEFAULT_OBJECTS, clutter: float = DEFAULT_CLUTTER) -> Path:
    """Write an MMMU-layout folder: three questions per scene (see the module doc), one parquet per
    subject with the scene's PNG embedded; returns the folder."""
    try:
        import pyarrow as pa  # type: ignore[import-not-found]
        import pyarrow.parquet as pq  # type: ignore[import-not-found]
    except ImportError:
        raise AttnPromptError("the MMMU layout is parquet: it needs pyarrow (pip install 'attnprompt[hub]')") from None
    import io

    seed = split_seed(split)
    root = Path(out)
    rows: dict[str, list[dict[str, Any]]] = {subject: [] for subject, _, _ in MMMU_KINDS.values()}
    items: list[dict[str, Any]] = []
    for i, scene in enumerate(_scenes(n_scenes, seed, n_objects, clutter)):
        buf = io.BytesIO()
        scene.image.save(buf, format="PNG")
        png = {"bytes": buf.getvalue(), "path": f"shapes_{seed}_{i:06d}.png"}
        rng = np.random.default_rng(np.random.SeedSequence([seed, i, 7]))
        for kind, (subject, subfield, qtype) in MMMU_KINDS.items():
            q = next((q for q in scene.queries() if q.kind == kind), None)
            if q is None:
                continue
            options: list[str] = []
            answer = q.answer
            if qtype == "multiple-choice":
                pool = [x for x in (SHAPES if kind == "color" else COLORS) if x != q.answer]
                picked = [pool[int(j)] for j in rng.permutation(len(pool))[:3]]
                options = picked + [q.answer]
                options = [options[int(j)] for j in rng.permutation(len(options))]
                answer = chr(ord("A") + options.index(q.answer))
            qid = f"validation_{subject}_{len(rows[subject]) + 1}"
            rows[subject].append({
                "id": qid, "question": f"{q.text} <image 1>", "options": repr(options), "explanation": "",
                "image_1": png, **{f"image_{n}": None for n in range(2, 8)}, "img_type": "['Diagrams']",
                "answer": answer, "topic_difficulty": "Easy", "question_type": qtype, "subfield": subfield,
            })
            items.append({"id": qid, "kind": kind, "hard": q.hard, "scene_seed": scene.seed, "answer": answer})
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("id", pa.string()), ("question", pa.string()), ("options", pa.string()),
                        ("explanation", pa.string()), *[(f"image_{n}", image) for n in range(1, 8)],
                        ("img_type", pa.string()), ("answer", pa.string()), ("topic_difficulty", pa.string()),
                        ("question_type", pa.string()), ("subfield", pa.string())])
    for subject, recs in rows.items():
        if recs:
            (root / subject).mkdir(parents=True, exist_ok=True)
            target = root / subject / "validation-00000-of-00001.parquet"
            tmp = target.with_name(f".{target.name}.tmp")
            pq.write_table(pa.Table.from_pylist(recs, schema=schema), tmp)
            os.replace(tmp, target)
    atomic_write_text(root / ITEMS_FILE, _lines(items))
    return root


Writer = Callable[..., Path]
WRITERS: dict[str, Writer] = {"pope": write_pope, "vizwiz": write_vizwiz, "mmmu": write_mmmu}


def register_writer(benchmark: str, writer: Writer) -> Writer:
    """Add a layout: ``writer(out, n_scenes, *, split, n_objects, clutter) -> folder``."""
    WRITERS[benchmark] = writer
    return writer


def write_folder(benchmark: str, out: str | os.PathLike[str], n_scenes: int = 200, *,
                 split: str | int = "validation", **options: Any) -> Path:
    """Write held-out shapes scenes in ``benchmark``'s layout (one of :data:`WRITERS`)."""
    if benchmark not in WRITERS:
        raise AttnPromptError(f"no shapes writer for {benchmark!r}; known: {', '.join(WRITERS)}")
    return WRITERS[benchmark](out, n_scenes, split=split, **options)


def read_items(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a shapes folder's ``shapes_items.jsonl`` ([] if absent)."""
    path = Path(folder) / ITEMS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_item_kinds(folder: str | os.PathLike[str]) -> dict[str, str]:
    """``{item id: question kind}`` from a shapes folder's ``shapes_items.jsonl`` ({} if absent)."""
    return {str(rec["id"]): str(rec["kind"]) for rec in read_items(folder)}


def scene_seeds(n_scenes: int, split: str | int) -> set[int]:
    """The scene seeds a split's first ``n_scenes`` scenes use (to check that splits are disjoint)."""
    seed = split_seed(split)
    return {scene_seed(seed, i) for i in range(n_scenes)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attnprompt.shapes.folders",
                                description="Write held-out shapes scenes in a benchmark's layout.")
    p.add_argument("benchmark", choices=sorted(WRITERS))
    p.add_argument("out", help="output folder")
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--split", default="validation", help="validation, test, or an integer dataset seed")
    a = p.parse_args(argv)
    split: str | int = int(a.split) if a.split.lstrip("-").isdigit() else a.split
    try:
        folder = write_folder(a.benchmark, a.out, a.scenes, split=split)
    except AttnPromptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = sum(1 for _ in read_item_kinds(folder))
    print(f"{folder}: {n} questions about {a.scenes} scenes ({a.benchmark} layout, split {a.split})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
