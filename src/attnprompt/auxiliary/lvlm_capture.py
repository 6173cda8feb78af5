"""Capture, during generation, the attention of the last query position to the image tokens.

Only the chosen decoder layers are touched, and only through transformers' own extension point:
an attention function registered in ``AttentionInterface`` that records what it needs and then
calls the implementation the model already uses (SDPA, flash, eager...). The layer's attention
module gets a private copy of its config naming that function; the model-level config, and so
the attention-mask construction, are unchanged. The function receives post-RoPE queries and the
full (cached) keys, so one query row suffices: ``[B, heads, keys]`` per call, never
``[heads, seq, seq]``, and no ``output_attentions``.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

__all__ = ["CAPTURE_IMPLEMENTATION", "AttentionCapture", "reduce_spans"]

CAPTURE_IMPLEMENTATION = "attnprompt_capture"


def reduce_spans(logits: torch.Tensor, spans: Sequence[tuple[int, int]], reduction: str) -> torch.Tensor:
    """Last-query logits ``[B, heads, keys]`` (mask applied) -> map values ``[B, n]``, for spans
    of one length ``n`` (``[start, end)`` key positions, one per sample).

    ``official``: softmax of the scores over the image span only, mean over heads.
    ``paper``: softmax over all keys, restricted to the image span, mean over heads.
    """
    starts = torch.tensor([start for start, _ in spans], device=logits.device)
    length = spans[0][1] - spans[0][0]
    index = (starts[:, None] + torch.arange(length, device=logits.device))[:, None, :]  # [B, 1, n]
    index = index.expand(-1, logits.shape[1], -1)  # [B, H, n]
    if reduction == "official":
        return logits.gather(-1, index).softmax(dim=-1).mean(dim=1)
    return logits.softmax(dim=-1).gather(-1, index).mean(dim=1)


@dataclass
class AttentionCapture:
    """Context manager recording, per layer and per forward call, each sample's map values.

    Attributes:
        modules: layer index -> the decoder layer's attention module (needs ``layer_idx``).
        spans: per sample, the ``[start, end)`` key positions of its image tokens (fixed for
            the whole generation: cached keys keep their positions).
        reduction: ``official`` or ``paper`` (see :func:`reduce_spans`).
        records: layer index -> one entry per forward call, indexable by sample (``entry[i]`` is
            sample ``i``'s ``[span]`` values).
    """

    modules: dict[int, nn.Module]
    spans: Sequence[tuple[int, int]]
    reduction: str
    records: dict[int, list[torch.Tensor | list[torch.Tensor]]] = field(default_factory=dict)
    _saved: list[tuple[nn.Module, Any]] = field(default_factory=list)

    def __enter__(self) -> "AttentionCapture":
        _register()
        for index, module in self.modules.items():
            self.records[index] = []
            original: Any = module.config
            private = copy.copy(original)
            private._attn_implementation_internal = CAPTURE_IMPLEMENTATION
            module.config = private
            setattr(module, "_attnprompt_capture", (self, index, original._attn_implementation or "eager"))
            self._saved.append((module, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for module, original in self._saved:
            module.config = original
            del module._attnprompt_capture
        self._saved.clear()

    def record(self, index: int, module: nn.Module, query: torch.Tensor, key: torch.Tensor,
               attention_mask: torch.Tensor | None, scaling: float | None) -> None:
        """``query`` ``[B, H, q, d]`` (post-RoPE), ``key`` ``[B, Hkv, k, d]`` (all cached keys)."""
        b, heads, _, dim = query.shape
        kv_heads, keys = key.shape[1], key.shape[2]
        groups = heads // kv_heads
        scale = scaling if scaling is not None else getattr(module, "scaling", dim**-0.5)
        q_last = query[:, :, -1, :].float().reshape(b, kv_heads, groups, dim)  # [B, Hkv, g, d]
        # grouped-query attention without repeating the keys: [B, Hkv, g, k] -> [B, H, k]
        logits = torch.einsum("bhgd,bhkd->bhgk", q_last, key.float()).reshape(b, heads, keys) * scale
        logits = _apply_mask(logits, attention_mask)
        self.records[index].append(self._reduce(logits))

    def _reduce(self, logits: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """``[B, span]`` in one gather when all spans have one length (LLaVA), else a list of
        ``[span_i]`` (Qwen2-VL images of different sizes)."""
        if len({end - start for start, end in self.spans}) == 1:
            return reduce_spans(logits, self.spans, self.reduction)
        return [reduce_spans(logits[i:i + 1], [span], self.reduction)[0] for i, span in enumerate(self.spans)]


def _apply_mask(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Apply the last query row of the model's attention mask, whatever its format."""
    if mask is None:  # causal only: the last query sees every key
        return logits
    keys = logits.shape[-1]
    if mask.dim() == 2:  # [B, k] padding mask (flash-style), 1 = attend
        row = mask[:, None, -keys:].bool()
    else:  # [B, 1 or H, q, k]
        row = mask[:, :, -1, :keys]
    if row.dtype == torch.bool:
        return logits.masked_fill(~row, float("-inf"))
    return logits + row.float()


def _eager_for(module: nn.Module) -> Callable:
    """The eager attention function of the module's own modeling file."""
    return getattr(sys.modules[type(module).__module__], "eager_attention_forward")


def _capture_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs: Any) -> Any:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    capture, index, inner = getattr(module, "_attnprompt_capture")
    with torch.no_grad():
        capture.record(index, module, query, key, attention_mask, kwargs.get("scaling"))
    implementation = ALL_ATTENTION_FUNCTIONS.get_interface(inner, _eager_for(module))
    return implementation(module, query, key, value, attention_mask, **kwargs)


_REGISTERED = False


def _register() -> None:
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface

        AttentionInterface.register(CAPTURE_IMPLEMENTATION, _capture_forward)
        _REGISTERED = True
