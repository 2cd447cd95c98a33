"""Convert Occ3D-nuScenes (BEVDet-style info pickles) into a scaocc manifest.

SECURITY: the info files are Python pickles, and loading a pickle can execute arbitrary
code. Only convert pickles you created yourself or obtained from a source you trust.

Input: ``bevdetv2-nuscenes_infos_{train,val}.pkl`` (a dict with ``infos`` and
``metadata``). Each info holds ``token``, ``scene_name`` or ``scene_token``, ``timestamp``
(microseconds), ``ego2global_{translation,rotation}`` (quaternions w, x, y, z), ``occ_path``
(a directory of the Occ3D ``gts/<scene>/<token>/`` tree holding ``labels.npz``) and
``cams[CAM]`` with ``data_path``, ``sensor2ego_*``, ``ego2global_*`` and ``cam_intrinsic``.

``ego_T_cam`` in the manifest maps the camera into the ego frame *at the keyframe (lidar)
timestamp*, the frame the Occ3D labels live in: ``inv(keyego2global) @ camego2global @
cam2ego`` (the ego moves between the lidar and the camera exposures).

With ``--lidarseg DIR`` the keyframe's LIDAR_TOP points (``lidar_path``, ``lidar2ego_*``)
and their nuScenes-lidarseg labels (``info["lidarseg_path"]`` if present, else
``DIR/<lidar_token>_lidarseg.bin``) are mapped to the Occ3D classes and projected into
every camera at full resolution, giving sparse 2D semantics (PNG, 255 = no label) and
depth maps (``.npz``, metres, 0 = none) for the causal and depth losses.
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from scaocc_core.config import GridConfig
from scaocc_core.data.labels import DataError, write_depth2d, write_sem2d
from scaocc_core.data.manifest import CameraRecord, FrameRecord, Manifest
from scaocc_core.data.rig import NUSCENES_CAMERAS
from scaocc_core.geometry import make_transform, quaternion_to_matrix
from scaocc_core.grid import IGNORE

log = logging.getLogger(__name__)

#: Lidar returns closer than this (metres, along the optical axis) are not projected.
MIN_DEPTH_M = 1.0
#: Path components where nuScenes-relative paths start (used by ``--data-root``).
_ROOT_MARKERS = ("samples", "sweeps", "gts", "lidarseg")

# nuScenes-lidarseg (32 classes) -> Occ3D (17 classes + free): the standard mapping, except
# that noise (0) and the ego vehicle (31) get no label instead of "others".
_LIDARSEG_GROUPS: dict[int, tuple[int, ...]] = {
    0: (1, 5, 7, 8, 10, 11, 13, 19, 20, 29),  # others
    1: (9,),  # barrier
    2: (14,),  # bicycle
    3: (15, 16),  # bus (bendy, rigid)
    4: (17,),  # car
    5: (18,),  # construction_vehicle
    6: (21,),  # motorcycle
    7: (2, 3, 4, 6),  # pedestrian (adult, child, construction worker, police officer)
    8: (12,),  # traffic_cone
    9: (22,),  # trailer
    10: (23,),  # truck
    11: (24,),  # driveable_surface
    12: (25,),  # other_flat
    13: (26,),  # sidewalk
    14: (27,),  # terrain
    15: (28,),  # manmade
    16: (30,),  # vegetation
}
LIDARSEG_TO_OCC3D = np.full(32, IGNORE, dtype=np.uint8)
for _occ, _members in _LIDARSEG_GROUPS.items():
    LIDARSEG_TO_OCC3D[list(_members)] = _occ


def load_infos(path: str | Path) -> list[dict[str, Any]]:
    """The ``infos`` list of a BEVDet info pickle (trusted input only: pickle runs code)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = pickle.load(fh)  # trusted input only (see module docstring)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise DataError(f"cannot read info pickle {path}: {exc}") from exc
    infos = data.get("infos") if isinstance(data, dict) else data
    if not isinstance(infos, list):
        raise DataError(f"{path}: expected a dict with an 'infos' list, got {type(data).__name__}")
    return infos


def reroot(path: str | Path, data_root: Path | None) -> Path:
    """Re-root a nuScenes path under ``data_root`` from its ``samples/``/``sweeps/``/``gts/`` part."""
    p = Path(path)
    if data_root is None:
        return p.resolve()
    parts = p.parts
    for i, part in enumerate(parts):
        if part in _ROOT_MARKERS:
            return data_root.joinpath(*parts[i:])
    return p if p.is_absolute() else data_root / p


