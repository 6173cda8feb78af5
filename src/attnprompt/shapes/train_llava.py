"""Train a tiny LLaVA on shapes-world questions, saved as a Hugging Face ``LlavaForConditionalGeneration``.

    python -m attnprompt.shapes.train_llava --out DIR --time-budget 600

The recipe is LLaVA-1.5's, in miniature:

- vision tower: the shipped ``shapes-clip`` vision encoder (6 x 96 ViT, 8-px patches on 64 px),
  frozen; LLaVA reads its penultimate layer without the CLS token (64 image tokens);
- projector: a two-layer GELU MLP (96 -> 128 -> 128), trained;
- language model: a 4-layer Llama (width 128, 4 heads, 2 key/value heads), trained from scratch;
- tokenizer: word-level (every word of the world is one token), the llava-hf chat format
  ``"USER: <image>\\n{question} ASSISTANT:"``, answers ended by ``</s>``.

Data: scenes of 1-5 objects with their questions (``Scene.queries()``): "what color is the
square?", "what shape is the blue object?", "where is the red circle?" (a coarse position) and
"is there a green star?" (yes/no). The loss is next-token cross-entropy on the answer tokens only.
A fraction of the images (``p_prompted``) carry a synthetic attention prompt: a coarse, token-grid
mask around one object blended in like an API annotation, and the question is then about that
object, so the model learns to read dimmed images the way large VLMs have seen highlighted ones.

Because the tower is frozen, each scene's image features are computed once when it enters the
pool; a step runs only the projector and the language model. The saved folder loads with
``AutoModelForImageTextToText.from_pretrained`` / ``AutoProcessor.from_pretrained`` and serves as
the offline target model and the offline LVLM auxiliary (``--model shapes-llava``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..geometry import OPENAI_MEAN, OPENAI_STD
from ..overlay import blend
from ..tiny.lvlm import LLAVA_CHAT_TEMPLATE, LLAVA_SPECIALS, build_word_tokenizer, configure_generation
from ..tiny.seeds import seeded_init
from .render import COLORS, SHAPES
from .training import (LoopConfig, add_loop_arguments, config_from_args, parallel_map, replace_folder,
                       run_loop, train_and_probe)
from .world import Query, Scene, make_dataset, make_scene, scene_seed

if TYPE_CHECKING:
    from ..auxiliary.lvlm import LvlmAuxiliary

__all__ = [
    "TinyLlavaSpec",
    "TrainConfig",
    "WORDS",
    "build_tokenizer",
    "build_model",
    "prompted_image",
    "save_model_dir",
    "train",
    "answer_accuracy",
    "main",
]

WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        "user assistant".split()
        + [*COLORS, *SHAPES]
        + "a an the what where is there color colour shape object yes no top bottom left right center".split()
    )
)
"""Every word of the prompts and answers; each is one token."""


@dataclass(frozen=True)
class TinyLlavaSpec:
    """Hyper-parameters of the language side, as data (the vision side is the CLIP's)."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384


@dataclass
class TrainConfig(LoopConfig):
    """Training settings (the CLI's flags): the shared loop settings and the LLaVA's own."""

    lr: float = 2e-3
    weight_decay: float = 0.05
    checkpoint_every: int = 500
    clip: str = "shapes-clip"
    """The CLIP whose vision tower LLaVA uses: a short name of a shipped model or a folder."""
    init: str | None = None
    """Go on training a saved tiny LLaVA (a folder or shipped name) instead of building one on ``clip``."""
    n_objects: tuple[int, int] = (1, 5)
    p_prompted: float = 0.3
    tune_vision: bool = False
    """Also fine-tune the vision tower (at ``vision_lr_scale`` x ``lr``); else it stays frozen."""
    vision_lr_scale: float = 0.2


# --- tokenizer, model, folder ---------------------------------------------------------------------


def build_tokenizer() -> Any:
    """The word-level Llama-style tokenizer with the llava-hf chat template (built offline)."""
    return build_word_tokenizer(WORDS, LLAVA_SPECIALS, bos="<s>", eos="</s>", pad="<pad>", add_bos=True,
                                model_max_length=256, chat_template=LLAVA_CHAT_TEMPLATE)


def _model_folder(name: str) -> str:
    """A shipped model's folder for its short name; any other name is a folder already."""
    from ..auxiliary.hub import shipped_model

    return shipped_model(name) or name


def build_model(spec: TinyLlavaSpec, clip_dir: str, tokenizer: Any, seed: int = 0) -> Any:
    """A ``LlavaForConditionalGeneration`` whose vision tower holds the CLIP's vision weights."""
    from transformers import CLIPModel, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    clip = CLIPModel.from_pretrained(clip_dir)
    vision: Any = clip.config.vision_config
    grid = vision.image_size // vision.patch_size
    text = LlamaConfig(hidden_size=spec.hidden, intermediate_size=spec.intermediate, num_hidden_layers=spec.layers,
                       num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
                       vocab_size=len(tokenizer), max_position_embeddings=256,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    # image_token_id: transformers 5's name (image_token_index before), passed as the configs do
    ids: dict[str, Any] = {"image_token_id": tokenizer.convert_tokens_to_ids("<image>")}
    config = LlavaConfig(vision_config=vision, text_config=text, **ids, image_seq_length=grid * grid,
                         vision_feature_select_strategy="default", vision_feature_layer=-2,
                         projector_hidden_act="gelu")
    with seeded_init(seed):
        model = LlavaForConditionalGeneration(config)
    # LLaVA's tower is a CLIPVisionModel, the same module as CLIPModel.vision_model
    model.model.vision_tower.load_state_dict(clip.vision_model.state_dict(), strict=True)
    configure_generation(model, tokenizer)  # greedy; no special token but eos, and never eos first
    model.generation_config.max_new_tokens = 8
    return model


def _processor(clip_dir: str, tokenizer: Any, patch_size: int) -> Any:
    from transformers import AutoImageProcessor, LlavaProcessor

    image_processor = AutoImageProcessor.from_pretrained(clip_dir)
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=LLAVA_CHAT_TEMPLATE)


def save_model_dir(model: Any, processor: Any, spec: TinyLlavaSpec, folder: str | Path,
                   extra: dict | None = None) -> Path:
    """Save model and processor into ``folder`` atomically (a temporary sibling replaces it)."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "tiny_llava_spec.json").write_text(json.dumps({**asdict(spec), **(extra or {})}, indent=1))

    return replace_folder(folder, write)


# --- data -----------------------------------------------------------------------------------------


def prompted_image(scene: Scene, target: int, rng: np.random.Generator, grid: int = 8) -> Image.Image:
    """The scene with a synthetic attention prompt around object ``target``.

    Like an API mask: a coarse ``grid x grid`` map (the target's cell coverage plus noise, softly
    sharpened), upsampled with Lanczos and blended towards black or gray (0 or 200).
    """
    from ..geometry import View, place_mask
    from ..overlay import mask_to_u8

    m = scene.masks[target].astype(np.float32)
    h, w = m.shape
    cover = np.asarray(Image.fromarray(m).resize((grid, grid), Image.Resampling.BOX), np.float32)
    noisy = cover + rng.uniform(0.0, 0.4) * rng.random((grid, grid), dtype=np.float32)
    sharp = 1.0 / (1.0 + np.exp(-rng.uniform(2.0, 8.0) * (noisy - noisy.mean()) / (noisy.std() + 1e-6)))
    sharp = (sharp - sharp.min()) / max(float(sharp.max() - sharp.min()), 1e-6)
    floor = rng.uniform(0.0, 0.3)
    mask = floor + (1.0 - floor) * sharp
    pixel = place_mask(mask_to_u8(mask.astype(np.float32)), View(scene.image, (w, h), (0, 0, w, h)), "lanczos")
    return blend(scene.image, pixel, int(rng.choice([0, 200])))


def _pool_entry(job: tuple[int, int, int, int, tuple[int, int], float]) -> tuple[np.ndarray, list[Query]]:
    """Pool entry ``index`` of training seed ``seed``: an image (``[S, S, 3]`` uint8, plain or
    prompted) and the scene's questions usable with it.

    Depends on its arguments alone, so pools can be built in parallel and are the same for any
    number of workers.
    """
    seed, index, size, grid, n_objects, p_prompted = job
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11, index]))
    scene = make_scene(scene_seed(seed + 1000, index), size=(size, size), n_objects=n_objects)
    queries = scene.queries(rng)
    if rng.random() < p_prompted:
        target = int(rng.integers(len(scene.objects)))
        about = [q for q in queries if q.target == target or q.target is None]
        return np.asarray(prompted_image(scene, target, rng, grid), np.uint8), about
    return np.asarray(scene.image, np.uint8), queries


class FeaturePool:
    """Images with their questions, partly replaced by fresh ones every step.

    Entry ``i`` holds one image (plain or prompted) and the scene's questions usable with it. With a
    frozen tower the image is stored as its ``[64, D]`` features (computed once); with a tuned tower
    as normalised pixels ``[3, S, S]``. Both live on the model's device. The initial pool is built by
    ``cfg.workers`` processes.
    """

    def __init__(self, model: Any, cfg: TrainConfig, image_size: int, grid: int) -> None:
        self.model, self.cfg, self.image_size, self.grid = model, cfg, image_size, grid
        self.device = next(model.parameters()).device
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 11]))
        self.features: torch.Tensor | None = None
        self.queries: list[list[Query]] = []
        self.mean = torch.tensor(OPENAI_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(OPENAI_STD, device=self.device).view(1, 3, 1, 1)
        made = parallel_map(_pool_entry, [self._job(i) for i in range(cfg.pool)], cfg.workers)
        self.features = self._store(made)
        self.queries = [q for _, q in made]
        self.counter = cfg.pool

    def _job(self, index: int) -> tuple[int, int, int, int, tuple[int, int], float]:
        c = self.cfg
        lo, hi = c.n_objects
        return (c.seed, index, self.image_size, self.grid, (lo, hi), c.p_prompted)

    def _pixels(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, S, S]
        return (x - self.mean) / self.std

    @torch.no_grad()
    def encode(self, images: np.ndarray) -> torch.Tensor:
        """LLaVA's image features before the projector: penultimate layer, CLS dropped ``[N, T, D]``."""
        out = self.model.model.vision_tower(self._pixels(images), output_hidden_states=True)
        return out.hidden_states[self.model.config.vision_feature_layer][:, 1:]

    def _store(self, made: list[tuple[np.ndarray, list[Query]]]) -> torch.Tensor:
        store = self._pixels if self.cfg.tune_vision else self.encode
        return torch.cat([store(np.stack([im for im, _ in made[i:i + 256]])) for i in range(0, len(made), 256)])

    def refresh(self, n: int) -> None:
        n = min(n, len(self.queries))  # a pool smaller than the refresh count is replaced whole
        if n <= 0:
            return
        indices = [int(i) for i in self.rng.choice(len(self.queries), size=n, replace=False)]
        made = [_pool_entry(self._job(self.counter + k)) for k in range(n)]
        self.counter += n
        assert self.features is not None
        self.features[torch.as_tensor(indices, device=self.device)] = self._store(made)
        for i, (_, q) in zip(indices, made):
            self.queries[i] = q

    def sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[Query]]:
        """``n`` entries: their stored features (or pixels) and one of each entry's questions."""
        idx = rng.choice(len(self.queries), size=n, replace=False)
        assert self.features is not None
        picked = [self.queries[int(i)][int(rng.integers(len(self.queries[int(i)])))] for i in idx]
        return self.features[torch.as_tensor(idx, device=self.device)], picked


