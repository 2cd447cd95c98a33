"""ROS camera messages -> numpy: images (raw and compressed), intrinsics, stamp checks.

Every problem with a message raises :class:`ConversionError` naming it; the node counts and
skips such messages. Images come out as ``H W 3`` uint8 RGB, the core's convention; the raw
encodings are in :mod:`scaocc_ros.encodings`.
Compressed images can be decoded at ``1/s`` (:func:`decode`, with the scale the core's
:func:`~scaocc_core.predictor.decode_reduction` picks) together with the matching calibration
(:meth:`Intrinsics.reduced`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

# re-exported: the node and tools use convert.check_image / convert.ConversionError
from scaocc_ros.encodings import ENCODINGS, ConversionError, check_image, image_to_rgb  # noqa: F401

#: Decode scale 1/s -> OpenCV flag; JPEGs are decoded at that scale by libjpeg (DCT scaling).
REDUCED_DECODE_FLAGS: dict[int, int] = {
    1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8,
}
JPEG_MAGIC = b"\xff\xd8\xff"

#: Distortion models that can be undistorted, and how many coefficients they need at least.
DISTORTION_MODELS: dict[str, int] = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


def box_reduce(image: np.ndarray, s: int) -> np.ndarray:
    """``H W c`` -> ``ceil(H/s) ceil(W/s) c``: the mean of each ``s x s`` block (edges replicated).

    Output pixel ``j`` covers source pixels ``s j .. s j + s - 1``, as a JPEG decoded at ``1/s``.
    """
    h, w = image.shape[:2]
    H, W = -(-h // s) * s, -(-w // s) * s
    padded = cv2.copyMakeBorder(image, 0, H - h, 0, W - w, cv2.BORDER_REPLICATE)  # H W c
    return cv2.resize(padded, (W // s, H // s), interpolation=cv2.INTER_AREA)  # integer factor: block means


def compressed_to_rgb(msg: CompressedImage, reduce: int = 1) -> np.ndarray:
    """A JPEG or PNG ``CompressedImage`` as ``ceil(H/reduce) ceil(W/reduce) 3`` uint8 RGB.

    ``reduce`` is 1, 2, 4 or 8. JPEGs (told apart by their magic bytes) are decoded directly
    at ``1/reduce`` by libjpeg, several times faster than a full decode; other formats are
    decoded in full by ``cv2.imdecode`` and then :func:`box_reduce`-d. Either way output pixel
    ``j`` covers source pixels ``reduce j .. reduce j + reduce - 1`` (see :meth:`Intrinsics.reduced`).
    """
    if reduce not in REDUCED_DECODE_FLAGS:
        raise ValueError(f"decode reduction must be one of {sorted(REDUCED_DECODE_FLAGS)}, got {reduce}")
    fmt = msg.format.lower()
    if "compresseddepth" in fmt:
        raise ConversionError(f"compressed depth images are not camera images (format {msg.format!r})")
    if len(msg.data) == 0:
        raise ConversionError("empty compressed image")
    data = np.frombuffer(msg.data, dtype=np.uint8)  # the encoded bytes
    jpeg = data[:3].tobytes() == JPEG_MAGIC
    bgr = cv2.imdecode(data, REDUCED_DECODE_FLAGS[reduce] if jpeg else cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConversionError(f"cannot decode compressed image (format {msg.format!r}, {len(msg.data)} bytes)")
    if not jpeg and reduce > 1:
        bgr = box_reduce(bgr, reduce)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def is_compressed(msg: Image | CompressedImage) -> bool:
    """Whether ``msg`` is a ``CompressedImage`` (rclpy or rosbags: it has a ``format`` field)."""
    return hasattr(msg, "format")


def to_rgb(msg: Image | CompressedImage, reduce: int = 1) -> np.ndarray:
    """Either image message as ``H W 3`` uint8 RGB; works on rclpy and rosbags messages alike.

    A ``CompressedImage`` is decoded at ``1/reduce`` (:func:`compressed_to_rgb`); a raw
    ``Image`` ignores ``reduce`` and keeps its full size.
    """
    if is_compressed(msg):
        return compressed_to_rgb(msg, reduce)  # type: ignore[arg-type]
    return image_to_rgb(msg)  # type: ignore[arg-type]


#: Values of the ``rectification`` parameter: ``rect`` images are rectified (K and projection
#: from ``CameraInfo`` P and R, never undistorted), ``raw`` images are undistorted once with K
#: and D, ``auto`` decides per camera (:func:`is_rectified`).
RECTIFICATION_MODES = ("auto", "rect", "raw")


@dataclass(frozen=True)
class Intrinsics:
    """Calibration of the images actually sent (ROI and binning applied to ``CameraInfo``).

    Raw images: ``K`` is ``CameraInfo.k``, ``D`` its distortion, and the undistorted image
    keeps ``K`` in the ``CameraInfo`` frame. Rectified images: ``K`` is ``P[:3, :3]``, ``D`` is
    empty (nothing to undo), and the image is a pinhole view of a frame rotated by ``R`` (and
    shifted by P's baseline column), given by ``cam_T_img``: ``ego_T_img = ego_T_cam @ cam_T_img``.
    """

    K: np.ndarray  # 3 3, pixels of the (undistorted) image from points of the frame cam_T_img names
    D: np.ndarray  # distortion coefficients (empty or all zero = none)
    model: str
    image_hw: tuple[int, int]  # size the images must have
    frame_id: str
    reduction: int = 1  # the images are decoded at 1/reduction of the sent size
    rectified: bool = False  # already rectified: K and cam_T_img come from P and R
    cam_T_img: np.ndarray = field(default_factory=lambda: np.eye(4))  # 4 4, frame_id <- frame K projects

    @property
    def distorted(self) -> bool:
        """Whether the images need undistortion."""
        return bool(self.D.size) and bool(np.any(self.D != 0))

    def reduced(self, s: int) -> Intrinsics:
        """The calibration of these images decoded at ``1/s`` (``ceil(h/s) x ceil(w/s)`` pixels).

        Reduced pixel ``j`` covers pixels ``s j .. s j + s - 1``, so with pixel ``j`` spanning
        ``[j - 0.5, j + 0.5]``: ``u' = (u + 0.5) / s - 0.5`` (fx/s, cx' = (cx + 0.5)/s - 0.5),
        the convention of the core's resize matrices. ``D`` acts on normalised coordinates and
        stays valid, so undistortion of the reduced image uses the reduced K.
        """
        if s < 1:
            raise ValueError(f"decode reduction must be >= 1, got {s}")
        if s == 1:
            return self
        S = np.array([[1 / s, 0, 0.5 / s - 0.5], [0, 1 / s, 0.5 / s - 0.5], [0, 0, 1.0]])
        h, w = self.image_hw
        return replace(self, K=S @ self.K, image_hw=(-(-h // s), -(-w // s)), reduction=self.reduction * s)


def is_rectified(mode: str, topic: str) -> bool:
    """Whether images of ``topic`` (the resolved name, after remapping) are already rectified.

    ``rect`` / ``raw`` say so. ``auto`` follows image_proc's names: a topic segment starting
    with ``image_rect`` (``image_rect``, ``image_rect_color``, ``.../image_rect/compressed``) is
    rectified; anything else is a driver's raw stream, which its ``CameraInfo`` then decides:
    undistorted once if D is non-zero, used as is with K if D is zero.
    """
    if mode not in RECTIFICATION_MODES:
        raise ValueError(f"rectification must be one of {list(RECTIFICATION_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode == "rect"
    return any(seg.startswith("image_rect") for seg in topic.split("/"))


def _sensor_to_image(msg: CameraInfo) -> tuple[np.ndarray, tuple[int, int]]:
    """``S`` (3x3) mapping full-sensor pixels to pixels of the sent image (ROI, binning), and its size."""
    if msg.width == 0 or msg.height == 0:
        raise ConversionError(f"camera_info has an empty resolution {msg.width}x{msg.height}")
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    roi = msg.roi
    full = roi.width == 0 or roi.height == 0
    x0, y0 = (0, 0) if full else (int(roi.x_offset), int(roi.y_offset))
    w, h = (msg.width, msg.height) if full else (int(roi.width), int(roi.height))
    if x0 + w > msg.width or y0 + h > msg.height:
        raise ConversionError(f"camera_info ROI {x0},{y0} {w}x{h} exceeds the sensor {msg.width}x{msg.height}")
    S = np.array([[1 / bx, 0, -(x0 + (bx - 1) / 2) / bx], [0, 1 / by, -(y0 + (by - 1) / 2) / by], [0, 0, 1]])
    return S, (h // by, w // bx)


def _check_pinhole(K: np.ndarray, what: str) -> None:
    if not np.isfinite(K).all():
        raise ConversionError(f"camera_info {what} is not finite: {K.ravel().tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise ConversionError(f"camera_info {what} is not a valid intrinsic matrix: {K.ravel().tolist()}")


def _rectified_geometry(msg: CameraInfo) -> tuple[np.ndarray, np.ndarray]:
    """``P[:3, :3]`` and ``cam_T_img`` (4x4) of rectified images: a camera point ``X`` lies at
    ``P (R X, 1)``, i.e. ``K' (R X + t)`` with ``t = K'^-1 P[:, 3]`` (the stereo baseline)."""
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    _check_pinhole(P[:, :3], "P")
    R = np.asarray(msg.r, dtype=np.float64).reshape(3, 3)
    if not np.any(R):
        R = np.eye(3)  # unset (all zero): no rectifying rotation
    if not np.isfinite(R).all() or not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
        raise ConversionError(f"camera_info R is not a rotation: {R.ravel().tolist()}")
    t = np.linalg.solve(P[:, :3], P[:, 3])
    cam_T_img = np.eye(4)
    cam_T_img[:3, :3] = R.T
    cam_T_img[:3, 3] = -R.T @ t
    return P[:, :3], cam_T_img


def camera_info_to_intrinsics(msg: CameraInfo, rectified: bool = False) -> Intrinsics:
    """The calibration of the sent images from ``CameraInfo``, applying ROI offset and binning.

    Raw images (``rectified`` False) use ``k`` and ``d``; rectified ones use ``p`` and ``r``
    and are never undistorted (:class:`Intrinsics`). ``CameraInfo`` describes the
    full-resolution sensor; the image is the ROI (all zero = full frame) binned by
    ``binning_x/y`` (0 = 1). With pixel ``j`` spanning ``[j - 0.5, j + 0.5]``, a binned pixel
    ``j'`` covers raw pixels ``b j' .. b j' + b - 1``, so ``u' = (u - x_offset - (b - 1) / 2) / b``.
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    _check_pinhole(K, "K")
    S, hw = _sensor_to_image(msg)
    D = np.asarray(msg.d, dtype=np.float64)
    if not np.isfinite(D).all():
        raise ConversionError("camera_info distortion coefficients are not finite")
    if not rectified or (not np.any(msg.p) and not np.any(D)):  # P unset and nothing to undo: K holds
        return Intrinsics(S @ K, D, msg.distortion_model, hw, msg.header.frame_id)
    K_rect, cam_T_img = _rectified_geometry(msg)
    return Intrinsics(S @ K_rect, np.zeros(0), msg.distortion_model, hw, msg.header.frame_id,
                      rectified=True, cam_T_img=cam_T_img)


