"""A local Hugging Face VLM as the target model: batched greedy answers with its chat template."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence, cast

import torch

if TYPE_CHECKING:
    from ..auxiliary.lvlm import LvlmAuxiliary
from PIL import Image

from .cache import AnswerCache, image_digest, model_identity

__all__ = ["HFTarget"]


class HFTarget:
    """A transformers vision-language model (LLaVA-1.5, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL) answering questions.

    Loading, the chat template and batched greedy generation are the LVLM auxiliary's
    (:class:`attnprompt.auxiliary.lvlm.LvlmAuxiliary`), so every family the auxiliary supports is
    a target too. Answers go through ``cache`` when given, keyed by model, image pixels, prompt
    and generation settings.

    Args:
        model: hub id or local folder (or a shipped name such as ``shapes-llava``).
        device, dtype: as for :class:`attnprompt.Prompter`.
        max_new_tokens: answer length limit (greedy decoding).
        batch_size: questions per generate call.
        cache: an :class:`AnswerCache`, or ``None``.
        auxiliary: an already loaded LVLM (skips loading; lets auxiliary and target share weights).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_new_tokens: int = 128,
        batch_size: int = 8,
        cache: AnswerCache | None = None,
        auxiliary: Any = None,
    ) -> None:
        from ..auxiliary.dispatch import load_auxiliary

        from ..errors import AttnPromptError

        if batch_size < 1:
            raise AttnPromptError("batch size must be at least 1")
        if max_new_tokens < 1:
            raise AttnPromptError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        self.model = cast("LvlmAuxiliary", auxiliary or load_auxiliary(str(model), kind="lvlm", device=device, dtype=dtype))
        self.name = f"hf:{model}"
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.cache = cache
        self._identity = model_identity(str(getattr(self.model, "name", model)))  # once: it lists the folder

    def settings(self) -> dict[str, Any]:
        """Everything besides image and prompt that changes an answer (part of every cache key)."""
        return {"max_new_tokens": self.max_new_tokens, "decoding": "greedy", "dtype": str(self.model.dtype),
                "device": torch.device(self.model.device).type, "model": self._identity}

    def answer(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[str]:
        """One greedy answer per (image, prompt), in order."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        out: list[str | None] = [None] * len(images)
        keys: list[str | None] = [None] * len(images)
        todo: list[int] = []
        for i, (image, prompt) in enumerate(zip(images, prompts)):
            if self.cache is not None:
                key = keys[i] = self.cache.key(self.name, image_digest(image), prompt, self.settings())
                hit = self.cache.get(key)
                if hit is not None:
                    out[i] = hit
                    continue
            todo.append(i)
        with torch.inference_mode():
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start:start + self.batch_size]
                texts = self.model.answer([images[i] for i in chunk], [prompts[i] for i in chunk],
                                          max_new_tokens=self.max_new_tokens)
                for i, text in zip(chunk, texts):
                    out[i] = text
                    stored = keys[i]
                    if self.cache is not None and stored is not None:
                        self.cache.put(stored, text, {"model": self.name, "prompt": prompts[i]})
        return [o if o is not None else "" for o in out]

    def answer_scored(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[tuple[str, float]]:
        """Greedy answers with the target's confidence (mean token log-probability, see
        :meth:`LvlmAuxiliary.answer_scored`), cached like :meth:`answer`."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        settings = {**self.settings(), "scored": True}
        out: list[tuple[str, float] | None] = [None] * len(images)
        keys: list[str | None] = [None] * len(images)
        todo: list[int] = []
        for i, (image, prompt) in enumerate(zip(images, prompts)):
            if self.cache is not None:
                key = keys[i] = self.cache.key(self.name, image_digest(image), prompt, settings)
                hit = self.cache.get(key)
                if hit is not None:
                    cached, _, confidence = hit.rpartition("\t")
                    out[i] = (cached, float(confidence))
                    continue
            todo.append(i)
        with torch.inference_mode():
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start:start + self.batch_size]
                scored = self.model.answer_scored([images[i] for i in chunk], [prompts[i] for i in chunk],
                                                  max_new_tokens=self.max_new_tokens)
                for i, (text, conf) in zip(chunk, scored):
                    out[i] = (text, conf)
                    stored = keys[i]
                    if self.cache is not None and stored is not None:
                        self.cache.put(stored, f"{text}\t{conf!r}", {"model": self.name, "prompt": prompts[i]})
        return [o if o is not None else ("", float("-inf")) for o in out]
