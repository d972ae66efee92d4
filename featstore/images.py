"""Decode one image file into an 8-bit "L" or "RGB" picture, or say precisely why it cannot be."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featstore.errors import ImageDecodeError

__all__ = ["DEFAULT_MAX_PIXELS", "decode_image", "read_bytes", "sha1_bytes"]

#: Pillow's own hard limit (2 * Image.MAX_IMAGE_PIXELS at its default).
DEFAULT_MAX_PIXELS = 178_956_970

_ALPHA_MODES = {"LA": "L", "La": "L", "RGBA": "RGB", "RGBa": "RGB", "PA": "RGB"}
_DEEP_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def sha1_bytes(data: bytes) -> str:
    """Hex SHA-1 of a file's bytes: the content key the store tracks images by."""
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


#: Files this big are read only if their first bytes are an image signature (a stray video or archive
#: would otherwise be read whole into memory just to fail decoding).
SNIFF_ABOVE_BYTES = 16 * 2**20
_MORE_MAGIC = ((b"RIFF", "WEBP"), (b"P5", "PGM"), (b"P6", "PPM"), (b"P2", "PGM"), (b"P3", "PPM"))


def read_bytes(path: str | os.PathLike, *, sniff_above: int = SNIFF_ABOVE_BYTES) -> bytes:
    """Read a whole file; unreadable files become an ImageDecodeError so a run records and goes on.

    A file over `sniff_above` bytes whose first bytes match no image format is refused unread."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > sniff_above:
                head = f.read(16)
                if not any(head.startswith(sig) for sig, _ in (*_MAGIC, *_MORE_MAGIC)):
                    raise ImageDecodeError(f"not an image: {size:,} bytes whose first bytes match no image format "
                                           "(not read)")
                f.seek(0)
            return f.read()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from exc


def decode_image(
    source: bytes | str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    keep_gray: bool = True,
) -> Image.Image:
    """Decode `source` (file bytes or a path) into a fully loaded "L" or "RGB" image.

    EXIF orientation is applied, the first frame of an animation is kept, transparency is
    composited onto white, deep grayscale is scaled (not clipped) to 8 bits. Grayscale-like
    sources stay "L" when `keep_gray`, else everything is "RGB". The size is checked against
    `max_pixels` from the header, before any pixel is decoded. Every failure raises
    ImageDecodeError with a short reason; a partially decoded image is never returned.
    A `max_pixels` above Pillow's own hard limit does not lift that limit.
    """
    data = source if isinstance(source, (bytes, bytearray, memoryview)) else read_bytes(source)
    if len(data) == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    im = _open_checked(data, max_pixels)
    try:
        im.load()  # first frame only: animations are never advanced
        ImageOps.exif_transpose(im, in_place=True)
        out = _to_8bit(im, keep_gray=keep_gray)
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises many types on bad data; all mean "this file"
        raise ImageDecodeError(_load_reason(exc)) from exc
    if out.mode == "L" and not keep_gray:
        out = out.convert("RGB")
    return out


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header only, and refuse empty or oversized pictures before decoding pixels."""
    try:
        # The caller's max_pixels decides, not Pillow's lower warning threshold. catch_warnings
        # touches the process-wide filter list only for the duration of this call.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(_bomb_reason(data, max_pixels, exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(_unidentified_reason(data)) from exc
    except Exception as exc:
        raise ImageDecodeError(_load_reason(exc)) from exc
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"zero-sized image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"decompression bomb: {width}x{height} pixels exceeds limit of {max_pixels}"
        )
    return im


def _to_8bit(im: Image.Image, *, keep_gray: bool) -> Image.Image:
    """Map any Pillow mode onto "L" or "RGB" (the image is loaded and already upright)."""
    mode = im.mode
    if mode in ("RGB", "L"):
        if "transparency" in im.info:  # tRNS key colour: flatten like an alpha channel
            return _on_white(im.convert("LA" if mode == "L" else "RGBA"))
        return im
    if mode in _DEEP_GRAY_MODES:  # a tRNS value on deep gray is ignored (too rare to matter)
        return Image.fromarray(_gray_to_uint8(np.asarray(im)), mode="L")
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        gray = keep_gray and _gray_palette(im)
        if im.has_transparency_data:
            return _on_white(im.convert("LA" if gray else "RGBA"))
        return im.convert("L" if gray else "RGB")
    if mode in _ALPHA_MODES:
        if mode in ("La", "RGBa", "PA"):  # premultiplied / palette: straight alpha first
            im = im.convert("LA" if mode == "La" else "RGBA")
        return _on_white(im)
    try:
        return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...
    except ValueError as exc:
        raise ImageDecodeError(f"unsupported image mode {mode!r}") from exc


