"""Rectified input uses P and R and is never undistorted; raw input is undistorted once.

A raw image of bright dots at known 3D points is rendered through the lens model (K, D);
image_proc's rectification (``initUndistortRectifyMap(K, D, R, P)``) gives the matching
``image_rect``. Each stream, with the same CameraInfo, must put every dot where the
calibration the node ends up with (K, ``cam_T_img``) projects its 3D point.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from scaocc_ros.convert import (
    ConversionError,
    Intrinsics,
    Undistorter,
    camera_info_to_intrinsics,
    is_rectified,
)

H, W = 240, 320
K = np.array([[200.0, 0.0, 161.0], [0.0, 205.0, 118.0], [0.0, 0.0, 1.0]])
D = np.array([-0.28, 0.08, 0.001, -0.0015, 0.0])
R = cv2.Rodrigues(np.array([0.01, -0.035, 0.02]))[0]  # a rectifying rotation (stereo left camera)
K_RECT = np.array([[180.0, 0.0, 158.0], [0.0, 180.0, 121.0], [0.0, 0.0, 1.0]])
# 3D points in the CameraInfo frame (z forward), spread over the field of view.
POINTS = np.array([[x, y, 4.0] for x in (-2.2, -1.0, 0.0, 1.2, 2.0) for y in (-1.4, 0.0, 1.3)])


def make_info(baseline_tx: float = 0.0) -> CameraInfo:
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    info.header.frame_id = "cam_optical"
    info.k, info.d, info.r = K.ravel().tolist(), D.tolist(), R.ravel().tolist()
    info.p = np.hstack([K_RECT, [[baseline_tx], [0.0], [0.0]]]).ravel().tolist()
    return info


def render(pixels: np.ndarray) -> np.ndarray:
    """Gaussian dots (sigma 1.5 px) at sub-pixel ``pixels`` (n 2), as an H W 3 uint8 image."""
    rows, cols = np.indices((H, W), dtype=np.float64)
    image = np.zeros((H, W))
    for u, v in pixels:
        image += np.exp(-((cols - u) ** 2 + (rows - v) ** 2) / (2 * 1.5**2))
    return np.repeat((np.clip(image, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def centroids(image: np.ndarray, near: np.ndarray, radius: int = 5) -> np.ndarray:
    """Intensity-weighted centre of the dot within ``radius`` px of each expected pixel."""
    gray = image[..., 0].astype(np.float64)
    out = []
    for u, v in near:
        u0, v0 = int(round(u)), int(round(v))
        win = gray[v0 - radius: v0 + radius + 1, u0 - radius: u0 + radius + 1]
        rows, cols = np.mgrid[v0 - radius: v0 + radius + 1, u0 - radius: u0 + radius + 1]
        out.append([(win * cols).sum() / win.sum(), (win * rows).sum() / win.sum()])
    return np.array(out)


def project(intr: Intrinsics, points_cam: np.ndarray) -> np.ndarray:
    """Pixels of CameraInfo-frame points in the images the node hands to the model."""
    img_T_cam = np.linalg.inv(intr.cam_T_img)
    p = (img_T_cam[:3, :3] @ points_cam.T).T + img_T_cam[:3, 3]
    uvw = (intr.K @ p.T).T
    return uvw[:, :2] / uvw[:, 2:]


def raw_image() -> np.ndarray:
    pixels, _ = cv2.projectPoints(POINTS, np.zeros(3), np.zeros(3), K, D)
    return render(pixels.reshape(-1, 2))


def image_proc_rect(raw: np.ndarray, info: CameraInfo) -> np.ndarray:
    """What image_proc's rectify node publishes on image_rect for this CameraInfo."""
    P = np.asarray(info.p).reshape(3, 4)
    maps = cv2.initUndistortRectifyMap(K, D, R, P, (W, H), cv2.CV_32FC1)
    return cv2.remap(raw, maps[0], maps[1], cv2.INTER_LINEAR)


@pytest.mark.parametrize(
    ("mode", "topic", "expected"),
    [
        ("auto", "/sensors/cam_front/image_rect", True),
        ("auto", "/sensors/cam_front/image_rect_color/compressed", True),
        ("auto", "/sensors/cam_front/image_raw", False),
        ("auto", "/sensors/cam_front/image", False),
        ("auto", "/rectified/image", False),
        ("rect", "/sensors/cam_front/image_raw", True),
        ("raw", "/sensors/cam_front/image_rect", False),
    ],
)
def test_mode_from_parameter_and_topic(mode: str, topic: str, expected: bool) -> None:
    assert is_rectified(mode, topic) is expected


