"""Localisation quality of every map on the shapes world (prints tables, writes JSON).

    python benchmarks/localization.py [--scenes 200] [--json localization.json]

Pointing / mass ratio / rank-1 of psi_cls (per layer, last k, all), psi_comp (inverted or not),
the official and built-in default preset masks, the model's own default mask (its
attnprompt_preset.json) and the LVLM attention map and masks against uniform, centre and
query-agnostic baselines on square scenes; then all-layer psi_cls and the default masks on square,
2:1 and 1:2 scenes under the stretch, aligned, tiled and auto geometries, with their cost.
"""

from __future__ import annotations

import argparse
import json
import sys

from attnprompt.files import atomic_write_text
from attnprompt.shapes.benchmarks import GEOMETRY_MAPS, QUERY_KINDS, geometry_table, localization


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clip", default="shapes-clip")
    p.add_argument("--lvlm", default="shapes-llava", help="LVLM auxiliary ('' to skip)")
    p.add_argument("--scenes", type=int, default=200, help="scenes per aspect ratio")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--json", default=None, help="write the full result here")
    p.add_argument("--geometry-maps", default=",".join(GEOMETRY_MAPS),
                   help=f"comma-separated maps compared across geometries (default: {','.join(GEOMETRY_MAPS)})")
    a = p.parse_args(argv)
    result = localization(a.clip, a.lvlm or None, n_scenes=a.scenes, seed=a.seed,
                          geometry_maps=[m.strip() for m in a.geometry_maps.split(",") if m.strip()],
                          progress=lambda m: print(f"... {m}", file=sys.stderr, flush=True))
    for kind in ("clip", "lvlm"):
        if f"{kind}_default" in result["settings"]:
            cfg = result["settings"][f"{kind}_default"]
            print(f"{kind} model default: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))

    kinds = [*QUERY_KINDS, "all"]
    print(f"\nSquare scenes ({a.scenes}), pointing per query kind | mass ratio, rank-1 (all kinds)")
    print(f"{'map':28s} " + " ".join(f"{k:>11s}" for k in kinds) + f" {'mass':>6s} {'rank-1':>6s}")
    for name, per_kind in result["square"].items():
        row = " ".join(f"{per_kind[k]['pointing']:11.3f}" if k in per_kind else f"{'-':>11s}" for k in kinds)
        print(f"{name:28s} {row} {per_kind['all']['mass_ratio']:6.2f} {per_kind['all']['rank1']:6.3f}")

    geo = result["geometry"]
    for map_name in a.geometry_maps.split(","):
        print(f"\nGeometry, {map_name}: pointing (all kinds); share of the square score")
        table = geometry_table(result, map_name)
        cols = list(next(iter(table.values())))
        print(f"{'geometry':10s} " + " ".join(f"{c:>14s}" for c in cols))
        for geometry, row in table.items():
            print(f"{geometry:10s} " + " ".join(f"{row[c]:14.3f}" for c in cols))
    print("\nCost per geometry (forwards per image; seconds per query, CPU) and the best pointing a map on that grid"
          " could reach (oracle)")
    for aspect, per_geo in geo.items():
        for geometry, info in per_geo.items():
            print(f"{aspect:7s} {geometry:8s} forwards {info['forwards_per_image']}  "
                  f"{info['seconds_per_query'] * 1000:7.2f} ms/query  oracle {info['oracle_pointing']:.3f}")
    if a.json:
        atomic_write_text(a.json, json.dumps(result, indent=1))
        print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