def _on_white(im: Image.Image) -> Image.Image:
    """Composite straight-alpha LA/RGBA onto white: sketches must be black on white, not on black."""
    base = _ALPHA_MODES[im.mode]
    out = Image.new(base, im.size, 255 if base == "L" else (255, 255, 255))
    out.paste(im.convert(base) if base == "L" else im, mask=im.getchannel("A"))
    return out


def _gray_palette(im: Image.Image) -> bool:
    """True when every palette entry is a grey (r == g == b), so "L" loses nothing."""
    palette = im.getpalette("RGB")
    if not palette:
        return False
    rgb = np.frombuffer(bytes(palette), dtype=np.uint8).reshape(-1, 3)
    return bool((rgb == rgb[:, :1]).all())


def _gray_to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale deep grayscale to 0..255 instead of letting Pillow clip everything above 255.

    Integers in 0..65535 are read as 16-bit (v / 257, rounded); floats in 0..1 as unit range,
    floats in 0..255 as already 8-bit; anything else (negative, wider) is min-max stretched.
    """
    if a.dtype.kind in "ui":
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo >= 0 and hi <= 65535:
            return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return _stretch(a.astype(np.float64), lo, hi)
    a = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return np.rint(a * 255.0).astype(np.uint8)
    if lo >= 0.0 and hi <= 255.0:
        return np.rint(a).astype(np.uint8)
    return _stretch(a, lo, hi)


def _stretch(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Min-max stretch to 0..255 for values with no known range."""
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.rint((a - lo) * scale).astype(np.uint8)


def _load_reason(exc: Exception) -> str:
    """A short reason for a failure while parsing or decoding pixels."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or "truncated" in message.lower():
        return "truncated image data"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    return f"corrupt image data: {message}"


def _bomb_reason(data: bytes, max_pixels: int, exc: Exception) -> str:
    """Pillow refused the size in Image.open; report WxH when the header is easy to read."""
    _, size = _sniff(data)
    if size is None:
        return f"decompression bomb: {exc}"
    limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or max_pixels))
    return f"decompression bomb: {size[0]}x{size[1]} pixels exceeds limit of {limit}"


def _unidentified_reason(data: bytes) -> str:
    """Tell "not an image at all" apart from "an image whose header is broken"."""
    fmt, size = _sniff(data)
    if fmt is None:
        head = data[:512].lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
            return "not an image (cannot identify format; looks like HTML/XML)"
        if _looks_like_text(head):
            return "not an image (cannot identify format; looks like text)"
        return "not an image (cannot identify format)"
    if size is not None and (size[0] == 0 or size[1] == 0):
        return f"zero-sized image ({size[0]}x{size[1]} in {fmt} header)"
    opener = Image.OPEN.get(fmt)
    try:  # only to learn the plugin's own complaint; the image is discarded unloaded
        if opener is not None:
            opener[0](io.BytesIO(data), "")
    except Exception as exc:
        return f"corrupt {fmt} header: {exc}"
    return f"corrupt {fmt} header"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def _sniff(data: bytes) -> tuple[str | None, tuple[int, int] | None]:
    """Format from the magic bytes, and (w, h) for formats whose size sits at a fixed offset."""
    fmt = next((name for magic, name in _MAGIC if data.startswith(magic)), None)
    try:
        if fmt == "PNG" and data[12:16] == b"IHDR":
            return fmt, struct.unpack(">II", data[16:24])
        if fmt == "GIF":
            return fmt, struct.unpack("<HH", data[6:10])
        if fmt == "BMP" and struct.unpack("<I", data[14:18])[0] >= 40:
            width, height = struct.unpack("<ii", data[18:26])
            return fmt, (abs(width), abs(height))
    except struct.error:
        pass  # header shorter than its fixed fields: format known, size not
    return fmt, None
