"""Pictures for people: the heatmap with its colour bar, and the original | heatmap | prompt figure.

The heatmap is :func:`attnprompt.overlay.heatmap` (the mask in the "jet" colormap at 50% over
the image); the colour bar says what its colours mean: the mask value, 1 where the image is kept
as it is and 0 where it fades fully to the preset's gray level. Rendering uses matplotlib's Agg
backend (no display needed).
"""

from __future__ import annotations

import io
import textwrap
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from .prompter import Annotation

__all__ = ["heatmap_with_colorbar", "figure", "settings_text", "COLORBAR_LABEL"]

COLORBAR_LABEL = "mask: 1 = kept, 0 = faded to gray"
_MAX_PANEL = 512  # panels are shown at most this many pixels on their long side
_MIN_PANEL = 256  # and small scenes are enlarged (nearest) to at least this


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _panel_size(image: Image.Image, scale: float | None = None) -> tuple[float, float]:
    """Display size in inches at 100 dpi: small scenes enlarged, photos shrunk (or ``scale``)."""
    w, h = image.size
    if scale is None:
        scale = min(_MAX_PANEL / max(w, h), max(1.0, _MIN_PANEL / max(w, h)))
    return w * scale / 100, h * scale / 100


def _to_image(fig: Any) -> Image.Image:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    _pyplot().close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _show(ax: Any, image: Image.Image, title: str) -> None:
    w, h = image.size
    # nearest keeps the pixels of small scenes crisp; photos are shrunk, so smooth them
    ax.imshow(image, interpolation="nearest" if max(w, h) < _MIN_PANEL else "antialiased")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def _colorbar(fig: Any, ax: Any) -> None:
    plt = _pyplot()
    from matplotlib import cm, colors

    bar = fig.colorbar(cm.ScalarMappable(norm=colors.Normalize(0.0, 1.0), cmap=plt.get_cmap("jet")),
                       ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(COLORBAR_LABEL, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def heatmap_with_colorbar(annotation: "Annotation", title: str = "attention map",
                          scale: float | None = None) -> Image.Image:
    """The annotation's heatmap with a colour bar (what each colour of the map means).

    ``scale``: display size relative to the image (default: small scenes enlarged, photos shrunk).
    """
    plt = _pyplot()
    w, h = _panel_size(annotation.original, scale)
    fig, ax = plt.subplots(figsize=(w + 1.3, h + 0.5), layout="constrained")
    _show(ax, annotation.heatmap(), title)
    _colorbar(fig, ax)
    return _to_image(fig)


def settings_text(annotation: "Annotation", model: str | None = None, preset: str | None = None) -> str:
    """One line naming the auxiliary model, the preset and every setting that made the mask."""
    cfg = annotation.config.to_dict()
    if annotation.answer is None:  # a CLIP: the LVLM-only fields did nothing
        for key in ("reduction", "max_new_tokens", "highlight"):
            cfg.pop(key, None)
    elif cfg.get("comp_layer") is None:
        cfg.pop("comp_layer", None)
    layers = cfg.pop("layers", None)
    parts = [f"auxiliary {model}" if model else None, f"preset {preset or 'default'}",
             "layers " + ("family default" if layers is None else ",".join(str(x) for x in layers))]
    parts += [f"{k.replace('_', ' ')} {v}" for k, v in cfg.items() if v is not None and v != {}]
    return "; ".join(p for p in parts if p)


def figure(
    annotation: "Annotation",
    *,
    model: str | None = None,
    preset: str | None = None,
    caption: str | None = None,
) -> Image.Image:
    """original | heatmap (with a colour bar) | prompt image, captioned with the question and settings.

    For an LVLM auxiliary its own answer is part of the caption.
    """
    plt = _pyplot()
    w, h = _panel_size(annotation.original)
    fig, axes = plt.subplots(1, 3, figsize=(3 * w + 1.6, h + 1.5), layout="constrained")
    _show(axes[0], annotation.original, "original")
    _show(axes[1], annotation.heatmap(), "attention map")
    _colorbar(fig, axes[1])
    _show(axes[2], annotation.image, "prompt (what the target sees)")
    if caption is None:
        lines = [f"question: {annotation.query}"]
        if annotation.answer is not None:
            lines.append(f"auxiliary's own answer: {annotation.answer}")
        lines.append(settings_text(annotation, model, preset))
        caption = "\n".join(textwrap.fill(line, width=int(3 * w * 100 / 6.5)) for line in lines)
    fig.supxlabel(caption, fontsize=9, ha="left", x=0.01)
    return _to_image(fig)
