"""Every raw encoding against an independent per-pixel reference, with padded ``step``.

The references are written here from the encodings' definitions (byte orders, BT.601
limited-range YUV, bilinear demosaicing) in plain numpy, not with the OpenCV conversions
that :mod:`scaocc_ros.encodings` uses.
"""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from scaocc_ros.encodings import ENCODINGS, ConversionError, check_image, image_to_rgb

RNG = np.random.default_rng(1)
H, W = 38, 54  # even (chroma subsampling), not a multiple of 4 or 8
PADS = [0, 5]  # garbage bytes after every row


def pack(rows: np.ndarray, encoding: str, width: int, height: int, pad: int, bigendian: bool = False) -> Image:
    """An Image whose ``data`` is ``rows`` (``n_rows x row_bytes`` uint8) with ``pad`` bytes of 0xAB per row."""
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


def as_rows(values: np.ndarray, height: int) -> np.ndarray:
    """Any ``height ...`` array as its bytes, one row per image row."""
    return np.ascontiguousarray(values).view(np.uint8).reshape(height, -1)


# ---- direct pixel encodings ------------------------------------------------------------------
ORDER = {"rgb": [0, 1, 2], "bgr": [2, 1, 0], "rgba": [0, 1, 2], "bgra": [2, 1, 0]}


@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("name", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_8bit_colour(name: str, pad: int) -> None:
    channels = 4 if "a" in name[:-1] else 3
    raw = RNG.integers(0, 256, size=(H, W, channels), dtype=np.uint8)
    expected = np.stack([raw[..., c] for c in ORDER[name[:-1]]], axis=-1)  # the colour bytes, RGB order
    out = image_to_rgb(pack(as_rows(raw, H), name, W, H, pad))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("pad", PADS)
def test_mono8(pad: int) -> None:
    raw = RNG.integers(0, 256, size=(H, W), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(pack(raw, "mono8", W, H, pad)), np.repeat(raw[..., None], 3, axis=-1))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 6])
@pytest.mark.parametrize("name", ["mono16", "rgb16", "bgr16", "rgba16", "bgra16"])
def test_16bit_high_byte_and_byte_order(name: str, pad: int, bigendian: bool) -> None:
    channels = {"mono16": 1, "rgb16": 3, "bgr16": 3, "rgba16": 4, "bgra16": 4}[name]
    values = RNG.integers(0, 65536, size=(H, W, channels), dtype=np.uint16)
    stored = values.astype(">u2" if bigendian else "<u2")
    high = (values >> 8).astype(np.uint8)
    expected = np.repeat(high, 3, axis=-1) if channels == 1 else np.stack([high[..., c] for c in ORDER[name[:-2]]], -1)
    out = image_to_rgb(pack(as_rows(stored, H), name, W, H, pad, bigendian))
    np.testing.assert_array_equal(out, expected)


