"""CLIP attribution shared by every backend: decomposing the image embedding over tokens.

The vision tower's residual stream is a sum: embedding term + every block's attention output +
every block's MLP output. With LN_post linearised (the final CLS token's mean and std treated as
constants) the image embedding ``I_hat = Proj(LN_post(Z^L_cls))`` becomes a sum of per-term
projections, and a block's attention output at the CLS position splits over key tokens::

    eta^l_t = sum_h A^{l,h}_{cls,t} V^{l,h}_t W_O^{l,h} + B_O^l / T      (T tokens)

``psi_cls[t] = sum_{l in layers} <Proj(LN_lin(eta^l_t)), T_hat>`` and
``psi_comp[t] = <Proj(LN_lin(Z^{comp_layer}_t)), T_hat>`` (raw similarity; the mask inverts it).

Cost: one image forward and one text forward. At each chosen block a forward hook on the
attention's input recomputes only the CLS query row and the per-token contributions, with the
text direction folded into the value and output weights (:func:`cls_attention_scores`), so the
largest extra tensor is ``[B, T, heads]``; no ``[T, T]`` tensor exists.
The model keeps its own attention implementation (SDPA, flash, eager) for the forward itself.

A backend describes its tower with :class:`ClipTower`; everything else lives here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import resolve_layer
from ..errors import AttnPromptError

__all__ = [
    "AttentionWeights",
    "Readout",
    "ClipTower",
    "TokenMaps",
    "cls_attention_contributions",
    "cls_attention_scores",
    "compute_token_maps",
]


@dataclass(frozen=True)
class AttentionWeights:
    """One block's attention parameters in ``nn.Linear`` layout (``y = x @ W.T + b``)."""

    w_q: torch.Tensor  # [D, D]
    b_q: torch.Tensor | None  # [D]
    w_k: torch.Tensor
    b_k: torch.Tensor | None
    w_v: torch.Tensor
    b_v: torch.Tensor | None
    w_o: torch.Tensor  # [D, D]
    b_o: torch.Tensor | None
    num_heads: int
    layer_scale: torch.Tensor | None = None  # [D] (open_clip LayerScale), applied after W_O

    def to(self, dtype: torch.dtype) -> "AttentionWeights":
        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(dtype)

        def cast_optional(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else cast(t)

        return AttentionWeights(
            cast(self.w_q), cast_optional(self.b_q), cast(self.w_k), cast_optional(self.b_k), cast(self.w_v),
            cast_optional(self.b_v), cast(self.w_o), cast_optional(self.b_o), self.num_heads,
            cast_optional(self.layer_scale),
        )


@dataclass(frozen=True)
class Readout:
    """LN_post and the projection that turn the final CLS residual into the image embedding."""

    ln_weight: torch.Tensor | None  # [D]
    ln_bias: torch.Tensor | None  # [D]
    eps: float
    proj: torch.Tensor  # [D, E]: embedding = ln_post(x) @ proj

    def stats(self, final_cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LN_post's mean and std of the final CLS residual ``[B, D]`` -> ``([B], [B])``."""
        x = final_cls.float()
        mu = x.mean(dim=-1)
        sigma = torch.sqrt(x.var(dim=-1, unbiased=False) + self.eps)
        return mu, sigma

    def linear(self, x: torch.Tensor, share: float | torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``Proj(LN_lin(x))`` for one additive part ``x`` ``[B, N, D]`` of the final CLS residual.

        ``share`` is the part's share of LN_post's centring and bias, so that the shares of all
        parts sum to one and the projected parts sum to the image embedding exactly.
        """
        gamma = self._gamma(x)
        beta = self._beta(x)
        centred = x.float() - (mu[:, None, None] * share)
        return ((gamma * centred) / sigma[:, None, None] + beta * share) @ self.proj.float()

    def _gamma(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[-1], device=x.device) if self.ln_weight is None else self.ln_weight.float()

    def _beta(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[-1], device=x.device) if self.ln_bias is None else self.ln_bias.float()


def cls_attention_contributions(hidden: torch.Tensor, attn: AttentionWeights) -> torch.Tensor:
    """Split one block's attention output at the CLS position over key tokens.

    ``hidden``: ``[B, T, D]`` the attention's input (after the block's first LayerNorm), CLS at 0.
    Returns ``eta``: ``[B, T, D]`` with ``eta.sum(1)`` equal to the block's attention output at
    CLS (out-proj bias shared evenly over the ``T`` keys, layer scale applied).
    """
    b, t, d = hidden.shape
    heads = attn.num_heads
    head_dim = d // heads
    x = hidden.to(attn.w_q.dtype)

    def linear(inp: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return nn.functional.linear(inp, w, bias)

    q_cls = linear(x[:, 0], attn.w_q, attn.b_q).view(b, heads, head_dim)  # [B, H, d]
    keys = linear(x, attn.w_k, attn.b_k).view(b, t, heads, head_dim)  # [B, T, H, d]
    values = linear(x, attn.w_v, attn.b_v).view(b, t, heads, head_dim)  # [B, T, H, d]
    logits = torch.einsum("bhd,bthd->bht", q_cls, keys) / math.sqrt(head_dim)  # [B, H, T]
    probs = logits.softmax(dim=-1)
    weighted = values * probs.permute(0, 2, 1).unsqueeze(-1)  # [B, T, H, d]
    eta = weighted.reshape(b, t, d) @ attn.w_o.T  # [B, T, D]: sum_h A_h,t V_h,t W_O,h
    if attn.b_o is not None:
        eta = eta + attn.b_o / t
    if attn.layer_scale is not None:
        eta = eta * attn.layer_scale
    return eta


def cls_attention_scores(hidden: torch.Tensor, attn: AttentionWeights, direction: torch.Tensor) -> torch.Tensor:
    """``<eta_t, direction_b>`` for every token, without forming ``eta`` (the fast path).

    ``hidden``: ``[B, T, D]`` attention input; ``direction``: ``[D, B]`` one vector per sample.
    Equal to ``einsum("btd,db->bt", cls_attention_contributions(hidden, attn), direction)``, but
    the direction is folded into the value and output weights, so only ``[B, T, H]`` tensors are
    formed: ``<A_ht V_ht W_O,h, s> = A_ht (x_t . W_v,h^T r_h + b_v,h . r_h)`` with ``r = W_O^T s``.
    The key bias shifts every logit of a head equally, so it drops out of the softmax.
    """
    b, t, d = hidden.shape
    heads = attn.num_heads
    head_dim = d // heads
    x = hidden.to(attn.w_q.dtype)
    s = direction.to(x.dtype)  # [D, B]
    q_cls = nn.functional.linear(x[:, 0], attn.w_q, attn.b_q).view(b, heads, head_dim)  # [B, H, d]
    key_dirs = torch.einsum("bhj,hjD->bDh", q_cls, attn.w_k.view(heads, head_dim, d)) / math.sqrt(head_dim)
    probs = torch.bmm(x, key_dirs).softmax(dim=1)  # [B, T, H]: CLS attention over keys, per head
    if attn.layer_scale is not None:
        s = s * attn.layer_scale[:, None]
    r = (attn.w_o.T @ s).T.reshape(b, heads, head_dim)  # [B, H, d]
    value_dirs = torch.einsum("bhj,hjD->bDh", r, attn.w_v.view(heads, head_dim, d))  # [B, D, H]
    per_head = torch.bmm(x, value_dirs)  # [B, T, H]
    if attn.b_v is not None:
        per_head = per_head + torch.einsum("bhj,hj->bh", r, attn.b_v.view(heads, head_dim))[:, None]
    score = (probs * per_head).sum(-1)  # [B, T]
    if attn.b_o is not None:
        score = score + (attn.b_o @ s)[:, None] / t
    return score


@dataclass
class ClipTower:
    """What a backend tells the shared code about its vision tower.

    Attributes:
        num_layers: number of residual blocks.
        attention_input: module ``l`` whose forward output is block ``l``'s attention input
            (the block's first LayerNorm).
        block: module ``l`` whose forward output is the residual stream after block ``l``.
        attention_weights: block ``l``'s attention parameters.
        readout: LN_post and projection.
        encode_image: ``pixel_values -> (image_embeds [B, E], final_cls_residual [B, D])``.
        to_btd: reorders a hooked activation to ``[B, T, D]`` (towers that run sequence-first).
    """

    num_layers: int
    attention_input: Callable[[int], nn.Module]
    block: Callable[[int], nn.Module]
    attention_weights: Callable[[int], AttentionWeights]
    readout: Readout
    encode_image: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    to_btd: Callable[[torch.Tensor], torch.Tensor] = lambda t: t


@dataclass
class TokenMaps:
    """Token-space maps for a batch.

    Attributes:
        psi_cls: ``[B, P, P]`` float32, CLS-attention attribution summed over the chosen layers.
        psi_comp: ``[B, P, P]`` float32 raw text similarity of the output tokens, or ``None``.
        layers: the resolved (non-negative) block indices behind ``psi_cls``.
        comp_layer: the resolved block index behind ``psi_comp``.
    """

    psi_cls: torch.Tensor
    psi_comp: torch.Tensor | None
    layers: tuple[int, ...]
    comp_layer: int | None


def _first(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output  # type: ignore[return-value]


def compute_token_maps(
    tower: ClipTower,
    pixel_values: torch.Tensor,
    text_embeds: torch.Tensor,
    layers: tuple[int, ...],
    comp_layer: int | None,
) -> TokenMaps:
    """Run the image forward once with hooks at the chosen blocks and build both maps.

    ``pixel_values``: ``[B, 3, S, S]``; ``text_embeds``: ``[B, E]`` (one query per image).
    """
    num = tower.num_layers
    cls_layers = tuple(sorted({resolve_layer(l, num, "layer") for l in layers}))
    comp = None if comp_layer is None else resolve_layer(comp_layer, num, "comp layer")
    if pixel_values.shape[0] != text_embeds.shape[0]:
        raise AttnPromptError(f"{pixel_values.shape[0]} images but {text_embeds.shape[0]} queries")

    t_hat = nn.functional.normalize(text_embeds.float(), dim=-1)  # [B, E]
    proj_t = tower.readout.proj.float() @ t_hat.T  # [D, B]: projection folded into the text side
    gamma = tower.readout._gamma(t_hat)
    # Per-token scores are <((gamma * x) / sigma) @ Proj, t_hat>; the constant LN terms are added
    # once the final statistics are known. Storing scores ([B, T]) instead of vectors keeps the
    # extra memory at a few kilobytes per image.
    scaled_text = gamma[:, None] * proj_t  # [D, B]
    weights_cache: dict[int, AttentionWeights] = {}
    captured_cls: dict[int, torch.Tensor] = {}
    captured_comp: dict[int, torch.Tensor] = {}

    def score(x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, T]
        return torch.einsum("btd,db->bt", x.float(), scaled_text.to(x.device))

    def attention_hook(index: int) -> Callable:
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            h = tower.to_btd(_first(output))
            if index not in weights_cache:
                weights_cache[index] = tower.attention_weights(index).to(torch.float32)
            captured_cls[index] = cls_attention_scores(h.float(), weights_cache[index], scaled_text.to(h.device))
        return hook

    def block_hook(index: int) -> Callable:
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            captured_comp[index] = score(tower.to_btd(_first(output)))
        return hook

    handles = [tower.attention_input(l).register_forward_hook(attention_hook(l)) for l in cls_layers]
    if comp is not None:
        handles.append(tower.block(comp).register_forward_hook(block_hook(comp)))
    try:
        with torch.no_grad():
            image_embeds, final_cls = tower.encode_image(pixel_values)
    finally:
        for handle in handles:
            handle.remove()

    mu, sigma = tower.readout.stats(final_cls)  # [B], [B]
    norm = image_embeds.float().norm(dim=-1)  # [B]
    readout = tower.readout
    g_t = (gamma @ proj_t).to(mu.device)  # [B]: <gamma @ Proj, t_hat>
    beta = readout._beta(t_hat)
    b_t = (beta @ proj_t).to(mu.device)  # [B]: <beta @ Proj, t_hat>
    # 2L + 1 additive parts (embedding, L attentions, L MLPs); an attention part is split
    # evenly over its T tokens. (The official code counts 2L - 1: only a constant offset.)
    parts = 2 * num + 1

    def finish(raw: torch.Tensor, share: float) -> torch.Tensor:  # [B, T] -> [B, T]
        value = (raw - mu[:, None] * share * g_t[:, None]) / sigma[:, None] + share * b_t[:, None]
        return value / norm[:, None]

    tokens = next(iter(captured_cls.values())).shape[1]
    psi_cls = finish(captured_cls[cls_layers[0]], 1.0 / (parts * tokens))
    for l in cls_layers[1:]:  # summed in layer order, as always (float sums depend on the order)
        psi_cls = psi_cls + finish(captured_cls[l], 1.0 / (parts * tokens))
    psi_comp = None if comp is None else finish(captured_comp[comp], (2 * comp + 3) / parts)
    return TokenMaps(
        psi_cls=_to_grid(psi_cls[:, 1:]),
        psi_comp=None if psi_comp is None else _to_grid(psi_comp[:, 1:]),
        layers=cls_layers,
        comp_layer=comp,
    )


def _to_grid(patch_scores: torch.Tensor) -> torch.Tensor:
    """``[B, P*P]`` patch scores (row-major, CLS dropped) -> ``[B, P, P]``."""
    b, n = patch_scores.shape
    side = math.isqrt(n)
    if side * side != n:
        raise AttnPromptError(f"{n} patch tokens do not form a square grid; only square ViT inputs are supported")
    return patch_scores.reshape(b, side, side).contiguous()
