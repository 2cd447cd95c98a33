"""Raw ``sensor_msgs/Image`` encodings -> ``H W 3`` uint8 RGB, honouring ``step``.

Supported (names of ``sensor_msgs/image_encodings``): ``rgb8 bgr8 rgba8 bgra8 mono8``, the
16-bit ``mono16 rgb16 bgr16 rgba16 bgra16`` (scaled to 8 bits by their high byte, byte order
from ``is_bigendian``), packed YUV 4:2:2 ``yuv422``/``uyvy`` (U Y0 V Y1) and
``yuv422_yuy2``/``yuyv`` (Y0 U Y1 V), semi-planar YUV 4:2:0 ``nv12`` (Y plane, then
interleaved U V) and ``nv21`` (V U), and the 8-bit Bayer mosaics ``bayer_rggb8 bayer_bggr8
bayer_gbrg8 bayer_grbg8`` (named by their top-left 2x2 block, row by row).

YUV is ITU-R BT.601 limited range (Y 16..235), the convention of V4L2/GMSL drivers and of
cv_bridge; Bayer mosaics are demosaiced bilinearly. Every row of every plane is ``step``
bytes long (padding dropped); the NV planes share ``step``, so ``data`` holds
``step * height * 3 / 2`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import Image


class ConversionError(ValueError):
    """A camera message cannot be used (wrong size or step, unknown encoding, bad data...)."""


@dataclass(frozen=True)
class Encoding:
    """How the bytes of one raw encoding are laid out and turned into RGB."""

    channels: int  # values per pixel in the (first) plane: 2 for packed YUV 4:2:2
    depth: int  # bytes per value (2: 16-bit, scaled to 8 bits by the high byte)
    code: int | None  # OpenCV conversion of the ``rows W channels`` array to RGB; None: already RGB
    even_width: bool = False  # chroma shared by two columns
    even_height: bool = False  # chroma shared by two rows
    semi_planar: bool = False  # a half-height interleaved chroma plane follows the Y plane

    def row_bytes(self, width: int) -> int:
        """Bytes of pixel data in one row (``step`` may be larger)."""
        return width * self.channels * self.depth

    def rows(self, height: int) -> int:
        """Rows of ``step`` bytes in ``data``."""
        return height * 3 // 2 if self.semi_planar else height


ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(3, 1, None),
    "bgr8": Encoding(3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": Encoding(4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": Encoding(4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": Encoding(1, 1, cv2.COLOR_GRAY2RGB),
    "mono16": Encoding(1, 2, cv2.COLOR_GRAY2RGB),
    "rgb16": Encoding(3, 2, None),
    "bgr16": Encoding(3, 2, cv2.COLOR_BGR2RGB),
    "rgba16": Encoding(4, 2, cv2.COLOR_RGBA2RGB),
    "bgra16": Encoding(4, 2, cv2.COLOR_BGRA2RGB),
    "yuv422": Encoding(2, 1, cv2.COLOR_YUV2RGB_UYVY, even_width=True),
    "uyvy": Encoding(2, 1, cv2.COLOR_YUV2RGB_UYVY, even_width=True),
    "yuv422_yuy2": Encoding(2, 1, cv2.COLOR_YUV2RGB_YUY2, even_width=True),
    "yuyv": Encoding(2, 1, cv2.COLOR_YUV2RGB_YUY2, even_width=True),
    "nv12": Encoding(1, 1, cv2.COLOR_YUV2RGB_NV12, even_width=True, even_height=True, semi_planar=True),
    "nv21": Encoding(1, 1, cv2.COLOR_YUV2RGB_NV21, even_width=True, even_height=True, semi_planar=True),
    # OpenCV names a mosaic by the 2x2 block starting at its second row and column, so ROS's
    # rggb (R at 0,0) is OpenCV's "BG" (B at 1,1), and so on.
    "bayer_rggb8": Encoding(1, 1, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": Encoding(1, 1, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": Encoding(1, 1, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": Encoding(1, 1, cv2.COLOR_BayerGB2RGB),
}


def check_image(msg: Image) -> None:
    """Cheap validation of a raw ``Image`` (no pixel is touched); raises :class:`ConversionError`."""
    enc = ENCODINGS.get(msg.encoding)
    if enc is None:
        raise ConversionError(f"unknown image encoding {msg.encoding!r}; supported: {sorted(ENCODINGS)}")
    if msg.height == 0 or msg.width == 0:
        raise ConversionError(f"empty image {msg.width}x{msg.height}")
    odd = [d for d, n, even in (("width", msg.width, enc.even_width), ("height", msg.height, enc.even_height))
           if even and n % 2]
    if odd:
        raise ConversionError(f"{msg.encoding} needs an even {' and '.join(odd)}, got {msg.width}x{msg.height}")
    row_bytes = enc.row_bytes(msg.width)
    if msg.step < row_bytes:
        raise ConversionError(f"step {msg.step} < width * bytes per pixel = {row_bytes} ({msg.encoding})")
    rows = enc.rows(msg.height)
    if len(msg.data) != msg.step * rows:
        what = "step * height * 3 / 2" if enc.semi_planar else "step * height"
        raise ConversionError(f"data has {len(msg.data)} bytes, expected {what} = {msg.step * rows}")


def image_to_rgb(msg: Image) -> np.ndarray:
    """A raw ``Image`` as ``H W 3`` uint8 RGB, honouring ``step`` (row padding) and, for
    16-bit encodings, ``is_bigendian`` (8-bit encodings are byte-order free)."""
    check_image(msg)
    enc = ENCODINGS[msg.encoding]
    rows = enc.rows(msg.height)
    buf = np.frombuffer(msg.data, dtype=np.uint8).reshape(rows, msg.step)  # rows step
    data = buf[:, : enc.row_bytes(msg.width)]  # rows (W c depth), row padding dropped
    if enc.depth == 2:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        data = (np.ascontiguousarray(data).view(dtype) >> 8).astype(np.uint8)  # rows (W c)
    pixels = np.ascontiguousarray(data.reshape(rows, msg.width, enc.channels))  # rows W c
    if enc.channels == 1:
        pixels = pixels[..., 0]
    if enc.code is None:
        return pixels
    return cv2.cvtColor(pixels, enc.code)
