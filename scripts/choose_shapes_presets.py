"""Choose the shipped shapes models' own presets on VALIDATION scenes (never the test seed 12345).

    python scripts/choose_shapes_presets.py [--scenes 100] [--seeds 999,2024,31337,4242] [--json out.json]

For each candidate mask setting, the pointing of the final token-space mask (the share of queries
whose top cell lies on the named object; square scenes, colour+shape, colour and shape queries),
next to the raw maps it is made from. CLIP candidates run through the pipeline; LVLM candidates
post-process the raw attention of one pipeline pass with the same function the auxiliary uses
(the answers, and so the attention, do not depend on the post-processing).
The chosen settings go into ``src/attnprompt/shapes/models/*/attnprompt_preset.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from attnprompt import Prompter
from attnprompt import maps as mapmath
from attnprompt.config import get_preset
from attnprompt.shapes.benchmarks import QUERY_KINDS, _Square

CLIP_CANDIDATES = {
    "built-in default (layer -2 + psi_comp)": {},
    "official (kernel 3, saturating)": dict(kernel_grid=None, strict_order=False),
    "all layers + psi_comp": dict(layers="all"),
    "all layers + psi_comp, enhance 1": dict(layers="all", enhance=1.0),
    "last 3 layers, no psi_comp": dict(layers="last3", comp_layer=None),
    "all layers, no psi_comp": dict(layers="all", comp_layer=None),
    "all layers, no psi_comp, official kernel 3": dict(layers="all", comp_layer=None, kernel_grid=None),
    "all layers, no psi_comp, enhance 1": dict(layers="all", comp_layer=None, enhance=1.0),
    "all layers, no psi_comp, enhance 2": dict(layers="all", comp_layer=None, enhance=2.0),
}

LVLM_CANDIDATES = {
    "built-in default (grid kernel, strict order)": {},
    "official (kernel 3, saturating)": dict(kernel_grid=None, strict_order=False),
    "kernel 1, saturating enhance 5": dict(kernel_grid=None, kernel=1, strict_order=False),
    "kernel 1, enhance 1": dict(kernel_grid=None, kernel=1, enhance=1.0, strict_order=False),
    "official kernel 3, strict order": dict(kernel_grid=None, strict_order=True),
    "built-in default with enhance 1": dict(enhance=1.0),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clip", default="shapes-clip")
    p.add_argument("--lvlm", default="shapes-llava")
    p.add_argument("--scenes", type=int, default=100)
    p.add_argument("--seeds", default="999,2024,31337,4242")
    p.add_argument("--json", default=None)
    p.add_argument("--only", default="", help="score only the candidates whose name contains this text")
    a = p.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    if 12345 in seeds:
        p.error("12345 is the test seed: choose on validation seeds")
    t0 = time.time()
    say = lambda msg: print(f"[{time.time() - t0:6.0f}s] {msg}", file=sys.stderr, flush=True)  # noqa: E731

    # the built-in defaults, not the models' own files: those are what this script chooses
    clip = Prompter(a.clip, kind="clip", preset=get_preset("default", kind="clip"), device="cpu")
    lvlm = Prompter(a.lvlm, kind="lvlm", preset=get_preset("default", kind="lvlm"), device="cpu") if a.lvlm else None
    n = clip.auxiliary.num_layers
    layer_sets = {"all": tuple(range(n)), "last3": tuple(range(n))[-3:]}
    result: dict[str, dict] = {}
    for seed in seeds:
        square = _Square.make(clip.auxiliary, a.scenes, seed, QUERY_KINDS)
        with torch.inference_mode():
            say(f"seed {seed}: {len(square.items)} queries, CLIP candidates")
            raw = clip.annotate(square.images, square.texts, batch_size=64, layers=layer_sets["all"], comp_layer=None)
            square.score("raw: psi_cls all layers", [x.psi_cls for x in raw])
            for name, overrides in CLIP_CANDIDATES.items():
                if a.only not in name:
                    continue
                o = dict(overrides)
                if isinstance(o.get("layers"), str):
                    o["layers"] = layer_sets[o["layers"]]
                anns = clip.annotate(square.images, square.texts, batch_size=64, **o)
                square.score(f"clip mask: {name}", [x.mask for x in anns])
            if lvlm is not None:
                say(f"seed {seed}: LVLM attention")
                lanns = lvlm.annotate(square.images, square.texts, batch_size=64)
                square.score("raw: lvlm attention", [x.attention for x in lanns])
                for name, overrides in LVLM_CANDIDATES.items():
                    if a.only not in name:
                        continue
                    cfg = lvlm.config.replace(**overrides)
                    masks = [mapmath.postprocess_single_map(torch.from_numpy(x.attention)[None], enhance_coe=cfg.enhance,
                                                            kernel=cfg.kernel, kernel_grid=cfg.kernel_grid,
                                                            strict_order=cfg.strict_order)[0].numpy() for x in lanns]
                    square.score(f"lvlm mask: {name}", masks)
        result[str(seed)] = square.tally.result()

    names = list(next(iter(result.values())))
    kinds = [*QUERY_KINDS, "all"]
    print("\nChoice: the highest mean pointing; ties (equal to 3 decimals) go to the higher mean mass ratio")
    print(f"\nPointing on validation square scenes ({a.scenes} per seed; seeds {a.seeds}); mean over seeds per kind,"
          " then each seed's 'all', and the mean mass ratio")
    print(f"{'map':58s} " + " ".join(f"{k:>11s}" for k in kinds) + "  " + " ".join(f"{s:>6}" for s in seeds))
    for name in names:
        means = [sum(result[str(s)][name][k]["pointing"] for s in seeds) / len(seeds) for k in kinds]
        per_seed = [result[str(s)][name]["all"]["pointing"] for s in seeds]
        mass = sum(result[str(s)][name]["all"]["mass_ratio"] for s in seeds) / len(seeds)
        print(f"{name:58s} " + " ".join(f"{m:11.4f}" for m in means) + "  " +
              " ".join(f"{v:6.3f}" for v in per_seed) + f"  mass {mass:.2f}")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
