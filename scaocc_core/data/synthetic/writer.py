"""Write a rendered synthetic set to disk: PNG images and labels, depth, Occ3D labels and
a :class:`~scaocc_core.data.manifest.Manifest`. Output bytes depend only on the spec."""

from __future__ import annotations

import io
import logging
import multiprocessing
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from scaocc_core.data.manifest import CameraRecord, FrameRecord, Manifest
from scaocc_core.data.synthetic.frame import render_frame
from scaocc_core.data.synthetic.spec import SynthFrame, SynthSpec
from scaocc_core.grid import CLASS_NAMES, NUM_CLASSES

log = logging.getLogger(__name__)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def write_frame(out_dir: Path, frame: SynthFrame) -> FrameRecord:
    """Write one frame's files under ``out_dir``; return its manifest record (relative paths)."""
    sub = Path(frame.scene) / frame.token
    cameras = {}
    for c, name in enumerate(frame.camera_names):
        image, sem2d, depth = (f"{kind}/{sub.as_posix()}/{name}.{ext}" for kind, ext in
                               (("images", "png"), ("sem2d", "png"), ("depth", "npy")))
        _write_png(out_dir / image, cv2.cvtColor(frame.images[c], cv2.COLOR_RGB2BGR))
        _write_png(out_dir / sem2d, frame.sem2d[c])
        (out_dir / depth).parent.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / depth, frame.depth2d[c])
        cameras[name] = CameraRecord(image=image, intrinsics_K=tuple(map(tuple, frame.intrinsics[c].tolist())),
                                     ego_T_cam=tuple(map(tuple, frame.ego_T_cam[c].tolist())), sem2d=sem2d,
                                     depth2d=depth)
    occ = f"gts/{sub.as_posix()}/labels.npz"
    (out_dir / occ).parent.mkdir(parents=True, exist_ok=True)
    save_npz(out_dir / occ, semantics=frame.semantics, mask_lidar=frame.mask_lidar, mask_camera=frame.mask_camera)
    return FrameRecord(token=frame.token, scene=frame.scene, timestamp=frame.timestamp,
                       global_T_ego=tuple(map(tuple, frame.global_T_ego.tolist())), occ_path=occ, cameras=cameras)


def _render_and_write(out_dir: Path, spec: SynthSpec, scene: int, index: int, parallel: bool,
                      ) -> tuple[FrameRecord, np.ndarray, list[str]]:
    """Render and write one frame: its record, its ``18`` voxel counts per class, the camera names."""
    frame = render_frame(spec, scene, index, parallel)
    histogram = np.bincount(frame.semantics.ravel(), minlength=NUM_CLASSES)
    return write_frame(out_dir, frame), histogram, list(frame.camera_names)


def _written(out_dir: Path, spec: SynthSpec, workers: int,
             ) -> Iterator[tuple[FrameRecord, np.ndarray, list[str]]]:
    """Every frame rendered and written, in (scene, frame) order, by ``workers`` processes."""
    jobs = [(scene, index) for scene in range(spec.scenes) for index in range(spec.frames)]
    if workers <= 1:  # in this process, with numba threads
        for scene, index in jobs:
            yield _render_and_write(out_dir, spec, scene, index, True)
        return
    # Spawned, single-threaded workers: numba's thread pool must not be forked.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(_render_and_write, *zip(*[(out_dir, spec, s, i, False) for s, i in jobs]))


def write_dataset(out_dir: Path, spec: SynthSpec, val_scenes: int, workers: int = 1) -> Manifest:
    """Render every frame of ``spec`` into ``out_dir`` and save ``manifest.json``.

    The last ``val_scenes`` scenes form the ``val`` split, the others ``train`` (whole scenes,
    never mixed). ``manifest.extra`` holds the spec (``synth_spec``) and the voxel count of
    each class over all frames (``class_histogram``). ``workers`` > 1 renders in that many
    processes; the bytes written do not depend on it.
    """
    if not 0 <= val_scenes <= spec.scenes:
        raise ValueError(f"val_scenes must be within 0..{spec.scenes}, got {val_scenes}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames: list[FrameRecord] = []
    splits: dict[str, list[int]] = {"train": [], "val": []}
    histogram = np.zeros(NUM_CLASSES, np.int64)
    names: list[str] = []
    first_val = (spec.scenes - val_scenes) * spec.frames
    for record, counts, cameras in tqdm(_written(out_dir, spec, workers), total=spec.scenes * spec.frames,
                                        desc="synth", unit="frame"):
        names = cameras
        histogram += counts
        splits["val" if len(frames) >= first_val else "train"].append(len(frames))
        frames.append(record)
    manifest = Manifest(
        root=out_dir, source="synthetic", camera_names=names, frames=frames, splits=splits,
        grid={"lower": list(spec.grid.lower), "upper": list(spec.grid.upper), "size": list(spec.grid.size)},
        extra={"synth_spec": spec.to_dict(),
               "class_histogram": {name: int(n) for name, n in zip(CLASS_NAMES, histogram)}},
    )
    path = manifest.save()
    log.info("wrote %d frames (%d train, %d val) to %s", len(frames), len(splits["train"]), len(splits["val"]), path)
    return manifest