class Undistorter:
    """Removes lens distortion (``distortion: undistort``) or refuses it (``reject``).

    Undistorted images keep the same K. Rectified input (:attr:`Intrinsics.rectified`) has no
    distortion left and passes through untouched. Remap tables are cached per calibration.
    """

    def __init__(self, mode: str, cache_size: int = 16) -> None:
        if mode not in ("undistort", "reject"):
            raise ValueError(f"distortion mode must be undistort or reject, got {mode!r}")
        self.mode = mode
        self.cache_size = cache_size
        self._maps: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def check(self, intr: Intrinsics) -> None:
        """Raise :class:`ConversionError` if images of this calibration cannot be used."""
        if not intr.distorted:
            return
        if self.mode == "reject":
            raise ConversionError(
                f"non-zero {intr.model!r} distortion and distortion mode 'reject': publish rectified "
                "images with zero D, or set the parameter distortion: undistort"
            )
        need = DISTORTION_MODELS.get(intr.model)
        if need is None:
            raise ConversionError(f"cannot undistort model {intr.model!r}; supported: {sorted(DISTORTION_MODELS)}")
        if intr.D.size < need:
            raise ConversionError(f"{intr.model} needs {need} coefficients, got {intr.D.size}")

    def __call__(self, image: np.ndarray, intr: Intrinsics) -> np.ndarray:
        """``image`` (H W 3) with the distortion of ``intr`` removed (returned as is if none)."""
        self.check(intr)
        if not intr.distorted:
            return image
        h, w = image.shape[:2]
        key = intr.K.tobytes() + intr.D.tobytes() + intr.model.encode() + bytes(f"{h}x{w}", "ascii")
        maps = self._maps.get(key)
        if maps is None:
            if intr.model == "equidistant":
                maps = cv2.fisheye.initUndistortRectifyMap(
                    intr.K, intr.D[:4], np.eye(3), intr.K, (w, h), cv2.CV_16SC2)
            else:
                maps = cv2.initUndistortRectifyMap(intr.K, intr.D, None, intr.K, (w, h), cv2.CV_16SC2)
            self._maps[key] = maps
            if len(self._maps) > self.cache_size:
                self._maps.popitem(last=False)
        return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR)


