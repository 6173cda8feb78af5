"""Does attention prompting help the tiny target answer? (prints a table, writes JSON)

    python benchmarks/vqa.py [--scenes 200] [--json vqa.json] [--preset NAME_OR_FILE ...]

The shipped shapes-llava answers questions about cluttered shapes-world scenes (3-5 objects,
double clutter) on the original images and on images annotated with the CLIP auxiliary
(default and official presets) and the LVLM auxiliary; each difference to the original comes
with a paired bootstrap 95% confidence interval.
"""

from __future__ import annotations

import argparse
import json
import sys

from attnprompt.files import atomic_write_text
from attnprompt.shapes.benchmarks import vqa


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="shapes-llava")
    p.add_argument("--clip", default="shapes-clip")
    p.add_argument("--lvlm", default="shapes-llava", help="LVLM auxiliary ('' to skip)")
    p.add_argument("--preset", action="append", default=None,
                   help="CLIP preset name or preset file (repeatable; default: default and official)")
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    result = vqa(a.target, a.clip, a.lvlm or None, n_scenes=a.scenes, seed=a.seed,
                 presets=tuple(a.preset or ("default", "official")),
                 progress=lambda m: print(f"... {m}", file=sys.stderr, flush=True))
    rows = result["conditions"]
    kinds = list(next(iter(rows.values()))["per_kind"])
    print(f"\n{result['settings']['target']} on {a.scenes} cluttered scenes ({rows['original']['n']} questions)")
    print(f"{'condition':18s} {'accuracy':>9s} " + " ".join(f"{k:>11s}" for k in kinds)
          + f"  {'diff vs original [95% CI]':>30s} {'changed':>8s}")
    for name, row in rows.items():
        per = " ".join(f"{row['per_kind'].get(k, float('nan')):11.3f}" for k in kinds)
        cmp = row.get("vs_original")
        extra = (f"  {cmp['diff']:+.3f} [{cmp['ci'][0]:+.3f}, {cmp['ci'][1]:+.3f}]".rjust(32)
                 + f" {cmp['changed']:8d}") if cmp else ""
        print(f"{name:18s} {row['accuracy']:9.3f} {per}{extra}")
    if a.json:
        atomic_write_text(a.json, json.dumps(result, indent=1))
        print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
