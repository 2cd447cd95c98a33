"""Hostile camera messages by category, for the soak (``bench/soak.py``).

Every builder returns one message the node must count as unusable, exactly once: an image
(``"image"``) or a CameraInfo (``"info"``). Categories that need raw ``Image`` or JPEG
``CompressedImage`` subscriptions are listed apart (:data:`RAW`, :data:`COMPRESSED`); the
rest (:data:`COMMON`: CameraInfo, stamps, frame ids) go to either transport.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from scaocc_ros.tools import synth_msgs as sm
from scaocc_ros.tools.harness import Feeder


@dataclass
class Context:
    """What a builder may use: the feeder (good messages), the camera, the time, and the stamp of
    the last good image sent on *this camera* (a stamp the whole rig last used may be one this
    camera never sent, after a silence: re-using it would be a new image, not a duplicate)."""

    feeder: Feeder
    cam: str
    now_ns: int
    last_good_ns: int
    rng: np.random.Generator


Builder = Callable[[Context], tuple[str, object]]
S = 1_000_000_000


def _header(c: Context, stamp_ns: int | None = None, frame: str | None = None) -> Header:
    return Header(stamp=sm.stamp_msg(c.now_ns if stamp_ns is None else stamp_ns),
                  frame_id=sm.optical_frame(c.cam) if frame is None else frame)


def _raw(c: Context, height: int, width: int, encoding: str, step: int, size: int) -> tuple[str, object]:
    msg = Image(height=height, width=width, encoding=encoding, step=step)
    msg.header = _header(c)
    msg.data = bytes(size)
    return "image", msg


def _jpeg(c: Context, data: bytes) -> tuple[str, object]:
    msg = CompressedImage(format="jpeg", data=data)
    msg.header = _header(c)
    return "image", msg


def _restamped(c: Context, stamp_ns: int | None = None, frame: str | None = None) -> tuple[str, object]:
    msg = copy.copy(c.feeder.good_image(c.cam, c.now_ns))  # shares the pixel buffer
    msg.header = _header(c, stamp_ns, frame)
    return "image", msg


def _unknown_distortion(m: CameraInfo) -> None:
    m.distortion_model, m.d = "fisheye_v9", [0.1, 0.01, 0.0, 0.0]


def _info(c: Context, edit: Callable[[CameraInfo], object]) -> tuple[str, object]:
    msg = c.feeder.info(c.cam, c.now_ns)
    edit(msg)
    return "info", msg


def _scaled_size(m: CameraInfo) -> None:
    m.width, m.height = m.width // 2, m.height // 2
    m.k = (np.asarray(m.k).reshape(3, 3) * [[0.5], [0.5], [1.0]]).ravel().tolist()


def _first_jpeg(c: Context) -> bytes:
    return c.feeder.rig.jpeg[c.cam]


RAW: dict[str, Builder] = {
    "wrong_size": lambda c: _raw(c, 900, 1600, "bgr8", 4800, 4800 * 899),
    "wrong_step": lambda c: _raw(c, 90, 160, "bgr8", 100, 100 * 90),
    "unknown_encoding": lambda c: _raw(c, 90, 160, "32FC9", 160 * 36, 160 * 36 * 90),
    "zero_size": lambda c: _raw(c, 0, 0, "bgr8", 0, 0),
    "oversize_pixels": lambda c: _raw(c, 5000, 5000, "mono8", 5000, 16),
}
COMPRESSED: dict[str, Builder] = {
    "random_jpeg": lambda c: _jpeg(c, b"\xff\xd8\xff" + c.rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()),
    "random_bytes": lambda c: _jpeg(c, c.rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()),
    "truncated_jpeg": lambda c: _jpeg(c, _first_jpeg(c)[: len(_first_jpeg(c)) // 2]),
    "empty_payload": lambda c: _jpeg(c, b""),
    "oversize_jpeg": lambda c: _jpeg(c, b"\xff\xd8\xff\xc0\x00\x11\x08\x4e\x20\x4e\x20" + bytes(12) + b"\xff\xd9"),
}
COMMON: dict[str, Builder] = {
    "info_nan_k": lambda c: _info(c, lambda m: setattr(m, "k", [float("nan")] * 9)),
    "info_zero_k": lambda c: _info(c, lambda m: setattr(m, "k", [0.0] * 9)),
    "info_negative_k": lambda c: _info(c, lambda m: setattr(m, "k", [-v for v in m.k[:8]] + [1.0])),
    "info_mismatched_size": lambda c: _info(c, _scaled_size),
    "info_bad_distortion": lambda c: _info(c, _unknown_distortion),
    "info_nan_distortion": lambda c: _info(c, lambda m: setattr(m, "d", [float("nan")] * 5)),
    "info_empty_frame_id": lambda c: _info(c, lambda m: setattr(m.header, "frame_id", "")),
    "stamp_future": lambda c: _restamped(c, c.now_ns + 30 * S),
    "stamp_1970": lambda c: _restamped(c, 1),
    "stamp_backwards": lambda c: _restamped(c, c.last_good_ns - S),
    "stamp_duplicate": lambda c: _restamped(c, c.last_good_ns),
    "frame_id_unknown": lambda c: _restamped(c, frame="no_such_frame"),
    "frame_id_empty": lambda c: _restamped(c, frame=""),
}


def categories(compressed: bool) -> dict[str, Builder]:
    """Every category a node with this transport can receive."""
    return {**(COMPRESSED if compressed else RAW), **COMMON}