def check_stamp(stamp_ns: int, now_ns: int, max_future_ns: int, max_age_ns: int) -> None:
    """Reject stamps more than ``max_future_ns`` ahead of ``now_ns`` or older than ``max_age_ns``."""
    if stamp_ns - now_ns > max_future_ns:
        raise ConversionError(f"stamp {(stamp_ns - now_ns) / 1e9:.3f} s in the future")
    if now_ns - stamp_ns > max_age_ns:
        raise ConversionError(f"stamp {(now_ns - stamp_ns) / 1e9:.3f} s in the past")


def check_image_size(image: np.ndarray, intr: Intrinsics) -> None:
    """The decoded image must have the size its ``CameraInfo`` (ROI/binning and decode reduction applied) announces."""
    if image.shape[:2] != intr.image_hw:
        at = f", decoded at 1/{intr.reduction}" if intr.reduction > 1 else ""
        raise ConversionError(
            f"image is {image.shape[1]}x{image.shape[0]} but camera_info says "
            f"{intr.image_hw[1]}x{intr.image_hw[0]} (after ROI and binning{at})"
        )


def decode(msg: Image | CompressedImage, intr: Intrinsics, reduce: int) -> tuple[np.ndarray, Intrinsics]:
    """``msg`` as ``H W 3`` RGB and the calibration of exactly those pixels.

    Compressed images are decoded at ``1/reduce`` and paired with ``intr.reduced(reduce)``;
    raw images stay full size with ``intr``. The size is not checked here
    (:func:`check_image_size`).
    """
    s = reduce if is_compressed(msg) else 1
    return to_rgb(msg, s), intr.reduced(s)
