"""decode_image: every broken file fails with its reason, every odd valid file comes out 8-bit L/RGB."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from corpus import (
    BAD_REASONS,
    ODD_MODES,
    draw_sketch,
    encode,
    noise_jpeg,
    patch_png_size,
    write_bad_images,
    write_odd_images,
)
from PIL import Image, ImageFile

from featstore.errors import ImageDecodeError
from featstore.images import DEFAULT_MAX_PIXELS, decode_image, read_bytes, sha1_bytes


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    write_bad_images(folder)
    return folder


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    folder = tmp_path_factory.mktemp("odd")
    return folder, write_odd_images(folder)


def _pixels(source: bytes | Path, **kwargs) -> np.ndarray:
    return np.asarray(decode_image(source, **kwargs))


# --- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BAD_REASONS))
def test_bad_image_raises_with_reason(bad_dir: Path, name: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(bad_dir / name)
    assert BAD_REASONS[name] in str(info.value)


@pytest.mark.parametrize("name", sorted(BAD_REASONS))
def test_bad_image_bytes_give_the_same_reason(bad_dir: Path, name: str) -> None:
    with pytest.raises(ImageDecodeError) as from_path:
        decode_image(str(bad_dir / name))
    with pytest.raises(ImageDecodeError) as from_bytes:
        decode_image((bad_dir / name).read_bytes())
    assert str(from_bytes.value) == str(from_path.value)


def test_bomb_is_refused_from_the_header_with_its_size() -> None:
    png = encode(draw_sketch((64, 64)), "PNG")
    with pytest.raises(ImageDecodeError, match=r"^decompression bomb: 64x64 pixels exceeds limit of 4095$"):
        decode_image(png, max_pixels=64 * 64 - 1)
    assert decode_image(png, max_pixels=64 * 64).size == (64, 64)


def test_pillow_bomb_warning_does_not_escape_and_max_pixels_decides() -> None:
    # 10000x10000 is above Pillow's warning threshold, below its hard limit: only 40 bytes here.
    claim = patch_png_size(encode(draw_sketch((8, 8)), "PNG"), 10_000, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageDecodeError, match="truncated image data"):
            decode_image(claim)  # size accepted by the default limit, then the data runs out
        with pytest.raises(ImageDecodeError, match="decompression bomb: 10000x10000"):
            decode_image(claim, max_pixels=10**7)


def test_default_limit_is_pillows_hard_limit() -> None:
    assert DEFAULT_MAX_PIXELS == 178_956_970


@pytest.mark.skipif(os.name != "posix", reason="permissions")
def test_read_bytes_reasons(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="cannot read file: No such file"):
        read_bytes(tmp_path / "missing.png")
    with pytest.raises(ImageDecodeError, match="cannot read file: Is a directory"):
        decode_image(tmp_path)
    locked = tmp_path / "locked.png"
    locked.write_bytes(encode(draw_sketch((8, 8)), "PNG"))
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(ImageDecodeError, match="cannot read file: Permission denied"):
            decode_image(locked)
    finally:
        locked.chmod(0o644)


def test_pillow_global_state_is_untouched(bad_dir: Path, odd: tuple[Path, dict]) -> None:
    before = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS, list(warnings.filters))
    for name in BAD_REASONS:
        with pytest.raises(ImageDecodeError):
            decode_image(bad_dir / name)
    for name in ODD_MODES:
        decode_image(odd[0] / name)
    assert (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS, list(warnings.filters)) == before


# --- odd but valid images ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ODD_MODES))
def test_odd_image_mode_and_size(odd: tuple[Path, dict], name: str) -> None:
    folder, expected = odd
    im = decode_image(folder / name)
    assert (im.mode, im.size) == (expected[name]["mode"], expected[name]["size"])
    assert not getattr(im, "tile", None)  # fully loaded, nothing left to decode lazily


@pytest.mark.parametrize("name", sorted(ODD_MODES))
def test_keep_gray_false_always_gives_rgb(odd: tuple[Path, dict], name: str) -> None:
    folder, expected = odd
    gray = decode_image(folder / name)
    rgb = decode_image(folder / name, keep_gray=False)
    assert (rgb.mode, rgb.size) == ("RGB", expected[name]["size"])
    assert np.array_equal(np.asarray(gray.convert("RGB")), np.asarray(rgb))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_sketch_is_black_on_white(mode: str) -> None:
    sketch = draw_sketch((64, 64), seed=5, mode=mode)
    alpha = np.asarray(sketch.getchannel("A"))
    out = _pixels(encode(sketch, "PNG"))
    out = out if out.ndim == 3 else out[..., None]
    assert out[0, 0].tolist() == [255] * out.shape[-1]
    assert (out[alpha == 0] == 255).all() and (out[alpha == 255] == 0).all()
    assert (alpha == 255).any()


def test_palette_transparency_is_white() -> None:
    im = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8))
    im.putpalette([0, 0, 0, 200, 10, 10])
    out = _pixels(encode(im, "PNG", transparency=0))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [200, 10, 10]


def test_gray_palette_becomes_exact_l() -> None:
    im = Image.fromarray(np.array([[0, 1, 2]], np.uint8))
    im.putpalette([0, 0, 0, 77, 77, 77, 255, 255, 255])
    assert _pixels(encode(im, "PNG")).tolist() == [[0, 77, 255]]


@pytest.mark.parametrize("fmt, dtype", [("PNG", "<u2"), ("TIFF", ">u2"), ("PPM", "<u2")])
def test_16bit_gray_is_scaled_not_clipped(fmt: str, dtype: str) -> None:
    values = np.array([[0, 257, 32768, 65535, 128 * 257]], dtype=dtype)
    assert _pixels(encode(Image.fromarray(values), fmt)).tolist() == [[0, 1, 128, 255, 128]]


@pytest.mark.parametrize(
    "values, expected",
    [
        ([[0.0, 0.5, 1.0]], [[0, 128, 255]]),  # unit range
        ([[0.0, 100.0, 255.0]], [[0, 100, 255]]),  # already 8-bit
        ([[-1.0, 0.0, 1.0]], [[0, 128, 255]]),  # unknown range: stretched
        ([[np.nan, 0.25, 1.0]], [[0, 64, 255]]),  # NaN has no value: black
    ],
)
def test_float_gray_is_scaled(values: list, expected: list) -> None:
    im = Image.fromarray(np.array(values, np.float32))
    assert _pixels(encode(im, "TIFF")).tolist() == expected


def test_int32_beyond_16_bits_is_stretched() -> None:
    im = Image.fromarray(np.array([[0, 100_000, 200_000]], np.int32))
    assert _pixels(encode(im, "TIFF")).tolist() == [[0, 128, 255]]


def test_exif_orientation_is_applied(odd: tuple[Path, dict]) -> None:
    # The file holds a 40x20 ramp growing left to right; orientation 6 shows it rotated clockwise.
    out = _pixels(odd[0] / "exif_rotated.jpg").astype(int)[..., 0]
    assert out.shape == (40, 20)
    assert out[0].mean() < 20 and out[-1].mean() > 200
    assert np.abs(out - out[:, :1]).max() < 8  # constant along rows


def test_animated_gif_gives_the_first_frame(odd: tuple[Path, dict]) -> None:
    assert _pixels(odd[0] / "animated.gif")[5, 5].tolist() == [255, 0, 0]


def test_bilevel_is_black_and_white(odd: tuple[Path, dict]) -> None:
    assert set(np.unique(_pixels(odd[0] / "bilevel.png"))) <= {0, 255}


def test_cmyk_is_converted_to_rgb(odd: tuple[Path, dict]) -> None:
    out = _pixels(odd[0] / "cmyk.jpg").astype(int)
    assert out[0, 0].min() > 200  # white paper stays white, not inverted


def test_jpeg_pixels_are_exactly_what_pillow_decodes() -> None:
    data = noise_jpeg((96, 64))
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(_pixels(data), reference)  # no draft / reduced-scale decoding


def test_rgb_with_gray_content_stays_rgb() -> None:
    assert decode_image(encode(draw_sketch((16, 16), mode="RGB"), "PNG")).mode == "RGB"


def test_sources_path_str_and_bytes_agree(odd: tuple[Path, dict]) -> None:
    path = odd[0] / "p_opaque.png"
    frames = [_pixels(path), _pixels(str(path)), _pixels(path.read_bytes())]
    assert all(np.array_equal(frames[0], f) for f in frames[1:])


def test_sha1_bytes() -> None:
    assert sha1_bytes(b"abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"
