"""Train a tiny OpenAI-layout CLIP on shapes-world scenes, saved as a Hugging Face ``CLIPModel`` folder.

The folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``, ``vocab.json``,
``merges.txt``, ``tokenizer_config.json``) loads with ``CLIPModel.from_pretrained``,
``AutoTokenizer.from_pretrained`` and ``attnprompt.Prompter(folder)``.

    python -m attnprompt.shapes.train_clip --out DIR --time-budget 600

Model: a 6-layer ViT (width 96, 4 heads, 8-px patches on 64x64 images: an 8x8 grid, quick_gelu)
and a 3-layer text transformer over a word-level vocabulary (every word of the shapes world is one
BPE token), projection dim 64: about 1 M parameters (:class:`TinyClipSpec`).

Data: square 64x64 scenes (and some letterboxed 2:1 / 1:2 scenes so the model sees padding), held
in a pool that is partly refreshed every step. Each image is paired with one text: its caption
(objects shuffled), a single-object phrase ("a red circle") or a query as the library will ask it
("where is the red circle?", "what shape is the blue object?"). The loss is the symmetric InfoNCE
with a learnable logit scale, where in-batch pairs whose text is *also true* of the other image
(e.g. two images that both hold a red circle) are masked out instead of being used as negatives.

:func:`pointing_accuracy` is the quality probe: does the argmax of the all-layer ``psi_cls`` map
fall on the queried object?
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..geometry import OPENAI_MEAN, OPENAI_STD, make_view, mean_color
from ..tiny.clip import clip_image_processor, clip_vocab, write_clip_tokenizer
from ..tiny.clip import clip_config as tiny_clip_config
from ..tiny.seeds import seeded_init
from .metrics import cell_layout, pointing_cells
from .render import COLORS, SHAPES
from .training import (LoopConfig, add_loop_arguments, config_from_args, parallel_map, replace_folder,
                       run_loop, train_and_probe)
from .world import make_dataset, make_scene, scene_seed

__all__ = [
    "TinyClipSpec",
    "TrainConfig",
    "WORDS",
    "build_vocab",
    "write_tokenizer_files",
    "build_model",
    "save_model_dir",
    "train",
    "parse_args",
    "pointing_accuracy",
    "main",
]


WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [*COLORS, *SHAPES]
        + "a an and the where is what color colour shape object there yes no of in on with it this".split()
        + "top bottom left right center middle photo picture image scene".split()
    )
)
"""Every word that gets its own token. Punctuation ("?", ",") is split off by CLIP's pre-tokenizer
and is a single-character token anyway."""


@dataclass(frozen=True)
class TinyClipSpec:
    """Hyper-parameters of the tiny CLIP, as data."""

    image_size: int = 64
    patch_size: int = 8
    width: int = 96
    layers: int = 6
    heads: int = 4
    text_width: int = 96
    text_layers: int = 3
    text_heads: int = 4
    context_length: int = 24
    projection_dim: int = 64
    hidden_act: str = "quick_gelu"
    logit_scale_init: float = math.log(1 / 0.07)


@dataclass
class TrainConfig(LoopConfig):
    """Training settings (the CLI's flags): the shared loop settings and the CLIP's data mix."""

    batch_size: int = 128
    letterbox: float = 0.2
    """Fraction of the pool that is 2:1 / 1:2 scenes letterboxed into the square input."""
    p_caption: float = 0.5
    p_phrase: float = 0.25
    """The rest (1 - p_caption - p_phrase) are queries in the library's templates."""


# --- tokenizer ------------------------------------------------------------------------------------


def build_vocab(words: Sequence[str] = WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP BPE vocabulary in which every word of ``words`` is one token (:func:`~attnprompt.tiny.clip.clip_vocab`)."""
    return clip_vocab(words)


def write_tokenizer_files(folder: str | Path, context_length: int, words: Sequence[str] = WORDS,
                          check: bool = True) -> dict[str, int]:
    """The shapes words' tokenizer files, checked (:func:`~attnprompt.tiny.clip.write_clip_tokenizer`)."""
    return write_clip_tokenizer(folder, context_length, words, check=check)


# --- model ----------------------------------------------------------------------------------------


def clip_config(spec: TinyClipSpec, vocab_size: int) -> Any:
    """The ``CLIPConfig`` of ``spec`` (:func:`~attnprompt.tiny.clip.clip_config`)."""
    return tiny_clip_config(
        vocab_size=vocab_size, image_size=spec.image_size, patch_size=spec.patch_size, width=spec.width,
        layers=spec.layers, heads=spec.heads, text_width=spec.text_width, text_layers=spec.text_layers,
        text_heads=spec.text_heads, projection_dim=spec.projection_dim, context_length=spec.context_length,
        hidden_act=spec.hidden_act, logit_scale_init=spec.logit_scale_init,
    )


def build_model(spec: TinyClipSpec, vocab_size: int, seed: int = 0) -> Any:
    """A freshly initialised ``CLIPModel`` (training mode)."""
    from transformers import CLIPModel

    with seeded_init(seed):
        return CLIPModel(clip_config(spec, vocab_size))


def save_model_dir(model: Any, spec: TinyClipSpec, folder: str | Path, extra: dict | None = None) -> Path:
    """Save model, tokenizer and image processor into ``folder`` atomically: everything is written
    to a temporary sibling folder first, which then replaces ``folder``."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        clip_image_processor(spec.image_size).save_pretrained(tmp)
        write_tokenizer_files(tmp, spec.context_length, check=False)
        (tmp / "tiny_clip_spec.json").write_text(json.dumps({**asdict(spec), **(extra or {})}, indent=1))

    return replace_folder(folder, write)


# --- data -----------------------------------------------------------------------------------------


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def letterbox(image: Image.Image, side: int, fill: tuple[int, int, int]) -> Image.Image:
    """Fit ``image`` into a ``side`` x ``side`` square (aspect kept, centred, ``fill`` around)."""
    w, h = image.size
    scale = side / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = Image.new("RGB", (side, side), fill)
    out.paste(image.resize((nw, nh), Image.Resampling.BICUBIC), ((side - nw) // 2, (side - nh) // 2))
    return out


def _pool_scene(job: tuple[int, int, int, float]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Pool scene ``index`` of dataset ``seed``: ``([S, S, 3] uint8, [(colour, shape), ...])``.

    Depends on its arguments alone (so pools can be built in parallel): a share ``letterbox_frac``
    of the scenes are 2:1 or 1:2 scenes letterboxed into the square input.
    """
    seed, index, s, letterbox_frac = job
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7, index]))
    boxed = rng.random() < letterbox_frac
    size = ((2 * s, s) if rng.random() < 0.5 else (s, 2 * s)) if boxed else (s, s)
    scene = make_scene(scene_seed(seed, index), size=size)
    image = letterbox(scene.image, s, mean_color()) if boxed else scene.image
    return np.asarray(image, np.uint8), [(o.color, o.shape) for o in scene.objects]


