"""Vision-language models as auxiliary models: the answer's attention to the image is the map.

The model answers the query greedily; at the chosen decoder layer(s), at every forward call
(the prefill and each decoding step), the attention of the last query position to the image
tokens is recorded (:mod:`attnprompt.auxiliary.lvlm_capture`), averaged over the calls that
produced the answer (or only those that spell a highlighted part of it) and over the layers,
and laid out on the image-token grid. Family specifics (where the grid's tokens are, how the
processor transforms the image) live in one small file per family: ``lvlm_llava.py``,
``lvlm_llava_next.py``, ``lvlm_qwen2_vl.py``, found through :mod:`attnprompt.auxiliary.families`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image

from ..config import AuxiliarySettings, MaskConfig, resolve_layer
from ..errors import AttnPromptError, first_line
from ..geometry import View, make_view, mean_color
from .devices import dtype_kwargs
from .families import FAMILIES, Family, Grid, family_for, image_token_positions, register_family, require_image_tokens
from .hub import load_from_hub_or_dir
from .protocol import Auxiliary, MapBatch, check_queries
from .lvlm_capture import AttentionCapture

__all__ = ["Grid", "Family", "FAMILIES", "register_family", "LvlmAuxiliary", "default_layer", "load_lvlm",
           "image_token_positions", "require_image_tokens"]


def default_layer(num_layers: int) -> int:
    """Layer 20, the official choice for the 32-layer 7B and the 40-layer 13B LLaVA-1.5; for
    other depths the 7B's relative depth (20/32 of the decoder)."""
    if num_layers in (32, 40):
        return 20
    return min(num_layers - 1, max(0, round(num_layers * 20 / 32)))


