"""attnprompt.io: image loading, manifests, safe stems, atomic writes, tolerant JSON Lines.

All inputs are made in ``tmp_path``; nothing touches the network or the golden fixtures.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from attnprompt.errors import AttnPromptError
from attnprompt.io import (
    MAX_PIXELS,
    ImageLoadError,
    ManifestRow,
    append_jsonl,
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_text,
    load_image,
    read_jsonl_tolerant,
    read_manifest,
    safe_stem,
)

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    assert image.mode == "RGB"
    return [tuple(p) for p in np.asarray(image).reshape(-1, 3).tolist()]


def row_image(mode: str, values: list) -> Image.Image:
    """A 1-pixel-high image of ``mode`` holding ``values`` left to right."""
    image = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)
    return image


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but whose data is one tiny row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def decode_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every pixel decode (ImageFile.load) so a test can prove none happened."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile):  # type: ignore[no-untyped-def]
        calls.append(str(getattr(self, "filename", "")))
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# load_image: modes
# ---------------------------------------------------------------------------------------------

PALETTE = [10, 20, 30, 200, 100, 50, 1, 2, 3]

MODE_CASES = [
    # (id, mode, pixel values, file suffix or None for in-memory only, expected RGB)
    ("1", "1", [1, 0], ".png", [(255, 255, 255), (0, 0, 0)]),
    ("L", "L", [77, 0], ".png", [(77, 77, 77), (0, 0, 0)]),
    ("LA", "LA", [(77, 0), (9, 255)], ".png", [(77, 77, 77), (9, 9, 9)]),
    ("RGB", "RGB", [(1, 2, 3), (250, 128, 0)], ".png", [(1, 2, 3), (250, 128, 0)]),
    # alpha is dropped, not composited: a fully transparent pixel keeps its colour
    ("RGBA", "RGBA", [(10, 20, 30, 0), (40, 50, 60, 255)], ".png", [(10, 20, 30), (40, 50, 60)]),
    ("CMYK", "CMYK", [(0, 255, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0)], ".tif", [(255, 0, 0), (0, 0, 0), (255, 255, 255)]),
    ("I16", "I;16", [65535, 257 * 100, 0, 128, 129], ".tif", [(255,) * 3, (100,) * 3, (0,) * 3, (0,) * 3, (1,) * 3]),
    ("I16B", "I;16B", [65535, 257 * 100, 0], ".tif", [(255,) * 3, (100,) * 3, (0,) * 3]),
    ("I16L", "I;16L", [65535, 257 * 100, 0], None, [(255,) * 3, (100,) * 3, (0,) * 3]),
    ("I16N", "I;16N", [65535, 257 * 100, 0], None, [(255,) * 3, (100,) * 3, (0,) * 3]),
    # mode I above 255 is 16-bit data (negative clipped to 0) ...
    ("I-wide", "I", [65535, 257 * 100, -5], ".tif", [(255,) * 3, (100,) * 3, (0,) * 3]),
    # ... and within 0..255 it is taken as is (not darkened by /257)
    ("I-narrow", "I", [7, 200, 255], ".tif", [(7,) * 3, (200,) * 3, (255,) * 3]),
    ("F", "F", [-3.0, 127.6, 300.0, 42.0], ".tif", [(0,) * 3, (128,) * 3, (255,) * 3, (42,) * 3]),
]


@pytest.mark.parametrize("mode,values,suffix,expected", [c[1:] for c in MODE_CASES], ids=[c[0] for c in MODE_CASES])
def test_modes_load_to_expected_rgb(tmp_path: Path, mode: str, values: list, suffix: str | None, expected: list) -> None:
    source = row_image(mode, values)
    assert source.mode == mode
    from_memory = load_image(source)
    assert from_memory.mode == "RGB" and from_memory.size == (len(values), 1)
    assert pixels(from_memory) == expected
    if suffix:
        path = tmp_path / f"img{suffix}"
        source.save(path)
        with Image.open(path) as reopened:
            assert reopened.mode == mode  # the file really stores this mode
        assert pixels(load_image(path)) == expected


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_image_uses_palette_colours(tmp_path: Path, transparent: bool) -> None:
    image = row_image("P", [0, 1, 2])
    image.putpalette(PALETTE)
    path = tmp_path / "p.png"
    if transparent:
        image.save(path, transparency=1)
    else:
        image.save(path)
    with Image.open(path) as reopened:
        assert reopened.mode == "P"
        assert ("transparency" in reopened.info) is transparent
    # the transparent index keeps its palette colour (alpha dropped as convert("RGB") does)
    assert pixels(load_image(path)) == [(10, 20, 30), (200, 100, 50), (1, 2, 3)]


def test_palette_with_byte_transparency_does_not_warn(recwarn: pytest.WarningsRecorder) -> None:
    image = row_image("P", [0, 1])
    image.putpalette(PALETTE)
    image.info["transparency"] = bytes([255, 0])
    assert pixels(load_image(image)) == [(10, 20, 30), (200, 100, 50)]
    assert not [w for w in recwarn if "Transparency" in str(w.message)]


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    Image.fromarray(np.array([[0, 257 * 100, 65535, 1000]], dtype=np.uint16)).save(path)
    # 1000 / 257 = 3.89 -> 4; Pillow's own conversion would clip 1000 to 255
    assert [p[0] for p in pixels(load_image(path))] == [0, 100, 255, 4]


def test_cmyk_jpeg_loads(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, quality=100)
    r, g, b = pixels(load_image(path))[0]
    assert r > 240 and g < 15 and b < 15


# ---------------------------------------------------------------------------------------------
# load_image: EXIF, handles, independence
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_6_rotates(tmp_path: Path, suffix: str) -> None:
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)  # left half red
    array[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    path = tmp_path / f"rot{suffix}"
    Image.fromarray(array).save(path, exif=exif, **({"quality": 100} if suffix == ".jpg" else {}))

    loaded = load_image(path)
    assert loaded.size == (20, 40)  # width and height swapped
    out = np.asarray(loaded).astype(int)
    # clockwise: the left (red) half ends up on top, the right (blue) half at the bottom
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 50
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 50


def test_without_exif_orientation_size_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (40, 20)).save(path)
    assert load_image(path).size == (40, 20)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to list open files")
def test_file_handle_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "closed.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(path)
    image = load_image(path)
    open_files = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            open_files.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    assert str(path) not in open_files
    assert pixels(image)[0] == (1, 2, 3)  # still usable after the file is closed


def test_pil_source_is_copied_not_shared() -> None:
    source = Image.new("RGB", (2, 2), (5, 6, 7))
    loaded = load_image(source)
    assert loaded is not source
    loaded.putpixel((0, 0), (9, 9, 9))
    assert source.getpixel((0, 0)) == (5, 6, 7)


def test_accepts_str_and_pathlike(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    Image.new("RGB", (3, 2), (4, 5, 6)).save(path)
    assert pixels(load_image(str(path))) == pixels(load_image(path)) == [(4, 5, 6)] * 6


# ---------------------------------------------------------------------------------------------
# load_image: bombs and bad files
# ---------------------------------------------------------------------------------------------


def test_max_pixels_refuses_before_decoding(tmp_path: Path, decode_spy: list[str]) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    with pytest.raises(ImageLoadError, match="too large") as info:
        load_image(path, max_pixels=9_999)
    assert str(path) in str(info.value) and "10000" in str(info.value)
    assert decode_spy == []
    # at the limit it loads, and the spy does see that decode
    assert load_image(path, max_pixels=10_000).size == (100, 100)
    assert decode_spy and set(decode_spy) == {str(path)}


def test_png_header_claiming_huge_size_is_refused_without_decoding(tmp_path: Path, decode_spy: list[str]) -> None:
    path = tmp_path / "claims.png"
    path.write_bytes(png_claiming(5000, 5000))
    with pytest.raises(ImageLoadError, match="too large") as info:
        load_image(path, max_pixels=1_000_000)
    assert str(path) in str(info.value)
    assert decode_spy == []


def test_png_header_beyond_pillow_limit_is_an_image_load_error(tmp_path: Path, decode_spy: list[str]) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(100_000, 100_000))  # 1e10 px, over Pillow's hard limit
    with pytest.raises(ImageLoadError, match="decompression bomb") as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert decode_spy == []


def test_default_limit_value() -> None:
    assert MAX_PIXELS == 178_956_970 == 2 * Image.MAX_IMAGE_PIXELS


def test_zero_size_is_refused() -> None:
    with pytest.raises(ImageLoadError, match="zero-size"):
        load_image(Image.new("RGB", (0, 3)))
    with pytest.raises(ImageLoadError, match="zero-size"):
        load_image(np.zeros((0, 4, 3), dtype=np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file_is_refused(tmp_path: Path, suffix: str) -> None:
    good = tmp_path / f"good{suffix}"
    Image.fromarray(noise(64, 64)).save(good)
    data = good.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated") as info:
        load_image(cut)
    assert str(cut) in str(info.value)
    assert "\n" not in str(info.value)


def test_corrupt_png_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.png"
    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    idat = b"this is not zlib data at all"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_text_file_named_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("definitely not an image\n")
    with pytest.raises(ImageLoadError, match="not a recognised image") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "missing.png"
    with pytest.raises(ImageLoadError, match="file not found") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="is a directory") as info:
        load_image(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_image_load_error_is_a_user_facing_error() -> None:
    assert issubclass(ImageLoadError, AttnPromptError)
    with pytest.raises(AttnPromptError, match="cannot load image of type"):
        load_image(12345)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# load_image: arrays
# ---------------------------------------------------------------------------------------------


def test_uint8_gray_arrays() -> None:
    gray = np.array([[0, 128, 255]], dtype=np.uint8)
    assert pixels(load_image(gray)) == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]
    assert pixels(load_image(gray[:, :, None])) == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_uint8_rgb_and_rgba_arrays() -> None:
    rgb = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    loaded = load_image(rgb)
    assert loaded.size == (2, 1) and pixels(loaded) == [(1, 2, 3), (4, 5, 6)]
    rgba = np.array([[[1, 2, 3, 0], [4, 5, 6, 255]]], dtype=np.uint8)
    assert pixels(load_image(rgba)) == [(1, 2, 3), (4, 5, 6)]


def test_non_square_array_keeps_orientation() -> None:
    array = np.zeros((2, 3, 3), dtype=np.uint8)
    array[1, 2] = (9, 8, 7)
    loaded = load_image(array)
    assert loaded.size == (3, 2)
    assert loaded.getpixel((2, 1)) == (9, 8, 7)


def test_float_arrays_in_unit_range_are_scaled() -> None:
    array = np.array([[0.0, 0.2, 0.999, 1.0]], dtype=np.float32)
    # rounded, not truncated: 0.999 * 255 = 254.7 -> 255
    assert pixels(load_image(array)) == [(0, 0, 0), (51, 51, 51), (255, 255, 255), (255, 255, 255)]
    rgb = np.array([[[1.0, 0.0, 0.2]]], dtype=np.float64)
    assert pixels(load_image(rgb)) == [(255, 0, 51)]


@pytest.mark.parametrize("bad", [np.array([[0.0, 255.0]]), np.array([[-0.1, 0.5]]), np.array([[np.nan, 0.5]])])
def test_float_arrays_out_of_range_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ImageLoadError, match="array"):
        load_image(bad)


def test_bool_and_wide_integer_arrays() -> None:
    assert pixels(load_image(np.array([[True, False]]))) == [(255, 255, 255), (0, 0, 0)]
    assert pixels(load_image(np.array([[3, 250]], dtype=np.int64))) == [(3, 3, 3), (250, 250, 250)]
    assert pixels(load_image(np.array([[65535, 25700]], dtype=np.uint16))) == [(255,) * 3, (100,) * 3]
    with pytest.raises(ImageLoadError, match=r"\[0, 255\]"):
        load_image(np.array([[3, 256]], dtype=np.int64))


@pytest.mark.parametrize("shape", [(4,), (2, 2, 2), (2, 2, 5), (1, 2, 2, 3)])
def test_arrays_of_wrong_shape_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageLoadError, match="HxW"):
        load_image(np.zeros(shape, dtype=np.uint8))


def test_array_bomb_check() -> None:
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(np.zeros((10, 10), dtype=np.uint8), max_pixels=99)


# ---------------------------------------------------------------------------------------------
# manifests
# ---------------------------------------------------------------------------------------------


def test_jsonl_manifest_rows_errors_and_relative_paths(tmp_path: Path) -> None:
    absolute = str(tmp_path / "elsewhere" / "abs.png")
    lines = [
        json.dumps({"id": "a", "image": "imgs/a.png", "question": "what is it?", "extra": 1}),  # 1
        "",  # 2 blank
        json.dumps({"id": 7, "image": absolute, "question": "q7"}),  # 3
        '{"id": "broken", ',  # 4
        json.dumps({"id": "c", "image": "c.png"}),  # 5
        json.dumps({"id": "d", "image": "d.png", "question": 5}),  # 6
        json.dumps(["not", "an", "object"]),  # 7
        json.dumps({"id": "a", "image": "again.png", "question": "dup"}),  # 8
        "   ",  # 9 blank
        json.dumps({"id": True, "image": "t.png", "question": "q"}),  # 10
        json.dumps({"id": "7", "image": "x.png", "question": "int and str ids collide"}),  # 11
    ]
    sub = tmp_path / "jobs"
    sub.mkdir()
    manifest = sub / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")

    rows = read_manifest(manifest)
    assert [r.line for r in rows] == [1, 3, 4, 5, 6, 7, 8, 10, 11]
    by_line = {r.line: r for r in rows}

    assert by_line[1] == ManifestRow("a", str(sub / "imgs" / "a.png"), "what is it?", 1, None)
    assert by_line[3] == ManifestRow("7", absolute, "q7", 3, None)
    assert by_line[4].error is not None and by_line[4].error.startswith("invalid JSON")
    assert by_line[5].error == "missing key 'question'" and by_line[5].id == "c"
    assert by_line[6].error == "'question' must be a string, got number"
    assert by_line[7].error == "expected a JSON object, got array"
    assert by_line[8].error == "duplicate id 'a' (first on line 1)"
    assert by_line[8].image == str(sub / "again.png")
    assert by_line[10].error == "'id' must be a string or integer, got boolean"
    assert by_line[11].error == "duplicate id '7' (first on line 3)"
    assert [r.line for r in rows if r.error is None] == [1, 3]
    for row in rows:
        assert row.error is None or "\n" not in row.error


def test_manifest_relative_paths_do_not_depend_on_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "data"
    sub.mkdir()
    (sub / "m.ndjson").write_text(json.dumps({"id": "x", "image": "x.png", "question": "q"}) + "\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (row,) = read_manifest(Path("..") / "data" / "m.ndjson")
    assert os.path.samefile(os.path.dirname(row.image), sub)
    assert os.path.isabs(row.image)


def test_json_extension_is_read_as_jsonl_and_array_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "m.json"
    good.write_text('\ufeff{"id": "1", "image": "a.png", "question": "q"}\r\n{"id": "2", "image": "b.png", "question": "r"}\r\n')
    rows = read_manifest(good)
    assert [(r.id, r.question, r.error) for r in rows] == [("1", "q", None), ("2", "r", None)]

    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"id": "1", "image": "a.png", "question": "q"}], indent=2))
    with pytest.raises(AttnPromptError, match="JSON array"):
        read_manifest(array)


def test_csv_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "\ufeffid, Image ,question,notes\n"  # 1: BOM, spaces and case in the header
        '1,imgs/a.png,"What is this, exactly?",x\n'  # 2
        "2,b.png,second\n"  # 3: the optional notes column may be absent
        "\n"  # 4
        "3,c.png,unquoted, comma, here\n"  # 5: 5 fields -> would cut the question short
        "2,d.png,dup\n"  # 6
        '4,"",q\n'  # 7
        '5,e.png,"line one\nline two"\n'  # 8-9
        "6,f.png\n"  # 10
        f"7,{tmp_path / 'abs.png'},absolute\n",  # 11
        encoding="utf-8",
    )
    rows = read_manifest(manifest)
    assert [r.line for r in rows] == [2, 3, 5, 6, 7, 8, 10, 11]
    by_line = {r.line: r for r in rows}
    assert by_line[2] == ManifestRow("1", str(tmp_path / "imgs" / "a.png"), "What is this, exactly?", 2)
    assert by_line[3] == ManifestRow("2", str(tmp_path / "b.png"), "second", 3)
    assert by_line[5].error == "5 fields but the header has 4 (quote fields that contain commas)"
    assert by_line[6].error == "duplicate id '2' (first on line 3)"
    assert by_line[7].error == "empty 'image'"
    assert by_line[8] == ManifestRow("5", str(tmp_path / "e.png"), "line one\nline two", 8)
    assert by_line[10].error == "2 fields, no value for question"
    assert by_line[11] == ManifestRow("7", str(tmp_path / "abs.png"), "absolute", 11)


def test_csv_without_required_columns_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path,question\n1,a.png,q\n")
    with pytest.raises(AttnPromptError, match="image") as info:
        read_manifest(manifest)
    assert str(manifest) in str(info.value)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(AttnPromptError, match="empty CSV"):
        read_manifest(empty)


def test_manifest_file_errors(tmp_path: Path) -> None:
    with pytest.raises(AttnPromptError, match="file not found") as info:
        read_manifest(tmp_path / "missing.jsonl")
    assert "missing.jsonl" in str(info.value)
    other = tmp_path / "m.txt"
    other.write_text("{}\n")
    with pytest.raises(AttnPromptError, match="unknown extension"):
        read_manifest(other)
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    with pytest.raises(AttnPromptError, match="is a directory"):
        read_manifest(folder)


def test_empty_jsonl_manifest_has_no_rows(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n\n")
    assert read_manifest(manifest) == []


def test_invalid_utf8_line_is_a_row_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    good = json.dumps({"id": "ok", "image": "a.png", "question": "q"}).encode()
    manifest.write_bytes(b'{"id": "\xff"}\n' + good + b"\n")
    rows = read_manifest(manifest)
    assert [(r.line, r.error) for r in rows] == [(1, "not valid UTF-8 (byte 8)"), (2, None)]


# ---------------------------------------------------------------------------------------------
# safe_stem
# ---------------------------------------------------------------------------------------------

RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(10)} | {f"LPT{i}" for i in range(10)}


def sha10(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def assert_portable(stem: str, max_len: int = 80) -> None:
    assert stem and len(stem) <= max_len
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in stem), stem
    assert not stem.startswith(".") and not stem.endswith(".")
    assert stem.split(".")[0].upper() not in RESERVED


def test_safe_stem_keeps_safe_ids() -> None:
    for item_id in ["a_b", "img-001.v2", "x" * 80]:
        assert safe_stem(item_id) == item_id


def test_safe_stem_ids_differing_in_case_do_not_collide_on_case_insensitive_disks() -> None:
    stems = [safe_stem(i) for i in ["a", "A", "Img1", "img1", "IMG1"]]
    assert len({s.lower() for s in stems}) == len(stems)
    assert stems[0] == "a" and stems[3] == "img1"


def test_safe_stem_path_traversal(tmp_path: Path) -> None:
    stem = safe_stem("../../etc/passwd")
    assert stem == f"_.._etc_passwd-{sha10('../../etc/passwd')}"
    assert_portable(stem)
    assert (tmp_path / f"{stem}.png").resolve().parent == tmp_path.resolve()
    for item_id in [".", "..", "...", "/", "\\..\\x"]:
        assert_portable(safe_stem(item_id))


def test_safe_stem_distinguishes_rewritten_ids() -> None:
    stems = [safe_stem(i) for i in ["a/b", "a_b", "a b", "a\\b", "a:b"]]
    assert len(set(stems)) == 5
    assert stems[1] == "a_b"
    assert stems[0] == f"a_b-{sha10('a/b')}"
    # an id that already looks like a rewritten stem cannot take that stem over
    assert safe_stem(stems[0]) != stems[0]
    assert safe_stem("a.") != safe_stem("a")


def test_safe_stem_empty_and_reserved() -> None:
    assert safe_stem("") == f"_-{sha10('')}"
    stems = {}
    for item_id in ["CON", "con", "Con.txt", "NUL", "aux", "COM1", "lpt9", "PRN.tar.gz"]:
        stem = safe_stem(item_id)
        assert_portable(stem)
        stems[item_id] = stem
    assert len(set(stems.values())) == len(stems)
    assert safe_stem("console") == "console"  # only exact device names are reserved
    assert safe_stem("com10") == "com10"


def test_safe_stem_unicode() -> None:
    stems = [safe_stem(i) for i in ["café", "cafe", "日本語", "中文字", "e\u0301"]]
    for stem in stems:
        assert_portable(stem)
    assert stems[0] == f"caf_-{sha10('café')}"
    assert stems[1] == "cafe"
    assert len(set(stems)) == len(stems)  # "日本語" and "中文字" both clean to "___"


def test_safe_stem_long_ids() -> None:
    long_a, long_b = "x" * 500, "x" * 499 + "y"
    stem_a, stem_b = safe_stem(long_a), safe_stem(long_b)
    assert len(stem_a) == 80 and len(stem_b) == 80
    assert stem_a != stem_b
    assert stem_a == "x" * 69 + "-" + sha10(long_a)
    assert safe_stem("y" * 81) != "y" * 80
    assert len(safe_stem("z" * 100, max_len=20)) == 20
    assert_portable(safe_stem("a/" * 300, max_len=30), max_len=30)
    with pytest.raises(ValueError):
        safe_stem("abc", max_len=5)


def test_safe_stem_is_deterministic() -> None:
    assert safe_stem("q?/x") == safe_stem("q?/x") == f"q__x-{sha10('q?/x')}"


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------


def test_atomic_write_bytes_and_text(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"\x00first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    atomic_write_text(tmp_path / "t.txt", "héllo\nworld\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\nworld\n".encode("utf-8")
    assert sorted(os.listdir(tmp_path)) == ["out.bin", "t.txt"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_atomic_write_uses_normal_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    new = tmp_path / "new.bin"
    atomic_write_bytes(new, b"x")
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~mask  # not the temp file's 0600
    existing = tmp_path / "existing.bin"
    existing.write_bytes(b"old")
    existing.chmod(0o640)
    atomic_write_bytes(existing, b"new")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640


@pytest.mark.parametrize("suffix,fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".jpeg", "JPEG"), (".bmp", "BMP"), (".tif", "TIFF"), (".TIFF", "TIFF")])
def test_atomic_save_image_infers_format(tmp_path: Path, suffix: str, fmt: str) -> None:
    target = tmp_path / f"img{suffix}"
    atomic_save_image(Image.new("RGB", (6, 4), (200, 10, 10)), target)
    with Image.open(target) as saved:
        assert saved.format == fmt and saved.size == (6, 4)
    assert os.listdir(tmp_path) == [target.name]


def test_atomic_save_image_explicit_format_and_params(tmp_path: Path) -> None:
    target = tmp_path / "noext"
    atomic_save_image(Image.new("RGB", (2, 2)), target, format="png", compress_level=1)
    with Image.open(target) as saved:
        assert saved.format == "PNG"


@pytest.mark.parametrize("name", ["x.gif", "x.xyz", "x"])
def test_atomic_save_image_unsupported_suffix(tmp_path: Path, name: str) -> None:
    with pytest.raises(AttnPromptError, match="unsupported image suffix"):
        atomic_save_image(Image.new("RGB", (2, 2)), tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_atomic_save_failure_keeps_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.png"
    Image.new("RGB", (3, 3), (1, 2, 3)).save(target)
    good = target.read_bytes()

    image = Image.new("RGB", (3, 3), (9, 9, 9))

    def failing_save(fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        fp.write(b"\x89PNG half written")
        raise RuntimeError("simulated crash during save")

    monkeypatch.setattr(image, "save", failing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        atomic_save_image(image, target)
    assert target.read_bytes() == good
    assert os.listdir(tmp_path) == ["out.png"]


def test_atomic_save_os_error_becomes_user_error(tmp_path: Path) -> None:
    target = tmp_path / "out.jpg"
    target.write_bytes(b"previous")
    with pytest.raises(AttnPromptError, match="out.jpg"):
        atomic_save_image(Image.new("RGBA", (2, 2)), target)  # JPEG cannot hold alpha
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["out.jpg"]


def test_atomic_write_interrupted_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"good")

    def boom(src, dst):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_atomic_write_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(AttnPromptError, match="cannot write") as info:
        atomic_write_bytes(tmp_path / "no" / "such" / "f.bin", b"x")
    assert "f.bin" in str(info.value)


# ---------------------------------------------------------------------------------------------
# append_jsonl / read_jsonl_tolerant
# ---------------------------------------------------------------------------------------------


def test_append_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    append_jsonl(path, {"id": "1", "status": "ok", "text": "line\nbreak"})
    append_jsonl(path, {"id": "2", "status": "error", "error": "é"})
    assert read_jsonl_tolerant(path) == [
        {"id": "1", "status": "ok", "text": "line\nbreak"},
        {"id": "2", "status": "error", "error": "é"},
    ]
    assert path.read_text(encoding="utf-8").count("\n") == 2


def test_truncated_final_line_is_skipped_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    append_jsonl(path, {"id": "1"})
    append_jsonl(path, {"id": "2"})
    with open(path, "ab") as handle:
        handle.write(b'{"id": "3", "sta')  # a crash mid-write
    assert read_jsonl_tolerant(path) == [{"id": "1"}, {"id": "2"}]
    append_jsonl(path, {"id": "4"})  # cuts the torn line instead of burying it mid-file
    assert read_jsonl_tolerant(path) == [{"id": "1"}, {"id": "2"}, {"id": "4"}]
    assert path.read_text().splitlines() == ['{"id": "1"}', '{"id": "2"}', '{"id": "4"}']


def test_zero_filled_tail_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "1"}\n\x00\x00\x00\x00')
    assert read_jsonl_tolerant(path) == [{"id": "1"}]


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "1"}\n\n{"id": "2"}')
    assert read_jsonl_tolerant(path) == [{"id": "1"}, {"id": "2"}]
    append_jsonl(path, {"id": "3"})
    assert read_jsonl_tolerant(path) == [{"id": "1"}, {"id": "2"}, {"id": "3"}]


def test_malformed_middle_line_raises(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "1"}\n{"id": oops}\n{"id": "3"}\n')
    with pytest.raises(AttnPromptError, match="line 2") as info:
        read_jsonl_tolerant(path)
    assert str(path) in str(info.value)
    listed = tmp_path / "list.jsonl"
    listed.write_text('[1, 2]\n{"id": "3"}\n')
    with pytest.raises(AttnPromptError, match="line 1: malformed line: expected a JSON object"):
        read_jsonl_tolerant(listed)


def test_read_jsonl_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AttnPromptError, match="file not found"):
        read_jsonl_tolerant(tmp_path / "none.jsonl")


def test_append_rejects_non_dict(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        append_jsonl(tmp_path / "x.jsonl", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert not (tmp_path / "x.jsonl").exists()


def test_append_long_torn_line_beyond_one_block(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    append_jsonl(path, {"id": "1", "blob": "a" * 100_000})
    with open(path, "ab") as handle:
        handle.write(b'{"id": "2", "blob": "' + b"b" * 150_000)  # torn, longer than the tail block
    append_jsonl(path, {"id": "3"})
    records = read_jsonl_tolerant(path)
    assert [r["id"] for r in records] == ["1", "3"]
    assert len(records[0]["blob"]) == 100_000
