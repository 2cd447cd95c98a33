"""Cheap checks of camera messages at arrival (no pixel is decoded, no ROS import).

The pipeline runs these in the subscription callback, so every unusable message is counted
once when it arrives, even if its set is later dropped: size limits (:func:`check_limits`),
the signature, dimensions and completeness of JPEG and PNG ``CompressedImage`` payloads
(:func:`compressed_size`, read from the JPEG frame header or the PNG ``IHDR`` chunk), and
for raw images the encoding, size and step (:func:`scaocc_ros.encodings.check_image`).
Every problem raises :class:`~scaocc_ros.encodings.ConversionError`.
"""

from __future__ import annotations

import struct
from typing import Any

from scaocc_ros.encodings import ConversionError, check_image

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8, CC are not frames.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: JPEG markers without a length field (TEM, RSTn).
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
#: Bytes after the end marker tolerated as padding (some encoders pad to a word).
TRAILING_PADDING = 16


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from the first start-of-frame segment of a complete JPEG."""
    if JPEG_EOI not in data[-2 - TRAILING_PADDING:]:
        raise ConversionError(f"truncated JPEG: no end marker ({len(data)} bytes)")
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ConversionError(f"corrupt JPEG: no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in JPEG_STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if length < 2:
            raise ConversionError(f"corrupt JPEG: segment length {length} at byte {i}")
        if marker in JPEG_SOF:
            if i + 9 > n or length < 8:
                break
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    raise ConversionError(f"corrupt JPEG: no frame header ({len(data)} bytes)")


def _png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from the ``IHDR`` chunk of a complete PNG."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ConversionError(f"corrupt PNG: no IHDR chunk ({len(data)} bytes)")
    if b"IEND" not in data[-12 - TRAILING_PADDING:]:
        raise ConversionError(f"truncated PNG: no IEND chunk ({len(data)} bytes)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def compressed_size(data: bytes, fmt: str) -> tuple[int, int]:
    """``(width, height)`` of a JPEG or PNG payload from its header, checking that it is complete.

    Raises :class:`ConversionError` for an empty payload, a depth image, another format,
    a corrupt or truncated file, or a zero size.
    """
    if "compresseddepth" in fmt.lower():
        raise ConversionError(f"compressed depth images are not camera images (format {fmt!r})")
    if not data:
        raise ConversionError("empty compressed image")
    if data.startswith(JPEG_SOI):
        width, height = _jpeg_size(data)
    elif data.startswith(PNG_SIGNATURE):
        width, height = _png_size(data)
    else:
        raise ConversionError(f"compressed image is neither JPEG nor PNG (format {fmt!r}, "
                              f"first bytes {data[:4].hex()})")
    if width == 0 or height == 0:
        raise ConversionError(f"compressed image has an empty size {width}x{height}")
    return width, height


def image_size(msg: Any) -> tuple[int, int]:
    """``(height, width)`` of an ``Image`` (checked: encoding, size, step) or a ``CompressedImage``
    (from its header); works on rclpy and rosbags messages alike."""
    if hasattr(msg, "format"):
        width, height = compressed_size(bytes(msg.data), msg.format)
        return height, width
    check_image(msg)
    return int(msg.height), int(msg.width)


def check_limits(msg: Any, max_bytes: int, max_pixels: int, hw: tuple[int, int] | None = None) -> None:
    """Reject a message of more than ``max_bytes`` bytes of data or an image of more than
    ``max_pixels`` pixels (``hw``, or the raw image's own width and height)."""
    size = len(msg.data)
    if size > max_bytes:
        raise ConversionError(f"message of {size} bytes exceeds max_message_bytes {max_bytes}")
    if hw is None and not hasattr(msg, "format"):
        hw = (int(msg.height), int(msg.width))
    if hw is not None and hw[0] * hw[1] > max_pixels:
        raise ConversionError(f"image of {hw[1]}x{hw[0]} pixels exceeds max_image_pixels {max_pixels}")