@lru_cache(maxsize=8192)
def _prompt_ids(tokenizer: Any, question: str) -> tuple[int, ...]:
    """The chat prompt's token ids for one question (the template is rendered once per question)."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
        add_generation_prompt=True, tokenize=False)
    return tuple(tokenizer(prompt, add_special_tokens=True)["input_ids"])


@lru_cache(maxsize=1024)
def _answer_ids(tokenizer: Any, answer: str) -> tuple[int, ...]:
    """The answer's token ids, ended by ``</s>``."""
    return (*tokenizer(answer, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id)


def _encode_batch(tokenizer: Any, queries: list[Query], n_image_tokens: int,
                  image_token: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids, attention mask and labels (answer tokens and ``</s>`` only), right-padded."""
    ids, labels = [], []
    for q in queries:
        p = list(_prompt_ids(tokenizer, q.text))
        at = p.index(image_token)
        p = p[:at] + [image_token] * n_image_tokens + p[at + 1:]
        a = list(_answer_ids(tokenizer, q.answer))
        ids.append(p + a)
        labels.append([-100] * len(p) + a)
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    label_t = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
    return input_ids, attention, label_t


def train(cfg: TrainConfig, spec: TinyLlavaSpec | None = None, verbose: bool = True) -> dict[str, Any]:
    """Train and save into ``cfg.out``; stops at ``cfg.steps`` or when ``cfg.time_budget`` seconds
    (from the start, pool building included) would be exceeded. Returns a summary."""
    start = time.monotonic()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tokenizer = build_tokenizer()
    device = torch.device(cfg.device)
    if cfg.init:  # a second stage: go on from a saved tiny LLaVA (its weights, spec and processor)
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        init = _model_folder(cfg.init)
        saved = json.loads((Path(init) / "tiny_llava_spec.json").read_text())
        spec = TinyLlavaSpec(**{k: saved[k] for k in asdict(TinyLlavaSpec())})
        model: Any = LlavaForConditionalGeneration.from_pretrained(init)
        model = model.to(device)
        processor = AutoProcessor.from_pretrained(init)
    else:
        spec = spec or TinyLlavaSpec()
        clip_dir = _model_folder(cfg.clip)
        model = build_model(spec, clip_dir, tokenizer, cfg.seed).to(device)
        processor = _processor(clip_dir, tokenizer, model.config.vision_config.patch_size)
    vision = model.config.vision_config
    grid = vision.image_size // vision.patch_size
    tower = model.model.vision_tower
    tower.requires_grad_(cfg.tune_vision).train(cfg.tune_vision)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in model.parameters())
    groups = []
    for in_tower in (False, True):
        named = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad and n.startswith("model.vision_tower") == in_tower]
        scale = cfg.vision_lr_scale if in_tower else 1.0
        groups.append({"params": [p for n, p in named if p.ndim >= 2 and "embed" not in n],
                       "weight_decay": cfg.weight_decay, "lr_scale": scale})
        groups.append({"params": [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)],
                       "weight_decay": 0.0, "lr_scale": scale})
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=(0.9, 0.98))
    pool = FeaturePool(model, cfg, vision.image_size, grid)
    image_token = model.config.image_token_id
    embed = model.get_input_embeddings()
    if verbose:
        print(f"tiny LLaVA: {n_params / 1e6:.2f} M parameters ({sum(p.numel() for p in trainable) / 1e6:.2f} M "
              f"trained), vocab {len(tokenizer)}, pool {cfg.pool} ({time.monotonic() - start:.1f} s)", flush=True)

    def train_mode() -> None:
        model.model.language_model.train()
        model.model.multi_modal_projector.train()
        tower.train(cfg.tune_vision)

    def step(lr: float) -> float:
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        feats, queries = pool.sample(cfg.batch_size, rng)  # [B, T, D] (frozen tower) or [B, 3, S, S]
        if cfg.tune_vision:
            hidden = tower(feats, output_hidden_states=True).hidden_states
            feats = hidden[model.config.vision_feature_layer][:, 1:]  # [B, T, D], CLS dropped
        input_ids, attention, labels = (t.to(device) for t in _encode_batch(tokenizer, queries, feats.shape[1],
                                                                             image_token))
        embeds = embed(input_ids)  # [B, S, H]
        image_embeds = model.model.multi_modal_projector(feats).to(embeds.dtype)  # [B, T, H]
        embeds = embeds.masked_scatter((input_ids == image_token)[..., None], image_embeds)
        logits = model(inputs_embeds=embeds, attention_mask=attention).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        pool.refresh(cfg.refresh)
        return float(loss.detach())

    def save(extra: dict[str, Any], final: bool) -> None:
        save_model_dir(model.eval(), processor, spec, cfg.out, extra)
        if not final:
            train_mode()

    train_mode()
    return run_loop(cfg, step, save, start=start, floor=0.02, params=n_params, verbose=verbose)


# --- quality probe --------------------------------------------------------------------------------


def answer_accuracy(model_dir: str | Path, n_scenes: int = 200, seed: int = 4242,
                    n_objects: tuple[int, int] = (1, 2), batch_size: int = 64) -> dict[str, Any]:
    """Exact-match accuracy of the model's greedy answers per query kind, on fresh square scenes.

    Goes through the public LVLM path (:class:`attnprompt.auxiliary.lvlm.LvlmAuxiliary.answer`).
    """
    from ..auxiliary.dispatch import load_auxiliary

    aux = cast("LvlmAuxiliary", load_auxiliary(str(model_dir), kind="lvlm", device="cpu"))
    items = [(s.image, q) for s in make_dataset(n_scenes, seed, n_objects=n_objects) for q in s.queries()]
    answers: list[str] = []
    with torch.inference_mode():
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            answers += aux.answer([im for im, _ in chunk], [q.text for _, q in chunk], max_new_tokens=4)
    stats: dict[str, list[int]] = {}
    for (_, q), a in zip(items, answers):
        ok = int(a.strip().lower() == q.answer)
        for key in (q.kind, "all"):
            stats.setdefault(key, []).append(ok)
    return {k: {"n": len(v), "accuracy": round(float(np.mean(v)), 4)} for k, v in stats.items()}


# --- CLI ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attnprompt.shapes.train_llava", description=__doc__.split("\n")[0])
    add_loop_arguments(p, TrainConfig, "accuracy")
    d = TrainConfig(out="")
    p.add_argument("--clip", default=d.clip, help="CLIP folder (or shipped name) for the vision tower")
    p.add_argument("--init", default=d.init, help="go on training this saved tiny LLaVA (folder or shipped name)")
    p.add_argument("--p-prompted", type=float, default=d.p_prompted,
                   help="share of images with a synthetic attention prompt")
    p.add_argument("--tune-vision", action="store_true", help="also fine-tune the vision tower (slower)")
    p.add_argument("--vision-lr-scale", type=float, default=d.vision_lr_scale,
                   help="the tower's learning rate relative to --lr")
    cfg = config_from_args(TrainConfig, p.parse_args(argv))
    return train_and_probe(cfg, train, "answer_accuracy", answer_accuracy)


if __name__ == "__main__":
    sys.exit(main())