def _pose(info: dict[str, Any], prefix: str) -> np.ndarray:
    """4x4 transform from ``<prefix>_rotation`` (w, x, y, z) and ``<prefix>_translation``."""
    return make_transform(quaternion_to_matrix(info[f"{prefix}_rotation"]), info[f"{prefix}_translation"])


def camera_extrinsics(info: dict[str, Any], cam: str) -> np.ndarray:
    """``keyego_T_cam`` (4x4) of camera ``cam`` for the keyframe of ``info``."""
    c = info["cams"][cam]
    global_T_keyego = _pose(info, "ego2global")
    global_T_camego = _pose(c, "ego2global") if "ego2global_rotation" in c else global_T_keyego
    return np.linalg.inv(global_T_keyego) @ global_T_camego @ _pose(c, "sensor2ego")


def project_points(
    points_ego: np.ndarray, labels: np.ndarray, K: np.ndarray, ego_T_cam: np.ndarray, hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Project labelled ego points ``N 3`` into an ``H x W`` image.

    Returns a label map ``H W`` uint8 (255 = no point) and a depth map ``H W`` float32
    (0 = none); points nearer than :data:`MIN_DEPTH_M` or without a label are dropped and,
    where several points hit one pixel, the nearest wins.
    """
    H, W = hw
    cam_T_ego = np.linalg.inv(ego_T_cam)
    pc = points_ego @ cam_T_ego[:3, :3].T + cam_T_ego[:3, 3]  # N 3, optical frame
    depth = pc[:, 2]
    keep = (depth > MIN_DEPTH_M) & (labels != IGNORE)
    uvw = pc[keep] @ K.T
    u = np.rint(uvw[:, 0] / uvw[:, 2]).astype(np.int64)
    v = np.rint(uvw[:, 1] / uvw[:, 2]).astype(np.int64)
    d, lab = depth[keep], labels[keep]
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    order = np.argsort(-d[inside], kind="stable")  # far first: near points overwrite
    u, v, d, lab = u[inside][order], v[inside][order], d[inside][order], lab[inside][order]
    sem = np.full((H, W), IGNORE, dtype=np.uint8)
    dmap = np.zeros((H, W), dtype=np.float32)
    sem[v, u], dmap[v, u] = lab, d
    return sem, dmap


def load_lidarseg(
    info: dict[str, Any], lidarseg_dir: Path, data_root: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """Keyframe lidar points in the key ego frame (``N 3``) and their Occ3D labels (``N``)."""
    lidar_path = reroot(info["lidar_path"], data_root)
    if "lidarseg_path" in info:
        label_path = reroot(info["lidarseg_path"], data_root)
    elif "lidar_token" in info:
        label_path = lidarseg_dir / f"{info['lidar_token']}_lidarseg.bin"
    else:
        raise DataError(f"info {info.get('token')}: needs 'lidar_token' or 'lidarseg_path' for --lidarseg")
    try:
        raw = np.fromfile(lidar_path, dtype=np.float32)
        labels = np.fromfile(label_path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read lidar points or lidarseg labels: {exc}") from exc
    if raw.size % 5:
        raise DataError(f"{lidar_path}: size is not a multiple of 5 float32 (x, y, z, intensity, ring)")
    points = raw.reshape(-1, 5)[:, :3].astype(np.float64)  # N 3, LIDAR_TOP frame
    if labels.shape[0] != points.shape[0]:
        raise DataError(f"{label_path}: {labels.shape[0]} labels for {points.shape[0]} points in {lidar_path}")
    if labels.size and labels.max() >= len(LIDARSEG_TO_OCC3D):
        raise DataError(f"{label_path}: lidarseg class {labels.max()} outside 0..31")
    ego_T_lidar = _pose(info, "lidar2ego")
    return points @ ego_T_lidar[:3, :3].T + ego_T_lidar[:3, 3], LIDARSEG_TO_OCC3D[labels]


def _image_hw(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


def _matrix(m: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(x) for x in row) for row in np.asarray(m, dtype=np.float64))


def info_to_frame(
    info: dict[str, Any], out: Path, data_root: Path | None, lidarseg_dir: Path | None
) -> FrameRecord:
    """One manifest frame from one info (writes the projected 2D labels when asked)."""
    token = str(info["token"])
    try:
        missing = [c for c in NUSCENES_CAMERAS if c not in info["cams"]]
        if missing:
            raise DataError(f"info {token}: cameras {missing} missing")
        occ = reroot(info["occ_path"], data_root) / "labels.npz" if info.get("occ_path") else None
        if occ is not None and not occ.is_file():
            raise DataError(f"info {token}: Occ3D labels {occ} not found")
        points = labels = None
        if lidarseg_dir is not None:
            points, labels = load_lidarseg(info, lidarseg_dir, data_root)
        cams: dict[str, CameraRecord] = {}
        for name in NUSCENES_CAMERAS:
            c = info["cams"][name]
            image = reroot(c["data_path"], data_root)
            if not image.is_file():
                raise DataError(f"info {token}: image {image} not found")
            K = np.asarray(c["cam_intrinsic"], dtype=np.float64)
            T = camera_extrinsics(info, name)
            sem_rel = depth_rel = None
            if points is not None and labels is not None:
                sem, depth = project_points(points, labels, K, T, _image_hw(image))
                sem_rel, depth_rel = f"lidarseg2d/{token}/{name}_sem.png", f"lidarseg2d/{token}/{name}_depth.npz"
                write_sem2d(out / sem_rel, sem)
                write_depth2d(out / depth_rel, depth)
            cams[name] = CameraRecord(str(image), _matrix(K), _matrix(T), sem_rel, depth_rel)
        scene = str(info.get("scene_name") or info["scene_token"])
        return FrameRecord(
            token, scene, float(info["timestamp"]) / 1e6, _matrix(_pose(info, "ego2global")),
            str(occ) if occ else None, cams,
        )
    except KeyError as exc:
        raise DataError(f"info {token}: missing field {exc}") from exc


def convert(
    infos_train: str | Path | None,
    infos_val: str | Path | None,
    out: str | Path,
    data_root: str | Path | None = None,
    lidarseg: str | Path | None = None,
) -> Manifest:
    """Convert the train/val info pickles into ``out/manifest.json``; returns the manifest."""
    out = Path(out).resolve()
    root = Path(data_root).resolve() if data_root is not None else None
    seg = Path(lidarseg).resolve() if lidarseg is not None else None
    frames: list[FrameRecord] = []
    splits: dict[str, list[int]] = {}
    for split, path in (("train", infos_train), ("val", infos_val)):
        if path is None:
            continue
        infos = load_infos(path)
        start = len(frames)
        for info in tqdm(infos, desc=f"prepare-nuscenes {split}", unit="frame", disable=len(infos) < 50):
            frames.append(info_to_frame(info, out, root, seg))
        splits[split] = list(range(start, len(frames)))
        log.info("%s: %d frames from %s", split, len(infos), path)
    if not frames:
        raise DataError("no infos given: pass --infos-train and/or --infos-val")
    tokens = [f.token for f in frames]
    if len(set(tokens)) != len(tokens):
        raise DataError("the info pickles contain duplicate sample tokens")
    g = GridConfig()
    manifest = Manifest(
        root=out,
        source="occ3d-nuscenes",
        camera_names=list(NUSCENES_CAMERAS),
        frames=frames,
        splits=splits,
        grid={"lower": list(g.lower), "upper": list(g.upper), "size": list(g.size)},
        extra={"lidarseg": seg is not None},
    )
    manifest.save()
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc prepare-nuscenes``."""
    parser.epilog = "WARNING: info pickles are trusted input only (unpickling can execute code)."
    parser.add_argument("--infos-train", type=Path, help="bevdetv2-nuscenes_infos_train.pkl (trusted input)")
    parser.add_argument("--infos-val", type=Path, help="bevdetv2-nuscenes_infos_val.pkl (trusted input)")
    parser.add_argument("--data-root", type=Path, help="re-root data_path/occ_path/lidar_path here "
                        "(from their samples/, sweeps/, gts/ part)")
    parser.add_argument("--lidarseg", type=Path, metavar="DIR",
                        help="nuScenes-lidarseg label dir (<lidar_token>_lidarseg.bin): write sparse 2D "
                        "semantics and depth by projecting the keyframe lidar into each camera")
    parser.add_argument("--out", type=Path, required=True, help="output directory for manifest.json")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``scaocc prepare-nuscenes``."""
    if args.infos_train is None and args.infos_val is None:
        log.error("give --infos-train and/or --infos-val")
        return 2
    m = convert(args.infos_train, args.infos_val, args.out, args.data_root, args.lidarseg)
    print(f"wrote {m.root / 'manifest.json'}: " + ", ".join(f"{k} {len(v)} frames" for k, v in m.splits.items()))
    return 0
