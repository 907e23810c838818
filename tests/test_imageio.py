"""Decoding image files (precompute/imageio.py): one conversion to HxWx3 uint8 RGB, and one
limit on the pixels a file may claim, checked before anything is decoded."""

import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from precompute.imageio import read_image, read_label
from precompute.types import InputError
from tests.support.image_files import RNG, rgb, save

# --------------------------------------------------------------------------- conversion


def test_grayscale_rgba_palette_and_bool_to_rgb(tmp_path):
    gray = RNG.integers(0, 256, (3, 4), dtype=np.uint8)
    np.testing.assert_array_equal(read_image(save(tmp_path / "g.png", gray)), np.dstack([gray] * 3))
    rgba = RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    rgba[0, 0, 3] = 0  # fully transparent: its colour is kept, not composited
    np.testing.assert_array_equal(read_image(save(tmp_path / "a.png", rgba)), rgba[..., :3])
    indices = RNG.integers(0, 4, (3, 4), dtype=np.uint8)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], np.uint8)
    palette = Image.fromarray(indices, mode="L").convert("P")
    palette.putpalette(colours.tobytes())
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), colours[indices])
    np.testing.assert_array_equal(read_label(tmp_path / "p.png"), indices)  # labels: indices
    bits = RNG.integers(0, 2, (3, 4)).astype(bool)
    np.testing.assert_array_equal(
        read_image(save(tmp_path / "b.png", bits)), np.dstack([bits * 255] * 3)
    )


def test_sixteen_bit_is_scaled_by_257_in_every_container(tmp_path):
    values = np.array([[0, 128, 129, 385], [2500, 40000, 65406, 65535]], np.uint16)
    expected = np.round(values / 257).astype(np.uint8)
    assert expected.tolist() == [[0, 0, 1, 1], [10, 156, 254, 255]]
    np.testing.assert_array_equal(read_image(save(tmp_path / "g.png", values))[..., 0], expected)
    colour = np.dstack([values, values[::-1], values])
    (tmp_path / "c.png").write_bytes(imagecodecs.png_encode(colour))  # Pillow would cut it
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), np.round(colour / 257))
    tifffile.imwrite(tmp_path / "c.tif", colour, photometric="rgb", compression="lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif"), np.round(colour / 257))
    planar = np.moveaxis(colour, -1, 0)
    tifffile.imwrite(tmp_path / "s.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "s.tif"), np.round(colour / 257))


def test_float_images_in_unit_range_only(tmp_path):
    unit = np.array([[0.0, 0.5, 1 / 255, 1.0]], np.float32)
    tifffile.imwrite(tmp_path / "f.tif", unit)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[..., 1], [[0, 128, 1, 255]])
    tifffile.imwrite(tmp_path / "big.tif", unit * 2)
    with pytest.raises(InputError, match=r"big\.tif: cannot decode image \(float pixels"):
        read_image(tmp_path / "big.tif")
    with pytest.raises(InputError, match=r"f\.tif: annotation has float32 values"):
        read_label(tmp_path / "f.tif")


# --------------------------------------------------------------------------- size limits


def tiff_claiming(path: Path, width: int, height: int) -> Path:
    """A baseline 8-bit gray TIFF header claiming width x height, with no pixel data."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1)]
    tags += [(273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, width * height)]
    ifd = struct.pack("<H", len(tags))
    ifd += b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in tags)
    path.write_bytes(b"II" + struct.pack("<HI", 42, 8) + ifd + struct.pack("<I", 0))
    return path


def png_claiming(path: Path, width: int, height: int, bit_depth: int = 8) -> Path:
    """A PNG signature and IHDR (RGB) claiming width x height, then IEND: no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("maker", [tiff_claiming, png_claiming])
def test_a_header_claiming_60000_squared_is_refused_before_decoding(tmp_path, maker):
    path = maker(tmp_path / f"bomb.{'tif' if maker is tiff_claiming else 'png'}", 60000, 60000)
    assert path.stat().st_size < 300
    with pytest.raises(InputError, match=rf"{path}: .*SAMAUG_MAX_PIXELS") as err:
        read_image(path)
    assert "60000 x 60000" in str(err.value) or "3600000000 pixels" in str(err.value)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".jpg", ".tif", ".png16"])
def test_one_pixel_limit_for_every_decoder(tmp_path, monkeypatch, suffix):
    if suffix == ".png16":  # 16-bit colour PNGs are decoded by imagecodecs, not Pillow
        path = tmp_path / "x.png"
        path.write_bytes(imagecodecs.png_encode(np.zeros((20, 30, 3), np.uint16)))
    else:
        path = save(tmp_path / f"x{suffix}", rgb(20, 30))
    monkeypatch.setenv("SAMAUG_MAX_PIXELS", "599")
    with pytest.raises(InputError, match=rf"{path}: claims 20 x 30 = 600 pixels.*limit of 599"):
        read_image(path)
    with pytest.raises(InputError, match="SAMAUG_MAX_PIXELS"):
        read_label(path)
    monkeypatch.setenv("SAMAUG_MAX_PIXELS", "600")
    assert read_image(path).shape == (20, 30, 3)
    assert Image.MAX_IMAGE_PIXELS == 600 or suffix in (".tif", ".png16")