def test_unknown_mode_raises() -> None:
    with pytest.raises(ValueError, match="rectification"):
        is_rectified("yes", "/cam/image")


@pytest.mark.parametrize("distortion", ["undistort", "reject"])
def test_rectified_stream_uses_p_and_r_and_is_not_undistorted_again(distortion: str) -> None:
    info = make_info()
    intr = camera_info_to_intrinsics(info, rectified=is_rectified("auto", "/cam_front/image_rect"))
    assert intr.rectified and not intr.distorted
    np.testing.assert_allclose(intr.K, K_RECT)
    rect = image_proc_rect(raw_image(), info)
    out = Undistorter(distortion)(rect, intr)  # non-zero D in the CameraInfo is not applied again
    np.testing.assert_array_equal(out, rect)
    expected = project(intr, POINTS)
    # The definition of a rectified image: X lands on P (R X, 1).
    P = np.asarray(info.p).reshape(3, 4)
    uvw = (P @ np.hstack([(R @ POINTS.T).T, np.ones((len(POINTS), 1))]).T).T
    np.testing.assert_allclose(expected, uvw[:, :2] / uvw[:, 2:], atol=1e-9)
    np.testing.assert_allclose(centroids(out, expected), expected, atol=0.3)


def test_raw_stream_is_undistorted_once_with_k() -> None:
    info = make_info()
    intr = camera_info_to_intrinsics(info, rectified=is_rectified("auto", "/cam_front/image_raw"))
    assert not intr.rectified and intr.distorted
    np.testing.assert_allclose(intr.K, K)
    np.testing.assert_array_equal(intr.cam_T_img, np.eye(4))
    out = Undistorter("undistort")(raw_image(), intr)
    expected = project(intr, POINTS)
    np.testing.assert_allclose(centroids(out, expected), expected, atol=0.3)


def test_undistorting_a_rectified_stream_again_would_misplace_the_dots() -> None:
    """The bug this guards against: image_rect treated as raw (K, D applied a second time)."""
    info = make_info()
    wrong = camera_info_to_intrinsics(info, rectified=False)
    out = Undistorter("undistort")(image_proc_rect(raw_image(), info), wrong)
    expected = project(wrong, POINTS)
    with np.errstate(invalid="ignore"):  # a window without any dot has no centroid (NaN): misplaced
        err = np.linalg.norm(centroids(out, expected) - expected, axis=1)
    assert np.mean(~(err < 1.0)) > 0.5


def test_stereo_baseline_of_p_is_a_shift_of_the_image_frame() -> None:
    tx = -180.0 * 0.12  # right camera of a 12 cm stereo pair: P[0, 3] = -fx' B
    intr = camera_info_to_intrinsics(make_info(baseline_tx=tx), rectified=True)
    P = np.asarray(make_info(baseline_tx=tx).p).reshape(3, 4)
    uvw = (P @ np.hstack([(R @ POINTS.T).T, np.ones((len(POINTS), 1))]).T).T
    np.testing.assert_allclose(project(intr, POINTS), uvw[:, :2] / uvw[:, 2:], atol=1e-9)
    np.testing.assert_allclose(np.linalg.inv(intr.cam_T_img)[:3, 3], [-0.12, 0.0, 0.0], atol=1e-12)


def test_rectified_binning_and_reduction_keep_the_geometry() -> None:
    info = make_info()
    info.binning_x = info.binning_y = 2
    intr = camera_info_to_intrinsics(info, rectified=True)
    assert intr.image_hw == (H // 2, W // 2)
    np.testing.assert_allclose(intr.K[0], [90.0, 0.0, (158.0 - 0.5) / 2])
    half = intr.reduced(2)
    assert half.rectified and half.image_hw == (H // 4, W // 4)
    np.testing.assert_array_equal(half.cam_T_img, intr.cam_T_img)


def test_rectified_calibration_errors() -> None:
    bad_r = make_info()
    bad_r.r = (2 * np.eye(3)).ravel().tolist()
    with pytest.raises(ConversionError, match="R is not a rotation"):
        camera_info_to_intrinsics(bad_r, rectified=True)
    no_p = make_info()
    no_p.p = [0.0] * 12
    with pytest.raises(ConversionError, match="P is not a valid"):
        camera_info_to_intrinsics(no_p, rectified=True)
    no_p.d = [0.0] * 5  # nothing to undo: K holds
    np.testing.assert_allclose(camera_info_to_intrinsics(no_p, rectified=True).K, K)
    unset_r = make_info()
    unset_r.r = [0.0] * 9  # some drivers leave R unset: identity
    np.testing.assert_array_equal(camera_info_to_intrinsics(unset_r, rectified=True).cam_T_img[:3, :3], np.eye(3))