class ScenePool:
    """Scenes as uint8 arrays ``[N, S, S, 3]`` plus their (colour, shape) objects; refreshed in place.

    The pool is built with ``workers`` processes (the same pool for any number); refreshing
    happens in the training process, between steps.
    """

    def __init__(self, size: int, seed: int, image_size: int, letterbox_frac: float, workers: int = 1) -> None:
        self.seed, self.image_size, self.letterbox_frac = seed, image_size, letterbox_frac
        self.pixels = np.zeros((size, image_size, image_size, 3), np.uint8)
        self.objects: list[list[tuple[str, str]]] = [[] for _ in range(size)]
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        made = parallel_map(_pool_scene, [self._job(i) for i in range(size)], workers)
        for i, (pixels, objects) in enumerate(made):
            self.pixels[i], self.objects[i] = pixels, objects
        self.counter = size

    def _job(self, index: int) -> tuple[int, int, int, float]:
        return (self.seed, index, self.image_size, self.letterbox_frac)

    def refresh(self, n: int) -> None:
        for i in self.rng.choice(len(self.objects), size=min(n, len(self.objects)), replace=False):
            self.pixels[i], self.objects[i] = _pool_scene(self._job(self.counter))
            self.counter += 1


def _text_for(objects: list[tuple[str, str]], rng: np.random.Generator, p_caption: float,
              p_phrase: float) -> tuple[str, list[tuple[str | None, str | None]], bool]:
    """One text for an image: ``(text, requirements, exhaustive)``. ``requirements`` are the
    (colour, shape) pairs the text names (None: any); ``exhaustive`` when it names all objects."""
    u = rng.random()
    if u < p_caption:
        order = rng.permutation(len(objects))
        names = [f"{objects[i][0]} {objects[i][1]}" for i in order]
        items = [f"{_article(n)} {n}" for n in names]
        text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        return text, [objects[i] for i in order], True
    k = int(rng.integers(len(objects)))
    c, s = objects[k]
    if u < p_caption + p_phrase:
        return f"{_article(c)} {c} {s}", [(c, s)], False
    colors = [o[0] for o in objects]
    shapes = [o[1] for o in objects]
    options: list[tuple[str, list[tuple[str | None, str | None]]]] = [
        (f"where is the {c} {s}?", [(c, s)]),
        (f"is there {_article(c)} {c} {s}?", [(c, s)]),
    ]
    if colors.count(c) == 1:
        options.append((f"what shape is the {c} object?", [(c, None)]))
    if shapes.count(s) == 1:
        options.append((f"what color is the {s}?", [(None, s)]))
    text, req = options[int(rng.integers(len(options)))]
    return text, req, False


