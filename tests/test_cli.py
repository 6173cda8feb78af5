"""The command line: the common case, outputs, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnprompt.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def photo(path: Path, size=(48, 32), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = [l for l in err.strip().splitlines() if not l.startswith(("Loading weights", "warning:"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_single_image_all_formats_and_maps(capsys, tmp_path, tiny_clip_dir):
    src = photo(tmp_path / "in.png")
    for fmt, mode in (("rgb", "RGB"), ("rgba", "RGBA"), ("heatmap", "RGB")):
        out = tmp_path / f"out_{fmt}.png"
        code, stdout, _ = run(capsys, "annotate", str(src), "--query", "what is red?", "-o", str(out),
                              "--model", str(tiny_clip_dir), "--device", "cpu", "--format", fmt, "--save-maps")
        assert code == 0 and str(out) in stdout
        img = Image.open(out)
        assert img.mode == mode and img.size == (48, 32)
    maps = np.load(tmp_path / "out_rgb.npz")
    assert set(maps.files) == {"psi_cls", "psi_comp", "mask", "pixel_mask"}
    # 3:2 is beyond auto's 5:4: the default tiles it, 4 x 6 tokens over the whole image
    assert maps["psi_cls"].shape == (4, 6) and maps["pixel_mask"].shape == (32, 48)
    assert maps["mask"].min() == 0.0 and maps["mask"].max() == 1.0


def test_single_image_output_equals_python_api(capsys, tmp_path, tiny_clip_dir):
    from attnprompt import annotate

    src = photo(tmp_path / "in.png", seed=3)
    out = tmp_path / "cli.png"
    code, _, _ = run(capsys, "annotate", str(src), "-q", "where is the cat?", "-o", str(out), "--model",
                     str(tiny_clip_dir), "--device", "cpu", "--layer", "-3..-1", "--enhance", "2", "--gray", "30")
    assert code == 0
    [api] = annotate([str(src)], ["where is the cat?"], model=str(tiny_clip_dir), device="cpu",
                     layers=(-3, -2, -1), enhance=2, gray=30)
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(api))


def test_console_script_help_shows_examples():
    exe = Path(sys.executable).with_name("attnprompt")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "attnprompt.cli"]
    out = subprocess.run([*cmd, "annotate", "--help"], capture_output=True, text=True, check=True).stdout
    assert "examples:" in out and "--manifest" in out and "--geometry" in out


def test_presets_command_lists_presets(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0 and "official" in out and "geometry=stretch" in out
    assert "geometry auto" in out and "2:1 3" in out and "5:4 1" in out  # the cost of auto, in forwards
    from attnprompt.styles import STYLES

    assert all(f"  {name} " in out for name in STYLES)


def test_style_and_preset_file_options(capsys, tmp_path, tiny_clip_dir, good_image):
    from attnprompt.config import get_preset, write_preset_file

    preset = write_preset_file(tmp_path / "p.json", get_preset("default", gray=77), "clip")
    out = tmp_path / "o.png"
    code, stdout, _ = run(capsys, "annotate", str(good_image), "-q", "what?", "-o", str(out), "--model",
                          str(tiny_clip_dir), "--device", "cpu", "--preset", str(preset), "--style", "vicrop",
                          "--style-param", "margin=0", "--style-param", "min_size=0", "--quiet")
    assert code == 0 and "boxes: " in stdout
    box = [int(v) for v in stdout.split("boxes: ")[1].split()[0].split(",")]
    assert Image.open(out).size == (48, 32)  # vicrop: the original first...
    assert Image.open(tmp_path / "o_2.png").size == (box[2] - box[0], box[3] - box[1])  # ...then the crop


@pytest.fixture()
def good_image(tmp_path) -> Path:
    return photo(tmp_path / "ok.png")


BAD_FILES = {
    "corrupt.png": b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10,
    "notes.png": b"this is not an image\n",
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_image_files(capsys, tmp_path, tiny_clip_dir, name):
    path = tmp_path / name
    path.write_bytes(BAD_FILES[name])
    code, _, err = run(capsys, "annotate", str(path), "-q", "what?", "-o", str(tmp_path / "o.png"),
                       "--model", str(tiny_clip_dir), "--device", "cpu")
    assert_one_line_error(code, err, name)
    assert not (tmp_path / "o.png").exists()


def test_truncated_image(capsys, tmp_path, tiny_clip_dir):
    full = photo(tmp_path / "full.png", size=(64, 64))
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    code, _, err = run(capsys, "annotate", str(cut), "-q", "what?", "-o", str(tmp_path / "o.png"),
                       "--model", str(tiny_clip_dir), "--device", "cpu")
    assert_one_line_error(code, err, "cut.png")


def test_missing_image(capsys, tmp_path, tiny_clip_dir):
    code, _, err = run(capsys, "annotate", str(tmp_path / "nope.jpg"), "-q", "what?", "-o", str(tmp_path / "o.png"),
                       "--model", str(tiny_clip_dir), "--device", "cpu")
    assert_one_line_error(code, err, "nope.jpg")


@pytest.mark.parametrize("query", ["", "   \t"])
def test_empty_query(capsys, tmp_path, tiny_clip_dir, good_image, query):
    code, _, err = run(capsys, "annotate", str(good_image), "-q", query, "-o", str(tmp_path / "o.png"),
                       "--model", str(tiny_clip_dir), "--device", "cpu")
    assert_one_line_error(code, err, "empty")


def test_long_query_is_truncated_with_a_warning(capsys, tmp_path, tiny_clip_dir, good_image):
    long_query = "is there a red square " * 40
    with pytest.warns(UserWarning, match="truncated"):
        code = main(["annotate", str(good_image), "-q", long_query, "-o", str(tmp_path / "o.png"),
                     "--model", str(tiny_clip_dir), "--device", "cpu"])
    assert code == 0 and (tmp_path / "o.png").exists()


def test_missing_model_path(capsys, tmp_path, good_image):
    code, _, err = run(capsys, "annotate", str(good_image), "-q", "what?", "-o", str(tmp_path / "o.png"),
                       "--model", str(tmp_path / "no_such_model"), "--device", "cpu")
    assert_one_line_error(code, err, "no_such_model", "does not exist")


def test_wrong_model_folder(capsys, tmp_path, good_image):
    empty = tmp_path / "empty_model"
    empty.mkdir()
    code, _, err = run(capsys, "annotate", str(good_image), "-q", "what?", "-o", str(tmp_path / "o.png"),
                       "--model", str(empty), "--device", "cpu")
    assert_one_line_error(code, err, "empty_model")


def test_model_that_is_not_a_vit_clip(capsys, tmp_path, good_image):
    from transformers import BertConfig

    folder = tmp_path / "bert"
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(folder)
    code, _, err = run(capsys, "annotate", str(good_image), "-q", "what?", "-o", str(tmp_path / "o.png"),
                       "--model", str(folder), "--device", "cpu")
    assert_one_line_error(code, err, "not a ViT CLIP")


def test_uncached_hub_model_offline_names_model_and_local_option(capsys, tmp_path, good_image, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(capsys, "annotate", str(good_image), "-q", "what?", "-o", str(tmp_path / "o.png"),
                       "--model", "someorg/clip-that-is-not-cached", "--device", "cpu")
    assert_one_line_error(code, err, "someorg/clip-that-is-not-cached", "--model DIR")


@pytest.mark.parametrize("args, needles", [
    (["--layer", "4"], ("layer 4", "4 blocks")),
    (["--layer", "-5"], ("layer -5",)),
    (["--comp-layer", "9"], ("comp layer 9",)),
    (["--kernel", "4"], ("odd",)),
    (["--gray", "300"], ("0-255",)),
    (["--gray", "-3"], ("0-255",)),
    (["--layer", "x..y"], ("bad layer spec",)),
    (["--dtype", "int8"], ("dtype",)),
    (["--style", "sparkle"], ("unknown style", "marks")),
    (["--style", "soft", "--style-param", "radius=3"], ("no parameter 'radius'",)),
    (["--style", "blur", "--style-param", "radius"], ("KEY=VALUE",)),
    (["--preset", "nothere.json"], ("does not exist",)),
    (["--preset", "fastest"], ("unknown", "preset file")),
    (["--device", "cuda:7"] if not __import__("torch").cuda.is_available() else ["--device", "tpu"], ("device",)),
])
def test_bad_options(capsys, tmp_path, tiny_clip_dir, good_image, args, needles):
    code, _, err = run(capsys, "annotate", str(good_image), "-q", "what?", "-o", str(tmp_path / "o.png"),
                       "--model", str(tiny_clip_dir), "--device", "cpu", *args)
    assert_one_line_error(code, err, *needles)


def test_unknown_interpolation_is_rejected_by_the_parser(capsys, good_image):
    with pytest.raises(SystemExit) as exit_info:
        main(["annotate", str(good_image), "-q", "what?", "--interpolation", "cubic-spline"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_image_and_manifest_are_exclusive(capsys, tmp_path, good_image):
    code, _, err = run(capsys, "annotate", str(good_image), "--manifest", "m.jsonl", "-q", "x")
    assert_one_line_error(code, err, "either")
    code, _, err = run(capsys, "annotate", str(good_image))
    assert_one_line_error(code, err, "--query")


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16"])
def test_every_image_mode_is_annotated(capsys, tmp_path, tiny_clip_dir, mode):
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (30, 44, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257))
        assert img.mode.startswith("I;16")
    else:
        img = rgb.convert(mode)
    src = tmp_path / ("in.tif" if mode == "CMYK" else "in.png")
    img.save(src)
    out = tmp_path / "out.png"
    code, _, err = run(capsys, "annotate", str(src), "-q", "what is it?", "-o", str(out), "--model",
                       str(tiny_clip_dir), "--device", "cpu")
    assert code == 0, err
    result = Image.open(out)
    assert result.mode == "RGB" and result.size == (44, 30)


def test_exif_rotation_is_honoured_end_to_end(capsys, tmp_path, tiny_clip_dir):
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated by 90 degrees
    src = tmp_path / "rotated.jpg"
    Image.new("RGB", (60, 20), (200, 10, 10)).save(src, exif=exif)
    out = tmp_path / "out.png"
    code, _, _ = run(capsys, "annotate", str(src), "-q", "what?", "-o", str(out), "--model", str(tiny_clip_dir),
                     "--device", "cpu")
    assert code == 0 and Image.open(out).size == (20, 60)


def test_decompression_bomb_is_refused(capsys, tmp_path, tiny_clip_dir):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    code, _, err = run(capsys, "annotate", str(bomb), "-q", "what?", "-o", str(tmp_path / "o.png"),
                       "--model", str(tiny_clip_dir), "--device", "cpu")
    assert_one_line_error(code, err, "bomb.png")

