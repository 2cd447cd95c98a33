"""Compressed images decoded at 1/s with matching intrinsics give the network what a full decode does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from scaocc_core.config import ImageConfig, load_config
from scaocc_core.data.rig import NUSCENES_CAMERAS, default_sample_dir, load_nuscenes_sample_rig
from scaocc_core.predictor import Predictor, PredictorInput
from scaocc_ros.convert import (
    ConversionError,
    Intrinsics,
    box_reduce,
    camera_info_to_intrinsics,
    check_image_size,
    compressed_to_rgb,
    decode,
)
from scaocc_ros.params import NodeParams
from scaocc_ros.pipeline import CameraFrame, CameraSetPipeline
from scaocc_ros.sync import SyncedSet
from scaocc_ros.tools import ros_types, synth_msgs

ROOT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "model" / "scaocc_tiny.yaml"
RIG = load_nuscenes_sample_rig()
#: Mean |reduced - full| of a network image, in [0, 1]. Measured 0.34-0.37 / 255 on the six
#: sample JPEGs at 1/4; a half-pixel misalignment of the reduced image gives 4.3-6.6 / 255.
MAD_BOUND = 1.5 / 255


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """The tiny model at a 128x352 input (1/4 decoding of 900x1600), random weights: only its
    preprocessing matters here."""
    cfg = load_config(ROOT_CONFIG)
    return Predictor.from_config(dataclasses.replace(cfg, image=ImageConfig(6, 128, 352)).validate())


def sample_jpegs() -> list[CompressedImage]:
    """The six nuScenes sample JPEGs (1600x900) as CompressedImage messages, rig order."""
    msgs = []
    for name in NUSCENES_CAMERAS:
        (path,) = default_sample_dir().glob(f"*__{name}__*.jpg")
        msg = CompressedImage(format="jpeg")
        msg.data = path.read_bytes()
        msgs.append(msg)
    return msgs


def info_of(i: int) -> CameraInfo:
    cam = RIG.cameras[i]
    info = CameraInfo(width=cam.width, height=cam.height, distortion_model="plumb_bob")
    info.k = cam.K.ravel().tolist()
    info.d = [0.0] * 5
    return info


def effective_projection(feeds: dict[str, np.ndarray]) -> np.ndarray:
    """n 3 3: camera point -> network pixel, ``post_rot @ K`` with ``post_tran`` folded in."""
    P = feeds["post_rot"][0].astype(np.float64) @ feeds["intrinsics"][0].astype(np.float64)  # n 3 3
    P[:, :2, 2] += feeds["post_tran"][0][:, :2]
    return P


def network_inputs(predictor: Predictor, images: list[np.ndarray], intr: list[Intrinsics]) -> dict[str, np.ndarray]:
    n = len(images)
    inp = PredictorInput(images, np.stack([i.K for i in intr]), np.stack([c.ego_T_cam for c in RIG.cameras]),
                         np.ones(n, bool))
    return predictor.preprocess(inp)


def test_reduced_decode_matches_full_decode_on_real_jpegs(predictor: Predictor) -> None:
    s = predictor.decode_reduction((900, 1600))
    assert s == 4  # tiny model input 128x352
    full, reduced = [], []
    for i, msg in enumerate(sample_jpegs()):
        intr = camera_info_to_intrinsics(info_of(i))
        full.append(decode(msg, intr, 1))
        reduced.append(decode(msg, intr, s))
        check_image_size(*reduced[-1])
        assert reduced[-1][0].shape == (225, 400, 3) and reduced[-1][1].reduction == 4
    feeds_full = network_inputs(predictor, [im for im, _ in full], [k for _, k in full])
    feeds_red = network_inputs(predictor, [im for im, _ in reduced], [k for _, k in reduced])
    P_full, P_red = effective_projection(feeds_full), effective_projection(feeds_red)
    np.testing.assert_allclose(P_red, P_full, rtol=0, atol=1e-6 * np.abs(P_full).max())
    mad = np.abs(feeds_red["images"][0] - feeds_full["images"][0]).mean(axis=(1, 2, 3))  # n
    assert (mad < MAD_BOUND).all(), 255 * mad
    # The bound can fail: the same pixels half a reduced pixel off are far above it.
    shift = np.float32([[1, 0, 0.5], [0, 1, 0.5]])
    shifted = [cv2.warpAffine(im, shift, (im.shape[1], im.shape[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE) for im, _ in reduced]
    feeds_off = network_inputs(predictor, shifted, [k for _, k in reduced])
    mad_off = np.abs(feeds_off["images"][0] - feeds_full["images"][0]).mean(axis=(1, 2, 3))  # n
    assert (mad_off > MAD_BOUND).all(), 255 * mad_off


def test_reduced_intrinsics_use_the_pixel_centre_convention() -> None:
    info = info_of(1)
    info.width, info.height = 1599, 899  # not divisible by 4: sizes round up, like libjpeg
    intr = camera_info_to_intrinsics(info)
    red = intr.reduced(4)
    assert red.image_hw == (225, 400) and red.reduction == 4 and red.reduced(2).reduction == 8
    p = np.array([0.7, -0.4, 9.0])  # a camera point
    u, v = (intr.K @ p)[:2] / p[2]
    u4, v4 = (red.K @ p)[:2] / p[2]
    assert u4 == pytest.approx((u + 0.5) / 4 - 0.5) and v4 == pytest.approx((v + 0.5) / 4 - 0.5)
    assert intr.reduced(1) is intr
    with pytest.raises(ConversionError, match=r"camera_info says 400x225 \(after ROI and binning, decoded at 1/4\)"):
        check_image_size(np.zeros((900, 1600, 3), np.uint8), red)


def test_reduce_keeps_raw_images_and_reduces_png_like_jpeg() -> None:
    rng = np.random.default_rng(0)
    rgb = cv2.resize(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8), (53, 37))  # smooth, odd size
    intr = Intrinsics(np.diag([50.0, 50.0, 1.0]), np.zeros(5), "plumb_bob", (37, 53), "cam")
    raw = Image(height=37, width=53, encoding="rgb8", step=3 * 53)
    raw.data = rgb.tobytes()
    image, used = decode(raw, intr, 4)
    np.testing.assert_array_equal(image, rgb)
    assert used is intr
    png = CompressedImage(format="png")
    png.data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    out = compressed_to_rgb(png, 4)
    assert out.shape == (10, 14, 3)
    block = rgb[4:8, 8:12].astype(np.float64).mean(axis=(0, 1))  # reduced pixel (1, 2)
    np.testing.assert_allclose(out[1, 2], block, atol=0.51)
    np.testing.assert_array_equal(out, box_reduce(rgb, 4))
    jpeg = CompressedImage(format="jpeg")
    jpeg.data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    for s in (2, 4, 8):
        assert compressed_to_rgb(jpeg, s).shape == (-(-37 // s), -(-53 // s), 3)
    assert np.abs(compressed_to_rgb(jpeg, 4).astype(float) - out).mean() < 3
    with pytest.raises(ValueError, match="decode reduction"):
        compressed_to_rgb(jpeg, 3)


def test_pipeline_decodes_reduced_with_the_reduced_intrinsics(predictor: Predictor) -> None:
    """The node and bag infer (one pipeline) give the predictor reduced images with their K."""
    params = NodeParams(camera_names=tuple(c.lower() for c in NUSCENES_CAMERAS), image_transport="compressed")
    pipeline = CameraSetPipeline(predictor, params, ros_types.serialize)
    frames: list[CameraFrame | None] = []
    for i, msg in enumerate(sample_jpegs()):
        rosbags_msg = synth_msgs.compressed_msg(params.camera_names[i], bytes(msg.data), 0)
        intr = camera_info_to_intrinsics(info_of(i))
        frames.append(CameraFrame(rosbags_msg, intr, RIG.cameras[i].ego_T_cam))
    inp = pipeline.camera_input(SyncedSet([0] * 6, frames))
    assert inp is not None
    assert all(im.shape == (225, 400, 3) for im in inp.images) and inp.camera_valid.all()
    for i, frame in enumerate(frames):
        assert frame is not None
        np.testing.assert_allclose(inp.intrinsics[i], frame.intrinsics.reduced(4).K)