# ---- YUV -------------------------------------------------------------------------------------
def bt601(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per-pixel BT.601 limited-range YUV -> RGB (uint8), the textbook coefficients."""
    c, d, e = 1.164 * (y.astype(float) - 16), u.astype(float) - 128, v.astype(float) - 128
    rgb = np.stack([c + 1.596 * e, c - 0.391 * d - 0.813 * e, c + 2.018 * d], axis=-1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def yuv_planes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = RNG.integers(16, 236, size=(H, W), dtype=np.uint8)
    u = RNG.integers(16, 241, size=(H, W // 2), dtype=np.uint8)  # one per 2 columns (4:2:2)
    v = RNG.integers(16, 241, size=(H, W // 2), dtype=np.uint8)
    return y, u, v


def assert_close(out: np.ndarray, expected: np.ndarray) -> None:
    """OpenCV's fixed-point YUV differs from the float formula by rounding only."""
    assert out.shape == expected.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 2


@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("name", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_packed_yuv422(name: str, pad: int) -> None:
    y, u, v = yuv_planes()
    packed = np.empty((H, W * 2), np.uint8)
    if name in ("yuv422", "uyvy"):  # U Y0 V Y1
        packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = u, y[:, 0::2], v, y[:, 1::2]
    else:  # Y0 U Y1 V
        packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = y[:, 0::2], u, y[:, 1::2], v
    out = image_to_rgb(pack(packed, name, W, H, pad))
    assert_close(out, bt601(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1)))


@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("name", ["nv12", "nv21"])
def test_semi_planar_yuv420(name: str, pad: int) -> None:
    y = RNG.integers(16, 236, size=(H, W), dtype=np.uint8)
    u = RNG.integers(16, 241, size=(H // 2, W // 2), dtype=np.uint8)  # one per 2x2 block (4:2:0)
    v = RNG.integers(16, 241, size=(H // 2, W // 2), dtype=np.uint8)
    chroma = np.empty((H // 2, W), np.uint8)
    chroma[:, 0::2], chroma[:, 1::2] = (u, v) if name == "nv12" else (v, u)
    out = image_to_rgb(pack(np.concatenate([y, chroma]), name, W, H, pad))
    up = lambda c: np.repeat(np.repeat(c, 2, axis=0), 2, axis=1)  # noqa: E731
    assert_close(out, bt601(y, up(u), up(v)))


# ---- Bayer -----------------------------------------------------------------------------------
def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample ``rgb`` through the colour filter ``pattern`` (top-left 2x2 block, row by row)."""
    channel = np.array(["rgb".index(c) for c in pattern]).reshape(2, 2)
    rows, cols = np.indices(rgb.shape[:2])
    return np.take_along_axis(rgb, channel[rows % 2, cols % 2][..., None], axis=-1)[..., 0]


def bilinear_demosaic(raw: np.ndarray, pattern: str) -> np.ndarray:
    """Textbook bilinear demosaic: each missing colour is the mean of its samples among the 8
    neighbours (2 or 4 of them in any Bayer pattern); the border is left 0 (not compared)."""
    h, w = raw.shape
    rows, cols = np.indices((h, w))
    site = np.array(list(pattern)).reshape(2, 2)[rows % 2, cols % 2]
    f = raw.astype(float)
    out = np.zeros((h, w, 3))
    for c, name in enumerate("rgb"):
        have = site == name
        total, count = np.zeros((h - 2, w - 2)), np.zeros((h - 2, w - 2))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                window = (slice(1 + dy, h - 1 + dy), slice(1 + dx, w - 1 + dx))
                total += have[window] * f[window]
                count += have[window]
        out[1:-1, 1:-1, c] = np.where(have[1:-1, 1:-1], f[1:-1, 1:-1], total / count)
    return out


@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer(pattern: str, pad: int) -> None:
    name = f"bayer_{pattern}8"
    # A smooth scene: bilinear demosaicing is near exact, so a wrong pattern cannot pass.
    rows, cols = np.indices((H, W))
    rgb = np.stack([20 + 4 * cols, 30 + 5 * rows, 240 - 2 * cols - 2 * rows], -1).clip(0, 255).astype(np.uint8)
    raw = mosaic(rgb, pattern)
    out = image_to_rgb(pack(raw, name, W, H, pad))
    assert out.shape == (H, W, 3)
    # The sampled colour of every inner pixel comes through unchanged (OpenCV fills the
    # one-pixel border from its neighbours)...
    np.testing.assert_array_equal(mosaic(out, pattern)[1:-1, 1:-1], raw[1:-1, 1:-1])
    # ...and the interior matches the textbook bilinear demosaic (and the scene).
    ref = bilinear_demosaic(raw, pattern)
    inner = (slice(1, -1), slice(1, -1))
    assert np.abs(out[inner].astype(float) - ref[inner]).max() <= 1
    assert np.abs(out[inner].astype(int) - rgb[inner].astype(int)).max() <= 1


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_random_mosaic_interior(pattern: str) -> None:
    raw = RNG.integers(0, 256, size=(H, W), dtype=np.uint8)
    out = image_to_rgb(pack(raw, f"bayer_{pattern}8", W, H, 3))
    np.testing.assert_array_equal(mosaic(out, pattern)[1:-1, 1:-1], raw[1:-1, 1:-1])
    ref = bilinear_demosaic(raw, pattern)
    assert np.abs(out[1:-1, 1:-1].astype(float) - ref[1:-1, 1:-1]).max() <= 1


# ---- validation ------------------------------------------------------------------------------
def test_every_encoding_is_covered() -> None:
    tested = {"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "rgb16", "bgr16", "rgba16", "bgra16",
              "yuv422", "uyvy", "yuv422_yuy2", "yuyv", "nv12", "nv21",
              "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"}
    assert set(ENCODINGS) == tested


@pytest.mark.parametrize(
    ("encoding", "width", "height", "step", "size", "match"),
    [
        ("uyvy", 5, 4, 10, 40, "even width"),
        ("nv12", 6, 3, 6, 27, "even height"),
        ("nv12", 6, 4, 6, 24, r"step \* height \* 3 / 2 = 36"),
        ("yuyv", 6, 4, 11, 44, "step 11 < width"),
        ("32FC1", 6, 4, 24, 96, "unknown image encoding"),
    ],
)
def test_malformed(encoding: str, width: int, height: int, step: int, size: int, match: str) -> None:
    msg = Image(height=height, width=width, encoding=encoding, step=step)
    msg.data = bytes(size)
    with pytest.raises(ConversionError, match=match):
        check_image(msg)