class LvlmAuxiliary(Auxiliary):
    """A Hugging Face vision-language model (LLaVA, LLaVA-NeXT, Qwen2-VL...) as auxiliary model."""

    kind = "lvlm"
    backend = "hf"

    def __init__(self, name: str, model: Any, processor: Any, family: Family,
                 device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(name, device, dtype)
        self.model = model
        self.processor = processor
        self.family = family
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"  # generation continues every row at the same position
        decoder = model.get_decoder()
        layers = getattr(decoder, "layers", None)
        if layers is None or not all(hasattr(getattr(l, "self_attn", None), "layer_idx") for l in layers):
            raise AttnPromptError(
                f"{name!r}: the language model has no decoder layers with self_attn.layer_idx; "
                "this model family is not supported"
            )
        self._layers = layers

    # -- configuration -----------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def layers(self, config: MaskConfig | AuxiliarySettings) -> tuple[int, ...]:
        chosen = config.layers if config.layers is not None else (default_layer(self.num_layers),)
        return tuple(sorted({resolve_layer(l, self.num_layers, "layer", "the language model") for l in chosen}))

    def check_settings(self, config: AuxiliarySettings) -> None:
        if config.geometry == "tiled":
            raise AttnPromptError("the tiled geometry is for CLIP auxiliary models; an LVLM reads the whole "
                                  "image at once: use aligned")
        self.layers(config)

    def view(self, image: Image.Image, geometry: str) -> View:
        if geometry in ("aligned", "auto"):  # an LVLM reads the whole image at once: auto is aligned
            return self.family.aligned_view(self, image)
        return make_view(image, geometry)

    @property
    def pad_color(self) -> tuple[int, int, int]:
        return mean_color(getattr(getattr(self.processor, "image_processor", None), "image_mean", None))

    # -- prompting and generation -----------------------------------------------------------
    def prompt(self, query: str) -> str:
        """The query in the model's chat template, with one image, ready for generation."""
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": query}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        token = getattr(self.processor, "image_token", "<image>")
        return f"USER: {token}\n{query} ASSISTANT:"  # the LLaVA-1.5 conversation format

    def encode(self, images: Sequence[Image.Image], queries: Sequence[str]) -> dict[str, torch.Tensor]:
        prompts = [self.prompt(q) for q in queries]
        try:
            inputs = self.processor(images=list(images), text=prompts, return_tensors="pt", padding=True)
        except (ValueError, TypeError) as exc:  # e.g. prompts without the image token
            raise AttnPromptError(f"the processor rejected the inputs: {first_line(exc, None)}") from None
        return {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                for k, v in inputs.items() if isinstance(v, torch.Tensor)}

    def _eos_ids(self) -> set[int]:
        ids = getattr(self.model.generation_config, "eos_token_id", None)
        if ids is None:
            ids = self.tokenizer.eos_token_id
        return set(ids if isinstance(ids, (list, tuple)) else [ids]) - {None}

    def generate(self, inputs: dict[str, torch.Tensor], max_new_tokens: int) -> torch.Tensor:
        """Greedy answer tokens ``[B, new]`` (the prompt cut off), as the official code decodes."""
        pad = self.tokenizer.pad_token_id
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=pad if pad is not None else next(iter(self._eos_ids()), None))
        return out[:, inputs["input_ids"].shape[1]:]

    def map_batches(self, images: Sequence[Image.Image], queries: Sequence[str],
                    config: AuxiliarySettings) -> list[MapBatch]:
        """Per image, its answer and the answer's attention to the image tokens (one batch each)."""
        queries = check_queries(queries, len(images))
        layers = self.layers(config)
        inputs = self.encode(images, queries)
        grids = self.family.grids(self, inputs)
        modules = {l: self._layers[l].self_attn for l in layers}
        eos = self._eos_ids()
        with AttentionCapture(modules, [g.span for g in grids], config.reduction) as capture:
            generated = self.generate(inputs, config.max_new_tokens)
        results = []
        for i, grid in enumerate(grids):
            tokens = generated[i].tolist()
            n_calls = next((j + 1 for j, t in enumerate(tokens) if t in eos), len(tokens))
            answer_tokens = [t for t in tokens[:n_calls] if t not in eos]
            answer = self.tokenizer.decode(answer_tokens, skip_special_tokens=True)
            if not answer.strip():
                raise AttnPromptError(
                    f"the auxiliary model's answer to query {i} is empty (it ended the answer at once): "
                    "no answer tokens to take attention from"
                )
            calls = list(range(n_calls))
            if config.highlight is not None:
                calls = self.highlight_calls(answer_tokens, config.highlight)
            per_layer = [torch.stack([capture.records[l][c][i] for c in calls]).mean(dim=0) for l in layers]
            values = torch.stack(per_layer).mean(dim=0).float().cpu()  # [rows * cols]
            attention = values.reshape(grid.rows, grid.cols)
            results.append(MapBatch({"attention": attention[None]}, [answer.strip()]))
        return results

    def answer(self, images: Sequence[Image.Image], queries: Sequence[str], max_new_tokens: int = 20) -> list[str]:
        """Plain greedy answers (no capture): the LVLM as a target model."""
        queries = check_queries(queries, len(images))
        inputs = self.encode(images, queries)
        texts = self.tokenizer.batch_decode(self.generate(inputs, max_new_tokens), skip_special_tokens=True)
        return [t.strip() for t in texts]

    def answer_scored(self, images: Sequence[Image.Image], queries: Sequence[str],
                      max_new_tokens: int = 20) -> list[tuple[str, float]]:
        """Greedy answers with a confidence: the mean log-probability of the answer's tokens (the
        end-of-answer token included, so a one-token answer is judged by whether it stops there)."""
        queries = check_queries(queries, len(images))
        inputs = self.encode(images, queries)
        pad = self.tokenizer.pad_token_id
        eos = self._eos_ids()
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=pad if pad is not None else next(iter(eos), None),
                                      output_logits=True, return_dict_in_generate=True)
        tokens = out.sequences[:, inputs["input_ids"].shape[1]:]  # [B, new]
        logp = torch.stack([torch.log_softmax(l.float(), dim=-1) for l in out.logits], dim=1)  # [B, new, V]
        chosen = logp.gather(-1, tokens[..., None])[..., 0]  # [B, new]
        results = []
        for i, row in enumerate(tokens.tolist()):
            n = next((j + 1 for j, t in enumerate(row) if t in eos), len(row))  # up to the first end token
            text = self.tokenizer.decode([t for t in row[:n] if t not in eos], skip_special_tokens=True)
            results.append((text.strip(), float(chosen[i, :n].mean())))
        return results

    def highlight_calls(self, answer_tokens: list[int], text: str) -> list[int]:
        """The forward calls whose generated token overlaps ``text`` in the decoded answer.

        Call ``j`` produces answer token ``j``; a token's characters are found by decoding
        growing prefixes, which handles tokenizers that merge or drop spaces when decoding.
        """
        full = self.tokenizer.decode(answer_tokens, skip_special_tokens=True)
        start = full.find(text)
        if start < 0:
            lowered = full.lower().find(text.lower())
            if lowered < 0:
                raise AttnPromptError(f"highlight text {text!r} is not in the auxiliary answer {full.strip()!r}")
            start = lowered
        end = start + len(text)
        calls, previous = [], 0
        for j in range(len(answer_tokens)):
            current = len(self.tokenizer.decode(answer_tokens[: j + 1], skip_special_tokens=True))
            if previous < end and current > start and current > previous:
                calls.append(j)
            previous = current
        if not calls:
            raise AttnPromptError(f"highlight text {text!r} covers no answer token")
        return calls


def load_lvlm(model: str, *, config: Any = None, device: torch.device, dtype: torch.dtype, **_: Any) -> LvlmAuxiliary:
    """Load a supported vision-language model with its processor (hub id or local folder)."""
    import transformers
    from transformers import AutoConfig, AutoProcessor

    if config is None:
        config = load_from_hub_or_dir(AutoConfig.from_pretrained, model, "config")
    family = family_for(getattr(config, "model_type", ""))
    if family is None:
        raise AttnPromptError(f"{model!r} ({getattr(config, 'model_type', 'unknown')}) is not a supported vision-language model")
    cls = getattr(transformers, family.model_class)
    net = load_from_hub_or_dir(cls.from_pretrained, model, "model weights", **dtype_kwargs(dtype)).to(device).eval()
    processor = load_from_hub_or_dir(AutoProcessor.from_pretrained, model, "processor")
    return LvlmAuxiliary(model, net, processor, family, device, dtype)