def _compatible(objects: list[tuple[str, str]], req: list[tuple[str | None, str | None]], exhaustive: bool) -> bool:
    """Is a text with these requirements true of an image holding ``objects``? (The reference
    for :func:`false_negatives`, which computes it for a whole batch at once.)"""
    for c, s in req:
        if not any((c is None or c == oc) and (s is None or s == os_) for oc, os_ in objects):
            return False
    return not exhaustive or sorted(objects) == sorted(req)  # type: ignore[type-var]


_CELLS = [(c, s) for c in COLORS for s in SHAPES]
_CELL_INDEX = {cell: k for k, cell in enumerate(_CELLS)}
_ALLOWED = {(c, s): np.array([(c is None or c == cc) and (s is None or s == ss) for cc, ss in _CELLS])
            for c in (*COLORS, None) for s in (*SHAPES, None)}
"""Per requirement (colour or None, shape or None): the cells it allows, ``[K]`` (looked up once per
requirement in the training step, not rebuilt)."""


def false_negatives(objects: list[list[tuple[str, str]]],
                    texts: list[tuple[list[tuple[str | None, str | None]], bool]]) -> torch.Tensor:
    """``[image i, text j]``: text j (its requirements, exhaustive or not) is also true of image i, i != j
    (``texts[j]`` is image j's text, so the diagonal is the positive pair).

    Vectorised over the batch: objects become presence vectors over the (colour, shape) cells and
    each requirement a set of allowed cells; a requirement holds when the two meet.
    """
    n, k = len(objects), len(_CELLS)
    present = np.zeros((n, k), bool)  # [N, K]
    for i, objs in enumerate(objects):
        present[i, [_CELL_INDEX[o] for o in objs]] = True
    r = max(1, max(len(req) for req, _ in texts))
    allowed = np.ones((len(texts), r, k), bool)  # [T, R, K]; padding requirements hold for any image
    named = np.zeros((len(texts), k), bool)  # [T, K]: the cells a text's requirements allow, together
    for j, (req, _) in enumerate(texts):
        for q, c_s in enumerate(req):
            allowed[j, q] = _ALLOWED[c_s]
            named[j] |= allowed[j, q]
    # counts of shared cells as matrix products: a requirement holds when it shares one with the image
    p = present.astype(np.float32)
    holds = ((p @ allowed.reshape(-1, k).T.astype(np.float32)) > 0).reshape(n, len(texts), r).all(-1)  # [N, T]
    exhaustive = np.array([ex for _, ex in texts])
    # an exhaustive text (a caption) names fully specified objects: it fits only that exact set
    shared = p @ named.T.astype(np.float32)  # [N, T]
    same_set = (shared == present.sum(1)[:, None]) & (shared == named.sum(1)[None, :])
    compat = holds & (~exhaustive[None, :] | same_set)
    np.fill_diagonal(compat, False)
    return torch.from_numpy(compat)


