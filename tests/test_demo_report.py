"""The offline demo's report explains itself: what each panel is, which settings made it, the LVLM
auxiliary's own answer, a paragraph of measured facts, a legend on every heatmap."""

from __future__ import annotations

import json
import re

from PIL import Image

from attnprompt.demo import README_SECTION, run_demo
from tests.conftest import REPO


def test_demo_report(tmp_path) -> None:
    index = run_demo(tmp_path / "demo", device="cpu")
    page = index.read_text()
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    n = len(results)
    for panel in ("original", "CLIP map", "CLIP prompt", "LLaVA map", "LLaVA prompt"):
        assert f"<dt>{panel}</dt>" in page
    # the shipped models' own presets (their attnprompt_preset.json): all 6 CLIP blocks, no psi_comp
    assert "psi_cls from block(s) 0, 1, 2, 3, 4, 5 of 6" in page and "map from block none" in page
    assert "decoder layer(s) 2 of 4" in page
    for r in results:
        assert f"<i>{r['llava_own_answer']}</i>" in page
        original = Image.open(tmp_path / "demo" / r["pictures"]["original"])
        for heat in ("CLIP map", "LLaVA map"):  # drawn with a colour bar beside the map
            assert Image.open(tmp_path / "demo" / r["pictures"][heat]).width > original.width
    # the paragraph states what this run measured
    right = sum(r["answer_original"].strip().lower() == r["truth"] for r in results)
    peak = sum(r["clip_on_target"]["peak_on_object"] for r in results)
    assert f"answered {right}/{n} correctly on the originals" in page
    assert f"the brightest point of the CLIP mask lies on the named object in {peak}/{n} questions" in page
    # and links the README section, which exists
    assert f"#{README_SECTION}" in page
    headings = [re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^## (.+)$", (REPO / "README.md").read_text(), flags=re.M)]
    assert README_SECTION in headings
