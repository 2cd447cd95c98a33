"""The synthetic car: world options, rendering, and its ROS messages (images, CameraInfo, TF, truth).

Shared by ``scaocc cameras`` (published live), ``scaocc bag synth`` (written to a bag) and
the demo's nuScenes mode. The builders return rclpy message objects but need no ROS runtime
(message classes are plain Python until a publisher uses them), so the bag tools can convert
them with :func:`scaocc_ros.tools.ros_types.to_rosbags`.

Frames: ``odom -> base_link`` on ``/tf`` (the ego pose), ``base_link -> <cam>_optical`` on
``/tf_static``; every camera message has ``header.frame_id = <cam>_optical``.
"""

from __future__ import annotations

import argparse
import array
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from scaocc_msgs.msg import SemanticVoxelGrid
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from tqdm import tqdm

from scaocc_core.config import GridConfig
from scaocc_core.data.rig import Rig, load_nuscenes_sample_rig
from scaocc_core.data.synthetic import PRESETS, SynthFrame, SynthSpec, render_frame
from scaocc_core.grid import CLASS_NAMES, FREE
from scaocc_core.predictor import Prediction
from scaocc_ros.outputs import voxel_grid_msg

NODE_NAME = "synthetic_cameras"
GROUND_TRUTH_TOPIC = f"/{NODE_NAME}/ground_truth"
ODOM_FRAME = "odom"
EGO_FRAME = "base_link"
JPEG_QUALITY = 90


def ros_camera_name(rig_name: str) -> str:
    """The node's camera name for a rig camera (``CAM_FRONT`` -> ``cam_front``)."""
    return rig_name.lower()


def optical_frame(camera: str) -> str:
    """Frame id of a camera's images and CameraInfo."""
    return f"{camera}_optical"


def image_topic(camera: str, compressed: bool) -> str:
    """Absolute image topic of ``camera`` (the node subscribes the relative ``<cam>/image...``)."""
    return f"/{camera}/image/compressed" if compressed else f"/{camera}/image"


def info_topic(camera: str) -> str:
    """Absolute CameraInfo topic of ``camera``."""
    return f"/{camera}/camera_info"


def stamp_msg(stamp_ns: int) -> Time:
    """``builtin_interfaces/Time`` of integer nanoseconds."""
    return Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