def _batch(pool: ScenePool, tokenizer: Any, cfg: TrainConfig, spec: TinyClipSpec,
           rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    idx = rng.choice(len(pool.objects), size=cfg.batch_size, replace=False)
    pix = pool.pixels[idx].copy()
    flip = rng.random(len(idx)) < 0.5  # captions and queries say nothing about left/right
    pix[flip] = pix[flip, :, ::-1]
    x = torch.from_numpy(pix).permute(0, 3, 1, 2).float().div_(255.0)
    x = (x - torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)) / torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    texts, reqs = [], []
    for i in idx:
        t, r, ex = _text_for(pool.objects[i], rng, cfg.p_caption, cfg.p_phrase)
        texts.append(t)
        reqs.append((r, ex))
    compat = false_negatives([pool.objects[i] for i in idx], reqs)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=spec.context_length, return_tensors="pt")
    return x, {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, compat


def clip_loss(logits_per_image: torch.Tensor, false_negatives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE; ``false_negatives[i, j]`` masks pairs where text j also fits image i."""
    logits = logits_per_image.masked_fill(false_negatives, float("-inf"))
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


# --- training -------------------------------------------------------------------------------------


def train(cfg: TrainConfig, spec: TinyClipSpec | None = None, verbose: bool = True) -> dict[str, Any]:
    """Train and save into ``cfg.out``. Stops at ``cfg.steps`` or when ``cfg.time_budget`` seconds
    (counted from the start, scene generation included) would be exceeded. Returns a summary."""
    from transformers import AutoTokenizer

    spec = spec or TinyClipSpec()
    start = time.monotonic()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)

    tok_dir = Path(tempfile.mkdtemp(prefix="attnprompt-tok-"))
    try:
        vocab = write_tokenizer_files(tok_dir, spec.context_length)
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    finally:
        shutil.rmtree(tok_dir, ignore_errors=True)
    device = torch.device(cfg.device)
    model = build_model(spec, len(vocab), cfg.seed).to(device).train()
    n_params = sum(p.numel() for p in model.parameters())

    pool = ScenePool(cfg.pool, cfg.seed, spec.image_size, cfg.letterbox, cfg.workers)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    if verbose:
        print(f"tiny CLIP: {n_params / 1e6:.2f} M parameters, vocab {len(vocab)}, pool {cfg.pool} scenes "
              f"({time.monotonic() - start:.1f} s)", flush=True)

    def step(lr: float) -> float:
        for g in opt.param_groups:
            g["lr"] = lr
        x, text, compat = _batch(pool, tokenizer, cfg, spec, rng)
        outputs = model(pixel_values=x.to(device), **{k: v.to(device) for k, v in text.items()})
        loss = clip_loss(outputs.logits_per_image, compat.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, math.log(100.0))
        pool.refresh(cfg.refresh)
        return float(loss.detach())

    def save(extra: dict[str, Any], final: bool) -> None:
        model.eval()
        save_model_dir(model, spec, out, extra)
        if not final:
            model.train()

    return run_loop(cfg, step, save, start=start, floor=0.05, params=n_params, verbose=verbose,
                    log_extra=lambda: {"logit_scale": round(float(model.logit_scale.detach().exp()), 2)})


# --- quality probe --------------------------------------------------------------------------------


def _psi_cls(annotation: Any) -> np.ndarray:
    if annotation.psi_cls is None:  # a CLIP auxiliary always makes it
        raise RuntimeError("the annotation has no psi_cls map")
    return np.asarray(annotation.psi_cls)


def pointing_accuracy(model_dir: str | Path, n_scenes: int = 200, seed: int = 12345,
                      kinds: Sequence[str] = ("color+shape", "color"), overlap: float = 0.5,
                      agnostic_query: str = "an object", batch_size: int = 64) -> dict[str, Any]:
    """Does the argmax of the all-layer ``psi_cls`` land on the queried object?

    For each square scene of ``make_dataset(n_scenes, seed)`` and each query of the given kinds, the
    8x8 (P x P) ``psi_cls`` of ``Prompter(model_dir, layers=all, comp_layer=None)`` is taken; cell
    (r, c) covers pixels ``[r*S/P, (r+1)*S/P) x [c*S/P, (c+1)*S/P)``. A hit is the argmax cell
    overlapping the target mask by at least ``overlap`` of its area (``center_hit``: the cell's
    centre pixel in the mask), as :func:`attnprompt.shapes.metrics.pointing_cells` scores it. Baselines: ``uniform`` (expected hit rate of a random cell) and
    ``agnostic`` (the argmax of the map for the fixed query ``agnostic_query``, same image).
    Returns overall and per-kind rates."""
    import json as _json

    from attnprompt import Prompter

    cfg = _json.loads((Path(model_dir) / "config.json").read_text())
    n_layers = int(cfg["vision_config"]["num_hidden_layers"])
    prompter = Prompter(str(model_dir), device="cpu", layers=tuple(range(n_layers)), comp_layer=None)
    scenes = list(make_dataset(n_scenes, seed, aspect="square"))
    images, queries, targets, qkinds, scene_of = [], [], [], [], []
    for si, s in enumerate(scenes):
        for q in s.queries():
            if q.kind in kinds and q.target is not None:
                images.append(s.image)
                queries.append(q.text)
                targets.append(q.target)
                qkinds.append(q.kind)
                scene_of.append(si)
    with torch.inference_mode():
        maps = [_psi_cls(a) for a in prompter.annotate(images, queries, batch_size=batch_size)]
        generic = [_psi_cls(a) for a in prompter.annotate([s.image for s in scenes], [agnostic_query] * len(scenes),
                                                        batch_size=batch_size)]
    stats: dict[str, dict[str, float]] = {}

    for psi, target, kind, si in zip(maps, targets, qkinds, scene_of):
        scene = scenes[si]
        p = psi.shape[0]
        layout = cell_layout(make_view(scene.image, "stretch"), (p, p), scene.size)
        hit_cells, centre_cells = pointing_cells(layout, scene.masks[target], overlap)
        r, c = np.unravel_index(int(np.argmax(psi)), psi.shape)
        gr, gc = np.unravel_index(int(np.argmax(generic[si])), psi.shape)
        for key in (kind, "all"):
            st = stats.setdefault(key, {"n": 0, "hit": 0.0, "center_hit": 0.0, "uniform": 0.0, "agnostic": 0.0})
            st["n"] += 1
            st["hit"] += float(hit_cells[r, c])
            st["center_hit"] += float(centre_cells[r, c])
            st["uniform"] += float(hit_cells.mean())
            st["agnostic"] += float(hit_cells[gr, gc])
    result: dict[str, Any] = {}
    for key, st in stats.items():
        n = st.pop("n")
        result[key] = {"n": int(n), **{k: round(v / max(n, 1), 4) for k, v in st.items()}}
    return result


# --- CLI ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The CLI's :class:`TrainConfig` (the shared loop flags and the data mix)."""
    p = argparse.ArgumentParser(prog="python -m attnprompt.shapes.train_clip", description=__doc__.split("\n")[0])
    add_loop_arguments(p, TrainConfig, "pointing")
    d = TrainConfig(out="")
    p.add_argument("--p-caption", type=float, default=d.p_caption, help="share of texts that are captions")
    p.add_argument("--p-phrase", type=float, default=d.p_phrase,
                   help="share of one-object phrases (the rest are queries)")
    p.add_argument("--letterbox", type=float, default=d.letterbox, help="share of letterboxed 2:1 / 1:2 scenes")
    args = p.parse_args(argv)
    shares = (args.p_caption, args.p_phrase, args.letterbox)
    if min(shares) < 0 or args.p_caption + args.p_phrase > 1 or args.letterbox > 1:
        p.error("--p-caption and --p-phrase must be >= 0 with a sum <= 1, and --letterbox in [0, 1]")
    return config_from_args(TrainConfig, args)


def main(argv: Sequence[str] | None = None) -> int:
    return train_and_probe(parse_args(argv), train, "pointing_accuracy", pointing_accuracy)


if __name__ == "__main__":
    sys.exit(main())
