"""Faithfulness to the official implementation, on the golden data made by running it.

For both backends: raw maps (after min-max) and merged masks from the fixture's own pixel
tensors and token ids, and the annotated images end to end from the image files via the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt import Prompter
from attnprompt.cli import main
from attnprompt.config import get_preset
from attnprompt.geometry import make_view, place_mask
from attnprompt.overlay import blend, mask_to_u8

from .conftest import requires_open_clip

BACKENDS = ["hf", pytest.param("open_clip", marks=requires_open_clip)]


def model_args(golden: Path, backend: str) -> list[str]:
    if backend == "hf":
        return ["--backend", "hf", "--model", str(golden / "hf")]
    return ["--backend", "open_clip", "--model", "golden-tiny",
            "--model-config", str(golden / "open_clip" / "model_cfg.json"),
            "--pretrained", str(golden / "open_clip" / "open_clip_model.safetensors")]


def load_prompter(golden: Path, backend: str) -> Prompter:
    if backend == "hf":
        return Prompter(str(golden / "hf"), backend="hf", preset="official", device="cpu")
    return Prompter("golden-tiny", backend="open_clip", preset="official", device="cpu",
                    model_config=str(golden / "open_clip" / "model_cfg.json"),
                    pretrained=str(golden / "open_clip" / "open_clip_model.safetensors"))


def minmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x - x.min()) / (x.max() - x.min())


def param_overrides(params: dict) -> dict:
    return dict(layers=(params["layer_index"],), comp_layer=params["layer_index"],
                enhance=params["enhance_coe"], kernel=params["kernel_size"],
                interpolation=params["interpolation"].lower(), gray=params["grayscale"], geometry="stretch")


@pytest.fixture(scope="module", params=BACKENDS)
def backend_prompter(request, golden):
    return request.param, load_prompter(golden, request.param)


def test_raw_maps_every_layer_match_official(backend_prompter, golden, golden_manifest):
    _, prompter = backend_prompter
    tokens = torch.from_numpy(np.load(golden / golden_manifest["tokens"]))
    checked = 0
    for k, image in enumerate(golden_manifest["images"]):
        pixels = torch.from_numpy(np.load(golden / image["pixels"]))[None]
        stem = Path(image["file"]).stem
        for j in range(len(golden_manifest["queries"])):
            for layer in golden_manifest["layers_with_maps"]:
                tm, _ = prompter.token_maps_from_tensors(pixels, tokens[j:j + 1], layers=(layer,), comp_layer=layer)
                want_cls = np.load(golden / "maps" / f"{stem}_q{j}_L{layer}_attention_map.npy")
                want_comp = np.load(golden / "maps" / f"{stem}_q{j}_L{layer}_token_map.npy")
                assert np.abs(minmax(tm.psi_cls[0]) - minmax(want_cls)).max() <= 1e-4
                assert np.abs(minmax(tm.psi_comp[0]) - minmax(want_comp)).max() <= 1e-4
                # Same scale as the official raw values: only a per-sample constant offset differs.
                got = tm.psi_cls[0].numpy()
                assert np.abs((got - got.mean()) - (want_cls - want_cls.mean())).max() <= 1e-4 * np.abs(want_cls).max()
                checked += 1
    assert checked == len(golden_manifest["images"]) * len(golden_manifest["queries"]) * len(golden_manifest["layers_with_maps"])


def test_merged_masks_and_pixel_stage_match_official(backend_prompter, golden, golden_manifest):
    _, prompter = backend_prompter
    tokens = torch.from_numpy(np.load(golden / golden_manifest["tokens"]))
    for case in golden_manifest["cases"]:
        config = get_preset("official", **param_overrides(case["params"]))
        pixels = torch.from_numpy(np.load(golden / case["pixels"]))[None]
        j = case["query_index"]
        _, mask = prompter.token_maps_from_tensors(pixels, tokens[j:j + 1], **config.to_dict())
        want = np.load(golden / case["merged_mask"])
        assert np.abs(mask[0].numpy() - want).max() <= 1e-4, case["merged_mask"]

        # The pixel stage alone is exact when fed the official intermediate.
        golden_u8 = np.asarray(Image.open(golden / case["mask_u8"]))
        ours_u8 = mask_to_u8(want)
        assert np.abs(ours_u8.astype(int) - golden_u8).max() <= 1
        image = Image.open(golden / case["image"]).convert("RGB")
        view = make_view(image, "stretch")
        resized = place_mask(golden_u8, view, config.interpolation)
        assert np.array_equal(resized, np.asarray(Image.open(golden / case["mask_resized"])))
        blended = np.asarray(blend(image, resized, config.gray))
        assert np.array_equal(blended, np.asarray(Image.open(golden / case["blended"]).convert("RGB")))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_end_to_end_matches_official_images(backend, golden, golden_manifest, tmp_path):
    rows = []
    for k, image in enumerate(golden_manifest["images"]):
        for j, query in enumerate(golden_manifest["queries"]):
            rows.append({"id": f"img{k}_q{j}", "image": str(golden / image["file"]), "question": query})
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    param_sets = sorted({c["param_set"] for c in golden_manifest["cases"]})
    for p in param_sets:
        params = golden_manifest["param_sets"][p]
        out = tmp_path / f"p{p}"
        code = main([
            "annotate", "--manifest", str(manifest), "--out-dir", str(out), *model_args(golden, backend),
            "--preset", "official", "--geometry", "stretch", "--device", "cpu", "--quiet",
            "--layer", str(params["layer_index"]), "--comp-layer", str(params["layer_index"]),
            "--enhance", str(params["enhance_coe"]), "--kernel", str(params["kernel_size"]),
            "--interpolation", params["interpolation"], "--gray", str(params["grayscale"]),
        ])
        assert code == 0
        differing = total = 0
        for case in (c for c in golden_manifest["cases"] if c["param_set"] == p):
            got = np.asarray(Image.open(out / f"img{case['image_index']}_q{case['query_index']}.png").convert("RGB")).astype(int)
            want = np.asarray(Image.open(golden / case["blended"]).convert("RGB")).astype(int)
            assert got.shape == want.shape
            diff = np.abs(got - want)
            assert diff.max() <= 2, (case["blended"], diff.max())
            differing += int((diff > 0).sum())
            total += diff.size
        # The official output is itself only defined up to 8-bit truncation flips of cells whose
        # value sits on an integer boundary (its batch-6 and batch-1 runs differ that way), so the
        # share of differing values is bounded over the whole set, as in the fixture's README.
        assert differing / total < 0.005, (p, differing / total)