def quaternion_xyzw(R: np.ndarray) -> tuple[float, float, float, float]:
    """ROS ``(x, y, z, w)`` quaternion of a 3x3 rotation (largest-component method, w >= 0)."""
    m = np.asarray(R, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = np.array([(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s])
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = np.zeros(4)
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
        q[3] = (m[k, j] - m[j, k]) / s
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def transform_msg(parent_T_child: np.ndarray, parent: str, child: str, stamp_ns: int) -> TransformStamped:
    """``TransformStamped`` of a 4x4 ``parent_T_child``."""
    t = TransformStamped(child_frame_id=child)
    t.header = Header(stamp=stamp_msg(stamp_ns), frame_id=parent)
    tr = t.transform.translation
    tr.x, tr.y, tr.z = (float(v) for v in parent_T_child[:3, 3])
    r = t.transform.rotation
    r.x, r.y, r.z, r.w = quaternion_xyzw(parent_T_child[:3, :3])
    return t


def tf_static_msg(cameras: list[str], ego_T_cam: np.ndarray, stamp_ns: int) -> TFMessage:
    """``base_link -> <cam>_optical`` for every camera (``ego_T_cam``: n 4 4)."""
    return TFMessage(transforms=[transform_msg(T, EGO_FRAME, optical_frame(c), stamp_ns)
                                 for c, T in zip(cameras, ego_T_cam)])


def camera_info_msg(camera: str, K: np.ndarray, height: int, width: int, stamp_ns: int) -> CameraInfo:
    """Pinhole CameraInfo: ``K``, zero plumb_bob distortion, ``P = [K | 0]``."""
    msg = CameraInfo(height=int(height), width=int(width), distortion_model="plumb_bob")
    msg.header = Header(stamp=stamp_msg(stamp_ns), frame_id=optical_frame(camera))
    msg.d = [0.0] * 5
    msg.k = np.asarray(K, dtype=np.float64).ravel().tolist()
    msg.r = np.eye(3).ravel().tolist()
    msg.p = np.hstack([np.asarray(K, dtype=np.float64), np.zeros((3, 1))]).ravel().tolist()
    return msg


def _u8(data: bytes) -> array.array:
    out = array.array("B")
    out.frombytes(data)
    return out


def image_msg(camera: str, rgb: np.ndarray, stamp_ns: int) -> Image:
    """``rgb8`` Image of an ``H W 3`` uint8 RGB array."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H W 3 uint8 image, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w)
    msg.header = Header(stamp=stamp_msg(stamp_ns), frame_id=optical_frame(camera))
    msg.data = _u8(np.ascontiguousarray(rgb).tobytes())
    return msg


def compressed_msg(camera: str, jpeg: bytes, stamp_ns: int) -> CompressedImage:
    """JPEG ``CompressedImage`` of already encoded bytes."""
    msg = CompressedImage(format="jpeg")
    msg.header = Header(stamp=stamp_msg(stamp_ns), frame_id=optical_frame(camera))
    msg.data = _u8(jpeg)
    return msg


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an ``H W 3`` uint8 RGB image."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def ground_truth_msg(semantics: np.ndarray, mask_camera: np.ndarray, grid: GridConfig,
                     stamp_ns: int) -> SemanticVoxelGrid:
    """The ground truth as a ``SemanticVoxelGrid`` built by the node's own builder.

    ``confidence`` carries the camera-visibility mask: 255 where a camera observes the voxel
    (the voxels Occ3D scores), 0 elsewhere.
    """
    truth = Prediction(labels=semantics.astype(np.uint8), confidence=(mask_camera.astype(np.uint8) * 255),
                       rotation_offsets=np.zeros((0, 3)), translation_offsets=np.zeros((0, 3)))
    header = Header(stamp=stamp_msg(stamp_ns), frame_id=EGO_FRAME)
    return voxel_grid_msg(truth, grid, CLASS_NAMES, header, FREE)


@dataclass
class FrameMessages:
    """Every message of one synthetic frame, keyed by absolute topic."""

    stamp_ns: int
    cameras: dict[str, Image | CompressedImage] = field(default_factory=dict)  # image topic -> msg
    infos: dict[str, CameraInfo] = field(default_factory=dict)  # info topic -> msg
    tf: TFMessage | None = None
    ground_truth: SemanticVoxelGrid | None = None

    def all(self) -> list[tuple[str, object]]:
        """``(topic, msg)`` in publishing order: tf, per camera info then image, ground truth."""
        out: list[tuple[str, object]] = [("/tf", self.tf)] if self.tf is not None else []
        for (ti, info), (tc, img) in zip(self.infos.items(), self.cameras.items()):
            out += [(ti, info), (tc, img)]
        if self.ground_truth is not None:
            out.append((GROUND_TRUTH_TOPIC, self.ground_truth))
        return out


def frame_messages(frame: SynthFrame, stamp_ns: int, grid: GridConfig, compressed: bool = False,
                   jpegs: list[bytes] | None = None) -> FrameMessages:
    """Messages of a rendered frame, all stamped ``stamp_ns`` (``jpegs``: pre-encoded images)."""
    out = FrameMessages(stamp_ns)
    for i, name in enumerate(frame.camera_names):
        cam = ros_camera_name(name)
        rgb = frame.images[i]
        out.infos[info_topic(cam)] = camera_info_msg(cam, frame.intrinsics[i], rgb.shape[0], rgb.shape[1], stamp_ns)
        if compressed:
            data = jpegs[i] if jpegs is not None else encode_jpeg(rgb)
            out.cameras[image_topic(cam, True)] = compressed_msg(cam, data, stamp_ns)
        else:
            out.cameras[image_topic(cam, False)] = image_msg(cam, rgb, stamp_ns)
    out.tf = TFMessage(transforms=[transform_msg(frame.global_T_ego, ODOM_FRAME, EGO_FRAME, stamp_ns)])
    out.ground_truth = ground_truth_msg(frame.semantics, frame.mask_camera, grid, stamp_ns)
    return out


def parse_resolution(text: str) -> tuple[int, int]:
    """``HxW`` -> ``(H, W)``; raises ``argparse.ArgumentTypeError`` on anything else."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 128x352 (HxW), got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"resolution must be at least 8x8, got {text!r}")
    return h, w


def load_rig(name: str) -> Rig | None:
    """``default`` (the nuScenes rig, ``None`` to SynthSpec) or a directory holding a sample.json."""
    if name == "default":
        return None
    if not (Path(name) / "sample.json").is_file():
        raise FileNotFoundError(f"--rig must be 'default' or a directory with a sample.json, got {name!r}")
    return load_nuscenes_sample_rig(name)


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """The synthetic-world options shared by ``scaocc cameras`` and ``scaocc bag synth``."""
    parser.add_argument("--rig", default="default", help="'default' (nuScenes sample rig) or a sample directory")
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate in Hz (also the world's frame rate)")
    parser.add_argument("--scenes", type=int, default=1, help="number of synthetic scenes (drives)")
    parser.add_argument("--frames", type=int, default=20, help="frames per scene")
    parser.add_argument("--seed", type=int, default=0, help="world seed")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="difficulty preset")
    parser.add_argument("--resolution", type=parse_resolution, default=(256, 704),
                        help="image size HxW (default 256x704, the tiny models' input)")
    parser.add_argument("--compressed", action="store_true", help="JPEG CompressedImage on <cam>/image/compressed")


def spec_from_args(args: argparse.Namespace) -> SynthSpec:
    """The :class:`SynthSpec` the world options describe (Occ3D grid for the ground truth)."""
    h, w = args.resolution
    return SynthSpec(seed=args.seed, scenes=args.scenes, frames=args.frames, preset=args.preset, height=h,
                     width=w, rate_hz=args.rate, rig=load_rig(args.rig))


def render_all(spec: SynthSpec, compressed: bool) -> list[tuple[SynthFrame, list[bytes] | None]]:
    """Every frame of ``spec`` (scene-major), with its JPEGs when ``compressed``."""
    out = []
    for s, f in tqdm([(s, f) for s in range(spec.scenes) for f in range(spec.frames)], desc="rendering",
                     unit="frame", file=sys.stderr):
        frame = render_frame(spec, s, f)
        out.append((frame, [encode_jpeg(im) for im in frame.images] if compressed else None))
    return out
