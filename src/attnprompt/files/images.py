"""Safe image decoding: any path, PIL image or array -> a fresh RGB image, or one clear error.

Decompression bombs are refused from the header, before a pixel is decoded; EXIF orientation is
applied; wide and odd modes (16-bit, float, palette with transparency, CMYK) are converted on
purpose rather than clipped. No model code lives here.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import AttnPromptError, one_line
from .names import StrPath

__all__ = ["MAX_PIXELS", "ImageLoadError", "ImageSource", "load_image"]

ImageSource = Union[StrPath, Image.Image, np.ndarray]

#: Largest image (width * height) :func:`load_image` accepts by default. It is twice Pillow's
#: warning threshold, i.e. the size at which Pillow itself stops with ``DecompressionBombError``,
#: so the default admits everything a plain ``Image.open`` would, but checks it up front.
MAX_PIXELS: int = 178_956_970


class ImageLoadError(AttnPromptError):
    """An image could not be loaded; the message names the file (or array) and the reason."""


def _fail(what: str, reason: str) -> ImageLoadError:
    return ImageLoadError(one_line(f"cannot load image {what}: {reason}"))


def _check_size(what: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise _fail(what, f"zero-size image ({width}x{height})")
    if width * height > max_pixels:
        raise _fail(
            what,
            f"image too large ({width}x{height} = {width * height} pixels, limit {max_pixels}); "
            "refused as a possible decompression bomb",
        )


def _scale16(values: np.ndarray) -> np.ndarray:
    # value / 257 maps 0..65535 exactly onto 0..255; (v + 128) // 257 is that division rounded
    # to nearest in integers (no ties exist: 257 is odd), so 65535 -> 255 and 257 * k -> k.
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide + 128) // 257).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8)).convert("RGB")


def _to_rgb(image: Image.Image, what: str) -> Image.Image:
    """Convert any Pillow mode to RGB, scaling wide modes instead of letting Pillow clip them."""
    mode = image.mode
    if mode.startswith("I;16"):
        # Pillow's own I;16 -> RGB clips at 255, turning almost every 16-bit photo white.
        return _gray_to_rgb(_scale16(np.asarray(image)))
    if mode == "I":
        values = np.asarray(image)
        # Mode I is what 16-bit PNGs/TIFFs often decode to; 8-bit data stored as I must not
        # be darkened by /257, so the scale is chosen from the data.
        if int(values.max()) > 255:
            return _gray_to_rgb(_scale16(values))
        return _gray_to_rgb(np.clip(values, 0, 255))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        # Rounded rather than truncated (Pillow's F -> L truncates) to match the 16-bit path.
        return _gray_to_rgb(np.rint(np.clip(values, 0.0, 255.0)))
    if mode == "P" and "transparency" in image.info:
        # Through RGBA: same colours, but without Pillow's warning that byte transparency
        # "should be converted to RGBA" (we drop alpha on purpose, see load_image).
        return image.convert("RGBA").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        pass
    try:
        # Some alpha/premultiplied modes only convert via RGBA.
        return image.convert("RGBA").convert("RGB")
    except ValueError as exc:
        raise _fail(what, f"unsupported image mode {mode!r}") from exc


def _exif_transposed(image: Image.Image) -> Image.Image:
    try:
        result = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001
        # EXIF is metadata: a malformed tag must not make readable pixels unreadable, so the
        # image is used as stored.
        return image
    return image if result is None else result


def _array_to_rgb(array: np.ndarray, max_pixels: int) -> Image.Image:
    what = f"<array shape={tuple(array.shape)} dtype={array.dtype}>"
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        height, width = array.shape[:2]
    elif array.ndim == 2:
        height, width = array.shape
    else:
        raise _fail(what, "expected an HxW, HxWx1, HxWx3 or HxWx4 array")
    _check_size(what, (width, height), max_pixels)

    if array.dtype == np.bool_:
        data = array.astype(np.uint8) * np.uint8(255)
    elif array.dtype == np.uint8:
        data = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise _fail(what, "float array contains NaN or infinity")
        lo, hi = float(array.min()), float(array.max())
        if lo < 0.0 or hi > 1.0:
            # Guessing between [0, 1] and [0, 255] silently ruins images; make the caller say.
            raise _fail(what, f"float arrays must lie in [0, 1], found [{lo:g}, {hi:g}]")
        data = np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    elif array.dtype == np.uint16:
        data = _scale16(array)  # same convention as 16-bit image files
    elif np.issubdtype(array.dtype, np.integer):
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 255:
            raise _fail(what, f"integer array values must lie in [0, 255], found [{lo}, {hi}]")
        data = array.astype(np.uint8)
    else:
        raise _fail(what, f"unsupported array dtype {array.dtype}")

    if data.ndim == 3:
        data = data[:, :, 0] if data.shape[2] == 1 else data[:, :, :3]  # alpha dropped
    if data.ndim == 2:
        return _gray_to_rgb(data)
    return Image.fromarray(np.ascontiguousarray(data, dtype=np.uint8)).convert("RGB")


def _finish(image: Image.Image, what: str) -> Image.Image:
    rgb = _to_rgb(_exif_transposed(image), what)
    # The caller owns the result: never hand back the caller's (or a file-backed) object.
    return rgb.copy() if rgb is image else rgb


_BOMB_MESSAGE = "image too large, refused as a possible decompression bomb"

# warnings.catch_warnings swaps process-wide state, and jobs decode images on worker threads;
# the lock keeps our own threads from restoring each other's filters. It covers only the
# header read, so decoding stays parallel.
_OPEN_LOCK = threading.Lock()


def _open_lazily(what: str) -> Image.Image:
    # Pillow's bomb check warns from half our default limit; our explicit check is the
    # authority, so that warning is silenced instead of leaking to the user's terminal. Its
    # DecompressionBombError (above 2 * Image.MAX_IMAGE_PIXELS) still refuses.
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(what)  # reads the header only
        except FileNotFoundError as exc:
            raise _fail(what, "file not found") from exc
        except PermissionError as exc:
            raise _fail(what, "permission denied") from exc
        except IsADirectoryError as exc:
            raise _fail(what, "is a directory") from exc
        except UnidentifiedImageError as exc:
            raise _fail(what, "not a recognised image file") from exc
        except Image.DecompressionBombError as exc:
            raise _fail(what, f"{_BOMB_MESSAGE} ({exc})") from exc
        except Exception as exc:  # noqa: BLE001 - Pillow plugins raise many types on bad headers
            raise _fail(what, f"unreadable image header ({type(exc).__name__}: {exc})") from exc


def _decode(image: Image.Image, what: str) -> None:
    try:
        # A full load, so a truncated file fails here rather than as gray padding later (we
        # never set ImageFile.LOAD_TRUNCATED_IMAGES).
        image.load()
    except Image.DecompressionBombError as exc:
        raise _fail(what, f"{_BOMB_MESSAGE} ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, ...
        raise _fail(what, f"corrupt or truncated image data ({type(exc).__name__}: {exc})") from exc


def _load_file(path: StrPath, max_pixels: int) -> Image.Image:
    what = os.fsdecode(os.fspath(path))
    if os.path.isdir(what):
        raise _fail(what, "is a directory")
    with _open_lazily(what) as opened:
        _check_size(what, opened.size, max_pixels)  # before a single pixel is decoded
        _decode(opened, what)
        _check_size(what, opened.size, max_pixels)  # multi-frame formats may grow the canvas
        return _finish(opened, what)


def load_image(source: ImageSource, *, max_pixels: int | None = None) -> Image.Image:
    """Load ``source`` as a fresh RGB image.

    Args:
        source: a file path, a PIL image, or a numpy array. Arrays may be ``uint8`` (HxW,
            HxWx1, HxWx3, HxWx4), ``bool`` (0/255), float in ``[0, 1]`` (scaled by 255 and
            rounded), ``uint16`` (scaled like 16-bit files) or other integers within
            ``[0, 255]``.
        max_pixels: refuse images with more than this many pixels (default :data:`MAX_PIXELS`).
            The check runs on the header, before decoding. Limits above Pillow's own hard limit
            (``2 * PIL.Image.MAX_IMAGE_PIXELS``) also need that global raised.

    Returns:
        A loaded RGB image that shares nothing with ``source``; file handles are closed.

    Conversion rules:
        * EXIF orientation is applied (``ImageOps.exif_transpose``).
        * Alpha is dropped, not composited, as ``convert("RGB")`` does; this is what CLIP
          processors and the official implementation feed the model.
        * 16-bit modes (``I;16*``, and ``I`` when its maximum exceeds 255) are scaled by 1/257
          and rounded instead of being clipped at 255; ``F`` is clipped to ``[0, 255]`` and
          rounded; CMYK, palette, 1-bit and the rest use Pillow's ``convert("RGB")``.

    Raises:
        ImageLoadError: missing file, directory, not an image, corrupt or truncated data,
            zero size, too many pixels, or an unsupported array/mode.
    """
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, limit)
    if isinstance(source, Image.Image):
        what = str(getattr(source, "filename", "") or "<PIL image>")
        _check_size(what, source.size, limit)
        _decode(source, what)  # a lazily opened image may still be truncated
        return _finish(source, what)
    if isinstance(source, (str, os.PathLike)):
        return _load_file(source, limit)
    raise ImageLoadError(
        f"cannot load image of type {type(source).__name__}: expected a path, a PIL image or a numpy array"
    )
