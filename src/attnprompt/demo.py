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
from typing import Any, Callable

import torch
from PIL import Image

from .errors import AttnPromptError
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
    target_model = load_auxiliary(target, kind="lvlm", device=device)
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
                         "truth": q.answer, "kind": q.kind})

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

    results = []
    for i, (row, ca, la) in enumerate(zip(rows, clip_anns, lvlm_anns)):
        pictures = {
            "original": row["image"],
            "clip heatmap": ca.heatmap(),
            "clip prompt": ca.image,
            "llava heatmap": la.heatmap(),
            "llava prompt": la.image,
        }
        files = {}
        for name, picture in pictures.items():
            fname = f"{i:02d}_{name.replace(' ', '_')}.png"
            _save_enlarged(picture, folder / fname)
            files[name] = fname
        results.append({
            "scene_seed": row["scene"], "size": row["size"], "kind": row["kind"], "question": row["query"],
            "truth": row["truth"], "answer_original": on_original[i], "answer_clip_prompt": on_clip[i],
            "answer_llava_prompt": on_lvlm[i], "llava_own_answer": la.answer, "pictures": files,
        })
    atomic_write_text(folder / "results.json", json.dumps(results, indent=1) + "\n")
    index = folder / "index.html"
    atomic_write_text(index, _html(results, clip, target))
    return index.resolve()


def _save_enlarged(image: Image.Image, path: Path) -> None:
    w, h = image.size
    atomic_save_image(image.resize((w * SCALE, h * SCALE), Image.Resampling.NEAREST), path)


def _mark(answer: str, truth: str) -> str:
    ok = answer.strip().lower() == truth
    return f'<span class="{"ok" if ok else "bad"}">{html.escape(answer or "(empty)")} {"&#10003;" if ok else "&#10007;"}</span>'


def _html(results: list[dict[str, Any]], clip: str, target: str) -> str:
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
            f'<div class="row">{pics}</div></section>'
        )
    correct = {k: sum(r[k].strip().lower() == r["truth"] for r in results)
               for k in ("answer_original", "answer_clip_prompt", "answer_llava_prompt")}
    n = len(results)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>attnprompt demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
.row {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 0.85em; color: #555; text-align: center; }}
img {{ image-rendering: pixelated; border: 1px solid #ccc; }}
.ok {{ color: #17803d; font-weight: 600; }} .bad {{ color: #b42318; font-weight: 600; }}
section {{ margin-bottom: 2em; }}
</style></head><body>
<h1>Attention prompting on image: offline demo</h1>
<p>Auxiliary models <code>{html.escape(clip)}</code> (CLIP) and <code>{html.escape(target)}</code> (LLaVA),
target model <code>{html.escape(target)}</code>; all three trained on the synthetic shapes world and shipped in
the package. A prompt keeps the region the query is about and darkens (CLIP preset) or grays (LVLM preset) the
rest. Correct answers: original {correct['answer_original']}/{n}, CLIP prompt {correct['answer_clip_prompt']}/{n},
LLaVA prompt {correct['answer_llava_prompt']}/{n}. These tiny models are for scenes of their world, not photos.</p>
{''.join(cells)}
</body></html>
"""
