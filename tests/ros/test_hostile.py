"""Hostile input at the pipeline: every unusable message counted once on arrival, by camera and
kind, logged per (camera, kind), and never passed to the synchroniser."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage

from scaocc_ros import headers
from scaocc_ros.encodings import ConversionError
from scaocc_ros.problems import ProblemLog
from tests.ros.test_pipeline import S, feed, image, info, make_pipeline


def jpeg(h: int = 32, w: int = 64, stamp_ns: int = 100 * S, cam: str = "cam_a") -> CompressedImage:
    msg = CompressedImage(format="jpeg")
    msg.data = cv2.imencode(".jpg", np.full((h, w, 3), 99, np.uint8))[1].tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, S)
    msg.header.frame_id = f"{cam}_optical"
    return msg


def test_jpeg_and_png_sizes_come_from_their_headers() -> None:
    data = bytes(jpeg(45, 77).data)
    assert headers.compressed_size(data, "jpeg") == (77, 45)
    png = cv2.imencode(".png", np.zeros((13, 29, 3), np.uint8))[1].tobytes()
    assert headers.compressed_size(png, "png") == (29, 13)
    bad = {"empty": b"", "random": bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)),
           "truncated": data[: len(data) // 2], "truncated png": png[:-20], "jpeg magic only": b"\xff\xd8\xff\xe0 x",
           "bmp": cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes()}
    for name, payload in bad.items():
        with pytest.raises(ConversionError):
            headers.compressed_size(payload, "jpeg")
            pytest.fail(name)
    with pytest.raises(ConversionError, match="depth"):
        headers.compressed_size(data, "16UC1; compressedDepth")


def test_every_bad_image_is_counted_once_on_arrival() -> None:
    pipe, warnings = make_pipeline(max_image_pixels=64 * 64, max_message_bytes=20_000, image_transport="compressed")
    pipe.on_camera_info("cam_a", info("cam_a"), S)
    big = jpeg()
    big.data = bytes(big.data) + b"\0" * 20_000
    sof_10000x10000 = b"\xff\xd8\xff\xc0\x00\x11\x08\x27\x10\x27\x10"
    huge = CompressedImage(format="jpeg", data=sof_10000x10000 + b"\0" * 10 + b"\xff\xd9")
    huge.header = jpeg().header
    wrong_size, wrong_frame, no_frame = jpeg(48, 64), jpeg(cam="cam_b"), jpeg()
    no_frame.header.frame_id = ""
    truncated = jpeg()
    truncated.data = bytes(truncated.data)[:100]
    cases: list[tuple[Any, str]] = [(big, "oversize"), (huge, "oversize"), (truncated, "image"),
                                    (jpeg(stamp_ns=110 * S), "stamp"), (jpeg(stamp_ns=1), "stamp")]
    for msg, kind in cases:
        assert pipe.on_image("cam_a", msg, 100 * S) == []
        assert pipe.stats.malformed_count("cam_a", kind) >= 1, kind
    for msg in (wrong_size, wrong_frame, no_frame):  # held for a fitting camera_info; counted when one does not
        pipe.on_image("cam_a", msg, 100 * S)
    pipe.on_camera_info("cam_a", info("cam_a"), 100 * S)
    report = pipe.stats.report(100 * S)
    assert report.malformed["cam_a"] == {"oversize": 2, "image": 1, "stamp": 2, "size": 1, "frame_id": 2}
    assert pipe.sync.stats("cam_a").received == 0 and not pipe.pending
    assert any(w.startswith("cam_a: frame_id (1 since the last line)") and "in frame ''" not in w for w in warnings)
    assert sum(w.startswith("cam_a: stamp") for w in warnings) == 1  # one line per (camera, kind) per period


def test_a_camera_info_that_no_image_fits_is_counted() -> None:
    pipe, _ = make_pipeline()
    feed(pipe, S)
    for k in ([float("nan")] * 9, [0.0] * 9, [-40.0, 0, 31.5, 0, 40.0, 15.5, 0, 0, 1]):
        bad = info("cam_a")
        bad.k = k
        pipe.on_camera_info("cam_a", bad, S)
    odd = info("cam_a")
    odd.distortion_model, odd.d = "fisheye_x", [0.1] * 4
    pipe.on_camera_info("cam_a", odd, S)
    pipe.on_camera_info("cam_a", info("cam_a", h=48), S)  # another size: waits for an image of it...
    assert pipe.stats.malformed_count("cam_a", "camera_info") == 4
    (s,) = feed(pipe, 2 * S)  # ...but images of the current size come: counted once
    assert pipe.stats.malformed_count("cam_a", "camera_info") == 5
    assert s.items[0] is not None and s.items[0].intrinsics.image_hw == (32, 64)


def test_late_duplicate_and_silent_cameras_are_counted_and_logged() -> None:
    pipe, warnings = make_pipeline()
    feed(pipe, S)
    feed(pipe, 2 * S)
    assert pipe.on_image("cam_a", image(2 * S), 2 * S) == []  # duplicate
    assert pipe.on_image("cam_a", image(S + S // 2), 2 * S) == []  # older than its last set
    assert pipe.stats.malformed_count("cam_a", "duplicate") == 1 and pipe.stats.malformed_count("cam_a", "late") == 1
    for t in range(3, 7):  # cam_b goes silent...
        feed(pipe, t * S, cams=("cam_a",))
    assert "cam_b: silent for more than 1.0 s; sets go on without it" in warnings
    feed(pipe, 7 * S)  # ...and comes back
    assert "cam_b: back after 5.0 s" in warnings


def test_problem_log_is_per_camera_and_kind_with_the_count_since_the_last_line() -> None:
    lines: list[str] = []
    now = [0.0]
    plog = ProblemLog(lines.append, 5.0, clock=lambda: now[0])
    for cam, kind in [("a", "stamp"), ("a", "stamp"), ("b", "stamp"), ("a", "image"), ("a", "stamp")]:
        plog.report(cam, kind, "x")
    assert lines == ["a: stamp (1 since the last line): x", "b: stamp (1 since the last line): x",
                     "a: image (1 since the last line): x"]
    now[0] = 6.0
    plog.report("a", "stamp", "y")
    assert lines[-1] == "a: stamp (3 since the last line): y"
