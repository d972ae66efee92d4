"""Files that tests write on the fly: broken and unusual images, tiny sketch datasets in both layouts."""

from __future__ import annotations

import csv
import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def draw_sketch(size: tuple[int, int] = (128, 128), seed: int = 0, *, mode: str = "L") -> Image.Image:
    """Random black strokes on white; "RGBA"/"LA" get a transparent *black* background.

    Transparent black is what real sketch PNGs hold, and what turns black-on-black when a
    decoder drops the alpha channel instead of compositing onto white.
    """
    rng = np.random.default_rng(seed)
    ink = Image.new("L", size, 0)
    draw = ImageDraw.Draw(ink)
    w, h = size
    for _ in range(int(rng.integers(3, 8))):
        points = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(4)]
        draw.line(points, fill=255, width=int(rng.integers(1, 4)))
    if mode in ("RGBA", "LA"):
        out = Image.new(mode[:-1], size, 0)
        out.putalpha(ink)
        return out
    paper = ink.point(lambda v: 255 - v)
    return paper if mode == "L" else paper.convert(mode)


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    """The bytes of `im` saved as `fmt`."""
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def noise_jpeg(size: tuple[int, int] = (128, 128), seed: int = 0) -> bytes:
    """A JPEG whose entropy-coded body dominates its size (so cutting it cuts pixel data)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=90)


def patch_png_size(png: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR width/height of a PNG and recompute its CRC, so only the size lies."""
    out = bytearray(png)
    out[16:24] = struct.pack(">II", width, height)
    out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    return bytes(out)


#: Every file write_bad_images writes, with a substring of the reason decode_image must give.
BAD_REASONS: dict[str, str] = {
    "empty.jpg": "empty file (0 bytes)",
    "random_bytes.jpg": "not an image (cannot identify format)",
    "text.png": "not an image",
    "page.jpg": "looks like HTML",
    "truncated.jpg": "truncated image data",
    "truncated.png": "truncated image data",
    "truncated_header.png": "truncated image data",
    "header_only.bmp": "truncated image data",
    "corrupt_header.jpg": "corrupt JPEG header",
    "corrupt_body.jpg": "corrupt image data",
    "bad_crc.png": "bad header checksum",
    "garbage_idat.png": "corrupt image data",
    "header_only.gif": "corrupt GIF header",
    "bomb.png": "decompression bomb: 50000x50000",
    "zero_width.png": "zero-sized image",
}


def bad_image_bytes() -> dict[str, bytes]:
    """The content of each BAD_REASONS file, built in memory (deterministic)."""
    rng = np.random.default_rng(1234)
    jpeg = noise_jpeg()
    png = encode(draw_sketch((64, 64), seed=1), "PNG")
    sos = jpeg.index(b"\xff\xda")
    idat = png.index(b"IDAT")
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # IHDR CRC
    garbage_idat = bytearray(png)
    garbage_idat[idat + 4 : idat + 44] = rng.bytes(40)
    return {
        "empty.jpg": b"",
        "random_bytes.jpg": b"\x00" + rng.bytes(2047),
        "text.png": b"this is a text file, not a PNG\n",
        "page.jpg": b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
        b"<body><h1>Not Found</h1></body></html>\n",
        "truncated.jpg": jpeg[: int(len(jpeg) * 0.6)],
        "truncated.png": png[: int(len(png) * 0.6)],
        "truncated_header.png": png[:20],
        "header_only.bmp": encode(Image.new("RGB", (100, 100)), "BMP")[:54],
        "corrupt_header.jpg": jpeg[:20] + rng.bytes(3000),  # SOI + APP0, then no markers
        "corrupt_body.jpg": jpeg[: sos + 14] + rng.bytes(3000) + b"\xff\xd9",
        "bad_crc.png": bytes(bad_crc),
        "garbage_idat.png": bytes(garbage_idat),
        "header_only.gif": b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0) + b";",
        "bomb.png": patch_png_size(png, 50000, 50000),  # 40 bytes of header, 2.5 G pixels
        "zero_width.png": patch_png_size(png, 0, 64),
    }


