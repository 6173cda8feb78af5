"""``attnprompt demo``: the whole pipeline offline, on shapes-world scenes, as a small HTML report.

For a few scenes of the synthetic world (square and non-square) and a few questions each, the
shipped ``shapes-clip`` and ``shapes-llava`` build attention masks, and ``shapes-llava`` (the
target) answers on the original and on each annotated image. The report shows every picture
(enlarged for screens) with the questions, the true answers and the target's answers.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, cast

import torch
from PIL import Image

from .errors import AttnPromptError

if TYPE_CHECKING:
    from .auxiliary.lvlm import LvlmAuxiliary
from .files import atomic_save_image, atomic_write_text

__all__ = ["run_demo", "DEMO_SCENES"]

DEMO_SCENES: tuple[tuple[int, tuple[int, int]], ...] = ((11, (64, 64)), (23, (64, 64)), (5, (128, 64)), (42, (64, 128)))
"""(seed, (width, height)) of the demo's scenes."""

_KINDS = ("shape", "color", "color+shape", "presence")
SCALE = 4  # pictures are enlarged (nearest) so 64-pixel scenes are visible in a browser


def run_demo(
    out: str | os.PathLike[str] = "attnprompt-demo",
    *,
    clip: str = "shapes-clip",
    target: str = "shapes-llava",
    questions_per_scene: int = 2,
    device: str | None = "cpu",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Run the demo and write ``out/index.html`` (plus pictures and ``results.json``); returns its path."""
    from .auxiliary.dispatch import load_auxiliary
    from .prompter import Prompter
    from .shapes.world import make_scene

    say = progress or (lambda _msg: None)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise AttnPromptError(f"demo output {str(folder)!r} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)

    say(f"loading {clip} and {target}")
    clip_prompter = Prompter(clip, kind="clip", device=device)
    target_model = cast("LvlmAuxiliary", load_auxiliary(target, kind="lvlm", device=device))
    lvlm_prompter = Prompter(target, kind="lvlm", device=device, auxiliary=target_model)

    rows: list[dict[str, Any]] = []
    for seed, size in DEMO_SCENES:
        scene = make_scene(seed, size=size)
        queries = sorted(scene.queries(), key=lambda q: _KINDS.index(q.kind))
        picked, seen = [], set()
        for q in queries:  # one question per kind, in the order above
            if q.kind not in seen and q.target is not None:
                picked.append(q)
                seen.add(q.kind)
            if len(picked) == questions_per_scene:
                break
        for q in picked:
            rows.append({"scene": seed, "size": list(size), "image": scene.image, "query": q.text,
                         "truth": q.answer, "kind": q.kind, "masks": scene.masks, "target": q.target})

    images = [r["image"] for r in rows]
    texts = [r["query"] for r in rows]
    with torch.inference_mode():
        say(f"CLIP masks ({clip})")
        clip_anns = clip_prompter.annotate(images, texts)
        say(f"LVLM masks ({target})")
        lvlm_anns = lvlm_prompter.annotate(images, texts)
        say(f"target answers ({target})")
        on_original = target_model.answer(images, texts, max_new_tokens=4)
        on_clip = target_model.answer([a.image for a in clip_anns], texts, max_new_tokens=4)
        on_lvlm = target_model.answer([a.image for a in lvlm_anns], texts, max_new_tokens=4)

    from .figure import heatmap_with_colorbar

    results = []
    for i, (row, ca, la) in enumerate(zip(rows, clip_anns, lvlm_anns)):
        pictures = {
            "original": row["image"],
            "CLIP map": heatmap_with_colorbar(ca, "CLIP map", scale=SCALE),
            "CLIP prompt": ca.image,
            "LLaVA map": heatmap_with_colorbar(la, "LLaVA map", scale=SCALE),
            "LLaVA prompt": la.image,
        }
        files = {}
        for name, picture in pictures.items():
            fname = f"{i:02d}_{name.replace(' ', '_')}.png"
            if name.endswith("map"):  # already drawn at display size, with its colour bar
                atomic_save_image(picture, folder / fname)
            else:
                _save_enlarged(picture, folder / fname)
            files[name] = fname
        target_mask = row["masks"][row["target"]]
        results.append({
            "scene_seed": row["scene"], "size": row["size"], "kind": row["kind"], "question": row["query"],
            "truth": row["truth"], "answer_original": on_original[i], "answer_clip_prompt": on_clip[i],
            "answer_llava_prompt": on_lvlm[i], "llava_own_answer": la.answer, "pictures": files,
            "clip_on_target": _pointing(ca.pixel_mask, target_mask),
            "llava_on_target": _pointing(la.pixel_mask, target_mask),
        })
    atomic_write_text(folder / "results.json", json.dumps(results, indent=1) + "\n")
    index = folder / "index.html"
    settings = {"clip": _settings(clip_prompter), "llava": _settings(lvlm_prompter)}
    atomic_write_text(index, _html(results, clip, target, settings))
    return index.resolve()


def _pointing(pixel_mask: Any, object_mask: Any) -> dict[str, Any]:
    """Where a mask points, measured: its brightest pixel on the named object or not, and the
    mean mask value (share of brightness kept) on the object and elsewhere."""
    import numpy as np

    m = np.asarray(pixel_mask, dtype=np.float32) / 255.0
    obj = np.asarray(object_mask, dtype=bool)
    peak = np.unravel_index(int(np.argmax(m)), m.shape)
    return {"peak_on_object": bool(obj[peak]), "kept_on_object": round(float(m[obj].mean()), 3) if obj.any() else None,
            "kept_elsewhere": round(float(m[~obj].mean()), 3)}


def _settings(prompter: Any) -> str:
    cfg = prompter.config
    aux = prompter.auxiliary
    if prompter.kind == "clip":
        layers = ", ".join(str(l) for l in aux.clip_layers(cfg))
        comp = "none" if cfg.comp_layer is None else str(cfg.comp_layer)
        return (f"preset <code>default</code>: psi_cls from block(s) {layers} of {aux.num_layers}, complementary "
                f"map from block {comp}, enhance {cfg.enhance:g}, kernel {cfg.kernel}, {cfg.interpolation}, "
                f"gray {cfg.gray}, geometry {cfg.geometry}")
    layers = ", ".join(str(l) for l in aux.layers(cfg))
    return (f"preset <code>default</code>: attention of its own answer at decoder layer(s) {layers} of "
            f"{aux.num_layers} ({cfg.reduction} reduction), enhance {cfg.enhance:g}, kernel {cfg.kernel}, "
            f"{cfg.interpolation}, gray {cfg.gray}, geometry {cfg.geometry}")


def _save_enlarged(image: Image.Image, path: Path) -> None:
    w, h = image.size
    atomic_save_image(image.resize((w * SCALE, h * SCALE), Image.Resampling.NEAREST), path)


def _mark(answer: str, truth: str) -> str:
    ok = answer.strip().lower() == truth
    return f'<span class="{"ok" if ok else "bad"}">{html.escape(answer or "(empty)")} {"&#10003;" if ok else "&#10007;"}</span>'


README_SECTION = "the-shapes-world-offline-models-and-measurable-quality"


def _readme_link() -> str:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    target = readme.as_uri() if readme.is_file() else "https://pypi.org/project/attnprompt/"
    return f"{target}#{README_SECTION}"


def _explain(results: list[dict[str, Any]], correct: dict[str, int], target: str) -> str:
    """One paragraph from what was measured in this run (nothing assumed)."""
    n = len(results)

    def flips(key: str) -> tuple[int, int]:
        ok = [r["answer_original"].strip().lower() == r["truth"] for r in results]
        now = [r[key].strip().lower() == r["truth"] for r in results]
        return sum(not a and b for a, b in zip(ok, now)), sum(a and not b for a, b in zip(ok, now))

    def kept(aux: str) -> str:
        on = [r[f"{aux}_on_target"]["kept_on_object"] for r in results if r[f"{aux}_on_target"]["kept_on_object"] is not None]
        off = [r[f"{aux}_on_target"]["kept_elsewhere"] for r in results]
        return f"{100 * sum(on) / max(1, len(on)):.0f}% of the named object's brightness and {100 * sum(off) / max(1, n):.0f}% of the rest"

    peak = {a: sum(r[f"{a}_on_target"]["peak_on_object"] for r in results) for a in ("clip", "llava")}
    cf, cw = flips("answer_clip_prompt")
    lf, lw = flips("answer_llava_prompt")
    return (
        f"<p><b>What happened, measured on these {n} questions.</b> {html.escape(target)} answered "
        f"{correct['answer_original']}/{n} correctly on the originals, {correct['answer_clip_prompt']}/{n} on the CLIP "
        f"prompts ({cf} fixed, {cw} broken) and {correct['answer_llava_prompt']}/{n} on its own LLaVA prompts "
        f"({lf} fixed, {lw} broken). A prompt can only help when it keeps what the question is about: the brightest "
        f"point of the CLIP mask lies on the named object in {peak['clip']}/{n} questions, that of the LLaVA mask in "
        f"{peak['llava']}/{n}; on average the CLIP prompt keeps {kept('clip')}, the LLaVA prompt {kept('llava')}. "
        f"Where the named object is dimmed, the target has less to see than on the original. These are tiny models "
        f"of a synthetic world and a handful of questions, so this is a demonstration of the pipeline, not a "
        f"measurement of the method; <a href=\"{html.escape(_readme_link())}\">the README's shapes-world section</a> "
        f"reports how often the maps hit the named object over hundreds of held-out scenes.</p>"
    )


def _html(results: list[dict[str, Any]], clip: str, target: str, settings: dict[str, str]) -> str:
    cells = []
    for r in results:
        pics = "".join(
            f'<figure><img src="{html.escape(f)}" alt="{html.escape(n)}"><figcaption>{html.escape(n)}</figcaption></figure>'
            for n, f in r["pictures"].items()
        )
        cells.append(
            f"<section><h2>{html.escape(r['question'])}</h2>"
            f"<p>truth: <b>{html.escape(r['truth'])}</b> &middot; {html.escape(target)} answers on the original: "
            f"{_mark(r['answer_original'], r['truth'])} &middot; on the CLIP prompt: "
            f"{_mark(r['answer_clip_prompt'], r['truth'])} &middot; on its own (LLaVA) prompt: "
            f"{_mark(r['answer_llava_prompt'], r['truth'])}</p>"
            f"<p class=aux>the LLaVA auxiliary's own answer, whose attention made the LLaVA map: "
            f"<i>{html.escape(r['llava_own_answer'] or '(empty)')}</i></p>"
            f'<div class="row">{pics}</div></section>'
        )
    correct = {k: sum(r[k].strip().lower() == r["truth"] for r in results)
               for k in ("answer_original", "answer_clip_prompt", "answer_llava_prompt")}
    n = len(results)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>attnprompt demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }}
.row {{ display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-end; }}
figure {{ margin: 0; }} figcaption {{ font-size: 0.85em; color: #555; text-align: center; }}
img {{ image-rendering: pixelated; border: 1px solid #ccc; }}
.ok {{ color: #17803d; font-weight: 600; }} .bad {{ color: #b42318; font-weight: 600; }}
.aux {{ color: #444; }} section {{ margin-bottom: 2em; }} dt {{ font-weight: 600; }}
</style></head><body>
<h1>Attention prompting on image: offline demo</h1>
<p>Auxiliary models <code>{html.escape(clip)}</code> (CLIP) and <code>{html.escape(target)}</code> (LLaVA),
target model <code>{html.escape(target)}</code>; all trained on the synthetic shapes world and shipped in the
package. Correct answers: original {correct['answer_original']}/{n}, CLIP prompt {correct['answer_clip_prompt']}/{n},
LLaVA prompt {correct['answer_llava_prompt']}/{n}.</p>
{_explain(results, correct, target)}
<h3>The panels of each question</h3>
<dl>
<dt>original</dt><dd>the scene as the target sees it without a prompt (enlarged 4x).</dd>
<dt>CLIP map</dt><dd>the mask made by <code>{html.escape(clip)}</code> with the {settings['clip']}, laid over the
scene in the colour bar's colours: red is kept as it is (mask 1), blue fades fully to the gray level (mask 0).</dd>
<dt>CLIP prompt</dt><dd>the scene with that mask applied: what the target is shown instead of the original.</dd>
<dt>LLaVA map</dt><dd>the mask made by <code>{html.escape(target)}</code> as auxiliary, with the
{settings['llava']}: where its answer (shown above the pictures) looked.</dd>
<dt>LLaVA prompt</dt><dd>the scene with that mask applied (faded towards gray 200, as the official LLaVA code).</dd>
</dl>
{''.join(cells)}
</body></html>
"""
