"""Image / CameraInfo conversion checked against OpenCV's own conversions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from scaocc_ros.convert import (
    ConversionError,
    Undistorter,
    camera_info_to_intrinsics,
    check_image_size,
    check_stamp,
    compressed_to_rgb,
    image_to_rgb,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)  # odd sizes: no accidental alignment


def make_image(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Pack H W [c] pixels into an Image with ``pad`` garbage bytes at the end of each row."""
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1).view(np.uint8).reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize(
    ("encoding", "to_encoding", "to_rgb"),
    [
        ("rgb8", None, None),
        ("bgr8", cv2.COLOR_RGB2BGR, cv2.COLOR_BGR2RGB),
        ("rgba8", cv2.COLOR_RGB2RGBA, cv2.COLOR_RGBA2RGB),
        ("bgra8", cv2.COLOR_RGB2BGRA, cv2.COLOR_BGRA2RGB),
        ("mono8", cv2.COLOR_RGB2GRAY, cv2.COLOR_GRAY2RGB),
    ],
)
@pytest.mark.parametrize("pad", [0, 7])
def test_raw_encodings_match_opencv(encoding: str, to_encoding: int | None, to_rgb: int | None, pad: int) -> None:
    pixels = RGB if to_encoding is None else cv2.cvtColor(RGB, to_encoding)
    expected = RGB if to_rgb is None else cv2.cvtColor(pixels, to_rgb)
    out = image_to_rgb(make_image(pixels, encoding, pad))
    assert out.dtype == np.uint8 and out.shape == (37, 53, 3)
    np.testing.assert_array_equal(out, expected)
    if encoding in ("bgr8", "bgra8", "rgba8"):
        np.testing.assert_array_equal(out, RGB)  # the colour round trip is lossless


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_respects_byte_order(bigendian: bool) -> None:
    mono16 = RNG.integers(0, 65536, size=(9, 11), dtype=np.uint16)
    msg = make_image(mono16.astype(">u2" if bigendian else "<u2"), "mono16", pad=2, bigendian=bigendian)
    expected = cv2.cvtColor((mono16 >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    np.testing.assert_array_equal(image_to_rgb(msg), expected)


def test_malformed_raw_images_raise() -> None:
    good = make_image(RGB, "rgb8")
    bad_step = make_image(RGB, "rgb8")
    bad_step.step = 53 * 3 - 1
    short = make_image(RGB, "rgb8")
    short.data = bytes(good.data)[:-1]
    unknown = make_image(RGB, "rgb8")
    unknown.encoding = "32FC1"
    empty = Image(encoding="rgb8")
    for msg, match in [(bad_step, "step"), (short, "bytes"), (unknown, "unknown image encoding"), (empty, "empty")]:
        with pytest.raises(ConversionError, match=match):
            image_to_rgb(msg)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed_matches_opencv_decode(ext: str) -> None:
    ok, data = cv2.imencode(ext, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format="jpeg" if ext == ".jpg" else "png")
    msg.data = data.tobytes()
    out = compressed_to_rgb(msg)
    expected = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, expected)
    if ext == ".png":
        np.testing.assert_array_equal(out, RGB)


def test_undecodable_compressed_raises() -> None:
    ok, data = cv2.imencode(".jpg", RGB)
    msg = CompressedImage(format="jpeg")
    msg.data = b"\x00garbage" + data.tobytes()[8:100]
    with pytest.raises(ConversionError, match="cannot decode"):
        compressed_to_rgb(msg)


def make_info(**kw: object) -> CameraInfo:
    info = CameraInfo(width=1600, height=900, distortion_model="plumb_bob")
    info.k = [1200.0, 0.0, 800.0, 0.0, 1100.0, 450.0, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    for k, v in kw.items():
        setattr(info, k, v)
    return info


def test_intrinsics_full_frame() -> None:
    intr = camera_info_to_intrinsics(make_info())
    np.testing.assert_allclose(intr.K, np.array(make_info().k).reshape(3, 3))
    assert intr.image_hw == (900, 1600) and not intr.distorted


def test_intrinsics_roi_and_binning_project_like_the_sensor() -> None:
    info = make_info(binning_x=2, binning_y=2)
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 50, 1200, 800
    intr = camera_info_to_intrinsics(info)
    assert intr.image_hw == (400, 600)
    # A 3D point projects to raw pixel (u, v); in the binned ROI image it lies on the pixel
    # whose raw 2x2 block contains it: u' = (u - x0 - 0.5) / 2.
    K = np.array(info.k).reshape(3, 3)
    p = np.array([0.3, -0.2, 5.0])
    u, v = (K @ p)[:2] / p[2]
    u2, v2 = (intr.K @ p)[:2] / p[2]
    assert u2 == pytest.approx((u - 100 - 0.5) / 2) and v2 == pytest.approx((v - 50 - 0.5) / 2)


@pytest.mark.parametrize(
    ("k", "match"),
    [([float("nan")] + [0.0] * 8, "not finite"), ([0.0] * 9, "not a valid intrinsic")],
)
def test_bad_intrinsics_raise(k: list[float], match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        camera_info_to_intrinsics(make_info(k=k))


def test_distortion_undistorted_or_refused() -> None:
    info = make_info(width=160, height=90)
    info.k = [120.0, 0.0, 80.0, 0.0, 110.0, 45.0, 0.0, 0.0, 1.0]
    info.d = [-0.3, 0.1, 0.0, 0.0, 0.0]
    intr = camera_info_to_intrinsics(info)
    assert intr.distorted
    image = RNG.integers(0, 256, size=(90, 160, 3), dtype=np.uint8)
    with pytest.raises(ConversionError, match="reject"):
        Undistorter("reject")(image, intr)
    out = Undistorter("undistort")(image, intr)
    np.testing.assert_array_equal(out, cv2.undistort(image, intr.K, intr.D))
    bad = make_info(distortion_model="weird")
    bad.d = [0.1]
    with pytest.raises(ConversionError, match="cannot undistort"):
        Undistorter("undistort").check(camera_info_to_intrinsics(bad))


def test_stamp_and_size_checks() -> None:
    check_stamp(10, 10, max_future_ns=5, max_age_ns=5)
    with pytest.raises(ConversionError, match="future"):
        check_stamp(20, 10, max_future_ns=5, max_age_ns=5)
    with pytest.raises(ConversionError, match="past"):
        check_stamp(0, 10, max_future_ns=5, max_age_ns=5)
    intr = camera_info_to_intrinsics(make_info())
    with pytest.raises(ConversionError, match="camera_info says 1600x900"):
        check_image_size(np.zeros((450, 800, 3), np.uint8), intr)