def write_bad_images(folder: Path) -> dict[str, str]:
    """Write files that must fail decoding; returns {filename: substring of the expected reason}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in bad_image_bytes().items():
        (folder / name).write_bytes(data)
    return dict(BAD_REASONS)


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def _odd_images() -> dict[str, tuple[Image.Image, dict]]:
    """{filename: (image to save, save params)}; saved with the format the extension names."""
    colours = np.array([[255, 0, 0], [0, 128, 255], [20, 200, 20], [250, 250, 0]], np.uint8)
    palette = colours.flatten().tolist()
    indices = Image.fromarray(np.arange(24 * 16, dtype=np.uint8).reshape(16, 24) % 4)
    p_colour = indices.copy()
    p_colour.putpalette(palette)
    p_gray = indices.copy()
    p_gray.putpalette([v for g in (0, 85, 170, 255) for v in (g, g, g)])
    ramp16 = np.linspace(0, 65535, 32 * 8).astype(np.uint16).reshape(8, 32)
    ramp_f = np.linspace(0.0, 1.0, 16 * 8, dtype=np.float32).reshape(8, 16)
    rotated = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (20, 1))).convert("RGB")
    return {
        "sketch_rgba.png": (draw_sketch((64, 64), 2, mode="RGBA"), {}),
        "sketch_la.png": (draw_sketch((64, 64), 3, mode="LA"), {}),
        "p_transparent.png": (p_colour, {"transparency": 0}),
        "p_opaque.png": (p_colour, {}),
        "p_gray.png": (p_gray, {}),
        "gray16.png": (Image.fromarray(ramp16), {}),
        "gray16be.tif": (Image.fromarray(ramp16.astype(">u2")), {}),
        "gray16.pgm": (Image.fromarray(ramp16), {}),  # maxval 65535: Pillow opens it as "I"
        "int32.tif": (Image.fromarray(ramp16.astype(np.int32)), {}),
        "float.tif": (Image.fromarray(ramp_f), {}),
        "bilevel.png": (draw_sketch((48, 32), 4).convert("1"), {}),
        "cmyk.jpg": (draw_sketch((40, 30), 5, mode="RGB").convert("CMYK"), {}),
        "gray.jpg": (draw_sketch((40, 30), 6), {}),
        "exif_rotated.jpg": (rotated, {"exif": _exif_orientation(6), "quality": 95}),
        "one_pixel.png": (Image.new("RGB", (1, 1), (10, 20, 30)), {}),
        "wide.png": (draw_sketch((2000, 20), 7), {}),
        "gray_as_rgb.png": (draw_sketch((32, 32), 8, mode="RGB"), {}),
        "gray_trns.png": (draw_sketch((32, 32), 9), {"transparency": 255}),
        "rgb.webp": (draw_sketch((32, 24), 10, mode="RGB"), {"lossless": True}),
        "rgb.bmp": (draw_sketch((30, 20), 11, mode="RGB"), {}),
        "gray.pgm": (draw_sketch((30, 20), 12), {}),
        "rgb.ppm": (draw_sketch((30, 20), 13, mode="RGB"), {}),
    }


_FORMATS = {
    "png": "PNG", "jpg": "JPEG", "tif": "TIFF", "webp": "WEBP", "bmp": "BMP", "pgm": "PPM", "ppm": "PPM",
    "gif": "GIF",
}  # fmt: skip

#: Every file write_odd_images writes, with the mode decode_image(keep_gray=True) returns.
ODD_MODES: dict[str, str] = {
    "sketch_rgba.png": "RGB", "sketch_la.png": "L", "p_transparent.png": "RGB", "p_opaque.png": "RGB",
    "p_gray.png": "L", "gray16.png": "L", "gray16be.tif": "L", "gray16.pgm": "L", "int32.tif": "L",
    "float.tif": "L", "bilevel.png": "L", "cmyk.jpg": "RGB", "gray.jpg": "L", "exif_rotated.jpg": "RGB",
    "one_pixel.png": "RGB", "wide.png": "L", "gray_as_rgb.png": "RGB", "gray_trns.png": "L",
    "rgb.webp": "RGB", "rgb.bmp": "RGB", "gray.pgm": "L", "rgb.ppm": "RGB", "animated.gif": "RGB",
}  # fmt: skip


def write_odd_images(folder: Path) -> dict[str, dict]:
    """Write unusual but valid images; returns {filename: {"mode": ..., "size": (w, h)}}.

    "mode"/"size" are what decode_image(keep_gray=True) must return (size after EXIF rotation).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, dict] = {}
    for name, (im, params) in _odd_images().items():
        im.save(folder / name, _FORMATS[name.rsplit(".", 1)[1]], **params)
        size = (im.height, im.width) if name == "exif_rotated.jpg" else im.size
        expected[name] = {"mode": ODD_MODES[name], "size": size}
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    red.save(folder / "animated.gif", "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    expected["animated.gif"] = {"mode": ODD_MODES["animated.gif"], "size": (32, 32)}
    return expected


def _write_images(folder: Path, stems: Sequence[str], *, seed: int, fmt_cycle: Sequence[str]) -> list[str]:
    """Save one 64x64 sketch per stem (distinct content), cycling formats; returns file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, stem in enumerate(stems):
        ext = fmt_cycle[i % len(fmt_cycle)]
        draw_sketch((64, 64), seed + i).save(folder / f"{stem}.{ext}", _FORMATS[ext])
        names.append(f"{stem}.{ext}")
    return names


def write_folder_dataset(
    root: Path,
    *,
    classes: Sequence[str] = ("cat", "dog", "owl"),
    per_class: int = 3,
    val_per_class: int = 1,
    test: int = 4,
    fmt_cycle: Sequence[str] = ("png", "jpg"),
) -> Path:
    """MVA RecVis layout: train_images/<class>/, val_images/<class>/, test_images/mistery_category/."""
    root = Path(root)
    for c, name in enumerate(classes):
        stems = [f"{name}_{i:03d}" for i in range(per_class)]
        _write_images(root / "train_images" / name, stems, seed=1000 * c, fmt_cycle=fmt_cycle)
        if val_per_class:
            stems = [f"{name}_val_{i:03d}" for i in range(val_per_class)]
            _write_images(root / "val_images" / name, stems, seed=1000 * c + 500, fmt_cycle=fmt_cycle)
    if test:
        stems = [f"test_{i:03d}" for i in range(test)]
        _write_images(root / "test_images" / "mistery_category", stems, seed=99_000, fmt_cycle=fmt_cycle)
    return root


def write_csv_dataset(
    root: Path,
    *,
    classes: Sequence[str] = ("cat", "dog", "owl"),
    per_class: int = 3,
    val_per_class: int = 0,
    test: int = 4,
    fmt_cycle: Sequence[str] = ("png", "jpg"),
) -> Path:
    """Boostcamp layout: train.csv (class_name,image_path,target) over train/<class>/, test.csv over test/.

    target = position in `classes` as given (not sorted); test.csv lists files in reverse name
    order so that its row order differs from sorted ids; val_per_class > 0 adds val.csv.
    """
    root = Path(root)
    train_rows, val_rows = [], []
    for target, name in enumerate(classes):
        stems = [f"{name}_{i:03d}" for i in range(per_class + val_per_class)]
        files = _write_images(root / "train" / name, stems, seed=1000 * target, fmt_cycle=fmt_cycle)
        rows = [(name, f"{name}/{f}", target) for f in files]
        train_rows += rows[:per_class]
        val_rows += rows[per_class:]
    header = ("class_name", "image_path", "target")
    _write_csv(root / "train.csv", header, train_rows)
    if val_per_class:
        _write_csv(root / "val.csv", header, val_rows)
    files = _write_images(root / "test", [f"test_{i:03d}" for i in range(test)], seed=99_000, fmt_cycle=fmt_cycle)
    _write_csv(root / "test.csv", ("image_path",), [(f,) for f in reversed(files)])
    return root


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def store_contents(cache: Path, name: str = "pixels") -> dict:
    """Every split of a set as (ids, labels, features): what two stores must agree on to be equal."""
    from featstore.store import open_feature_set

    fs = open_feature_set(name, cache=cache)
    return {s: (list(d.ids), d.labels.tolist(), d.features.copy()) for s in fs.splits for d in [fs.load(s)]}


def assert_same_store(a: dict, b: dict) -> None:
    import numpy as np

    assert a.keys() == b.keys()
    for s in a:
        assert a[s][:2] == b[s][:2]
        np.testing.assert_array_equal(a[s][2], b[s][2])
