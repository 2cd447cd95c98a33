"""The one training/evaluation dataset: any manifest, or synthetic frames rendered on the fly.

``OccDataset(source, split, model_cfg)`` reads a manifest (its directory or its
``manifest.json``) or, for ``source = "synthetic:KEY=VALUE,..."``, renders frames of the
synthetic world directly (keys: ``scenes``, ``frames``, ``seed``, ``preset``,
``res=HxW``, ``rate_hz``, ``val_scenes``; the last ``val_scenes`` scenes form ``val``,
like ``write_dataset``). Each item is a :class:`~scaocc_core.batch.Batch` with batch
dimension 1; stack them with :func:`scaocc_core.batch.collate`.

Augmentation randomness comes from a generator seeded by ``(seed, epoch, index)``
(call :meth:`OccDataset.set_epoch`), camera noise from ``(noise_seed, index)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from scaocc_core.batch import Batch, CameraInputs, Targets
from scaocc_core.config import GridConfig, ModelConfig
from scaocc_core.data import augment as aug
from scaocc_core.data.labels import (
    DataError,
    OccLabels,
    downsample_labels,
    grid_factor,
    load_occ3d_labels,
    read_depth2d,
    read_sem2d,
)
from scaocc_core.data.manifest import Manifest
from scaocc_core.data.noise import CameraNoise
from scaocc_core.grid import IGNORE, NUM_CLASSES

log = logging.getLogger(__name__)

SYNTHETIC_PREFIX = "synthetic:"


@dataclass
class RawFrame:
    """One frame as stored: images at their own size, calibration, optional labels."""

    token: str
    images: list[np.ndarray]  # n x (H W 3 uint8 RGB)
    intrinsics: np.ndarray  # n 3 3, pixels of the stored images
    ego_T_cam: np.ndarray  # n 4 4
    labels: OccLabels | None  # on label_grid
    label_grid: GridConfig
    sem2d: list[np.ndarray] | None = None  # n x (H W uint8), 255 = no label
    depth2d: list[np.ndarray] | None = None  # n x (H W float32 m), 0 = none


def read_image(path: Path) -> np.ndarray:
    """An image file as ``H W 3`` uint8 RGB; :class:`DataError` naming the file if unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read image {path} (missing or corrupt)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def parse_synthetic_source(text: str) -> tuple[Any, int]:
    """Parse ``synthetic:scenes=8,frames=10,...`` into ``(SynthSpec, val_scenes)``."""
    from scaocc_core.data.synthetic import SynthSpec

    body = text[len(SYNTHETIC_PREFIX) :] if text.startswith(SYNTHETIC_PREFIX) else text
    kwargs: dict[str, Any] = {}
    val_scenes = 0
    casts = {"scenes": int, "frames": int, "seed": int, "preset": str, "rate_hz": float}
    for item in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            if not sep:
                raise ValueError("expected KEY=VALUE")
            if key == "res":
                h, w = value.lower().split("x")
                kwargs["height"], kwargs["width"] = int(h), int(w)
            elif key == "val_scenes":
                val_scenes = int(value)
            elif key in casts:
                kwargs[key] = casts[key](value)
            else:
                raise ValueError(f"unknown key (use {sorted([*casts, 'res', 'val_scenes'])})")
        except ValueError as exc:
            raise ValueError(f"bad synthetic source item {item!r} in {text!r}: {exc}") from exc
    spec = SynthSpec(**kwargs)
    if not 0 <= val_scenes <= spec.scenes:
        raise ValueError(f"val_scenes must be in 0..{spec.scenes}, got {val_scenes}")
    return spec, val_scenes


class _ManifestSource:
    """Frames of one split of a manifest."""

    def __init__(self, manifest: Manifest, split: str) -> None:
        self.manifest = manifest
        self.frames = manifest.split(split)
        g = manifest.grid
        self.grid = (
            GridConfig(tuple(g["lower"]), tuple(g["upper"]), tuple(int(s) for s in g["size"]))  # type: ignore[arg-type]
            if g
            else GridConfig()
        )

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, index: int, with_images: bool = True) -> RawFrame:
        f = self.frames[index]
        cams = [f.cameras[name] for name in self.manifest.camera_names]
        labels = load_occ3d_labels(self.manifest.resolve(f.occ_path)) if f.occ_path else None
        images = [read_image(self.manifest.resolve(c.image)) for c in cams] if with_images else []
        sem2d = depth2d = None
        if with_images and all(c.sem2d for c in cams):
            sem2d = [read_sem2d(self.manifest.resolve(c.sem2d)) for c in cams if c.sem2d]
        if with_images and all(c.depth2d for c in cams):
            depth2d = [read_depth2d(self.manifest.resolve(c.depth2d)) for c in cams if c.depth2d]
        return RawFrame(
            token=f.token,
            images=images,
            intrinsics=np.stack([c.K() for c in cams]),
            ego_T_cam=np.stack([c.T() for c in cams]),
            labels=labels,
            label_grid=self.grid,
            sem2d=sem2d,
            depth2d=depth2d,
        )


class _SyntheticSource:
    """Synthetic frames rendered on demand (no files)."""

    def __init__(self, text: str, split: str) -> None:
        self.spec, val_scenes = parse_synthetic_source(text)
        n_train = self.spec.scenes - val_scenes
        scenes = {"train": range(n_train), "val": range(n_train, self.spec.scenes), "all": range(self.spec.scenes)}
        if split not in scenes:
            raise ValueError(f"split {split!r} not available for synthetic data (train, val, all)")
        self.scenes = list(scenes[split])
        self.grid = self.spec.grid

    def __len__(self) -> int:
        return len(self.scenes) * self.spec.frames

    def frame(self, index: int, with_images: bool = True) -> RawFrame:
        from scaocc_core.data.synthetic import render_frame

        scene, frame_index = self.scenes[index // self.spec.frames], index % self.spec.frames
        # In the training process itself (num_workers 0) the cores are idle while it renders.
        f = render_frame(self.spec, scene, frame_index, parallel=get_worker_info() is None)
        return RawFrame(
            token=f.token,
            images=list(f.images),
            intrinsics=np.asarray(f.intrinsics, dtype=np.float64),
            ego_T_cam=np.asarray(f.ego_T_cam, dtype=np.float64),
            labels=OccLabels(f.semantics, f.mask_camera.astype(bool), f.mask_lidar.astype(bool)),
            label_grid=self.grid,
            sem2d=list(f.sem2d),
            depth2d=list(f.depth2d),
        )


def open_source(source: str | Path | Manifest, split: str) -> _ManifestSource | _SyntheticSource:
    """The frame source behind ``source`` (its ``grid`` is the stored label grid)."""
    if isinstance(source, str) and source.startswith(SYNTHETIC_PREFIX):
        return _SyntheticSource(source, split)
    return _ManifestSource(source if isinstance(source, Manifest) else Manifest.load(source), split)


class OccDataset(Dataset[Batch]):
    """Camera sets with Occ3D targets at the model's image size and grid.

    ``source`` is a manifest (path, directory or :class:`Manifest`) or a
    ``synthetic:...`` string. With ``augment`` set, BEVDet image augmentation and BEV
    augmentation are sampled per item; otherwise a deterministic bottom-centre crop is used
    and ``bda`` is the identity. ``camera_noise`` perturbs the ``ego_T_cam`` given to the
    model (images untouched), deterministically per ``(noise_seed, index)``.
    """

    def __init__(
        self,
        source: str | Path | Manifest,
        split: str,
        model_cfg: ModelConfig,
        augment: aug.AugmentConfig | None = None,
        camera_noise: CameraNoise | None = None,
        noise_seed: int = 0,
        seed: int = 0,
    ) -> None:
        self.cfg = model_cfg
        self.augment = augment.validate() if augment is not None else None
        self.camera_noise = camera_noise
        self.noise_seed = noise_seed
        self.seed = seed
        self.epoch = 0
        self.source = open_source(source, split)
        self.factor = grid_factor(self.source.grid, model_cfg.grid)
        if self.augment is not None and not _symmetric(model_cfg.grid):
            log.warning("BEV flips of an asymmetric grid %s move labels out of range", model_cfg.grid)

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draw of every item (call once per training epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def raw_frame(self, index: int) -> RawFrame:
        """The stored (unaugmented) frame ``index``."""
        return self.source.frame(self._check(index))

    def labels(self, index: int) -> OccLabels | None:
        """Ground truth of frame ``index`` on the model grid, without augmentation."""
        raw = self.source.frame(self._check(index), with_images=False)
        return None if raw.labels is None else downsample_labels(raw.labels, self.factor)

    def _check(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} frames")
        return int(index)

    def _camera(
        self, image: np.ndarray, K: np.ndarray, sem: np.ndarray | None, depth: np.ndarray | None,
        rng: np.random.Generator | None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray | None, np.ndarray | None]:
        """One camera at network size: image ``H W 3``, what the model is handed of the camera
        (:func:`~scaocc_core.data.augment.network_camera`: ``K_net``, ``post_rot``, ``post_tran``),
        2D labels."""
        src_hw, out_hw = image.shape[:2], (self.cfg.image.height, self.cfg.image.width)
        if self.augment is not None and rng is not None:
            a = aug.sample_image_aug(src_hw, out_hw, self.augment, rng)
        else:
            a = aug.eval_image_aug(src_hw, out_hw)
        A = aug.image_aug_matrix(src_hw, out_hw, a)
        sem_out, depth_out = aug.warp_labels(sem, depth, A, out_hw, IGNORE)
        return aug.warp_image(image, out_hw, a), aug.network_camera(K, src_hw, out_hw, A), sem_out, depth_out

    def __getitem__(self, index: int) -> Batch:
        index = self._check(index)
        raw = self.source.frame(index)
        n = self.cfg.image.num_cams
        if len(raw.images) != n:
            raise DataError(f"frame {raw.token}: {len(raw.images)} cameras, model expects {n}")
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.augment else None
        views = [
            self._camera(img, raw.intrinsics[k], None if raw.sem2d is None else raw.sem2d[k],
                         None if raw.depth2d is None else raw.depth2d[k], rng)
            for k, img in enumerate(raw.images)
        ]
        cams = [v[1] for v in views]  # K_net, post_rot, post_tran
        bda = aug.sample_bda(self.augment, rng) if self.augment is not None and rng is not None else np.eye(4)
        ego_T_cam = raw.ego_T_cam
        if self.augment is not None and rng is not None:
            ego_T_cam = aug.sample_extrinsic_noise(ego_T_cam, self.augment, rng)
            if aug.sample_lowres(self.augment, rng):
                views = [(aug.halve_resolution(img), cam, sem, depth) for img, cam, sem, depth in views]
        if self.camera_noise is not None:
            ego_T_cam = self.camera_noise.apply(ego_T_cam, self.noise_seed, index)
        f32 = torch.float32
        inputs = CameraInputs(
            images=torch.from_numpy(np.stack([v[0] for v in views])).permute(0, 3, 1, 2)[None].to(f32) / 255.0,
            intrinsics=torch.as_tensor(np.stack([c[0] for c in cams]), dtype=f32)[None],  # 1 n 3 3
            ego_T_cam=torch.as_tensor(ego_T_cam, dtype=f32)[None],  # 1 n 4 4
            post_rot=torch.as_tensor(np.stack([c[1] for c in cams]), dtype=f32)[None],  # 1 n 3 3
            post_tran=torch.as_tensor(np.stack([c[2] for c in cams]), dtype=f32)[None],  # 1 n 3
            bda=torch.as_tensor(bda, dtype=f32)[None],  # 1 4 4
            camera_valid=torch.ones(1, n, dtype=torch.bool),
        )  # images: 1 n 3 H W in [0, 1]
        targets = Targets()
        if raw.labels is not None:
            labels = downsample_labels(raw.labels, self.factor)
            sem, (mc, ml) = aug.apply_bda_to_grid(
                bda, self.cfg.grid, labels.semantics, [labels.mask_camera, labels.mask_lidar]
            )
            targets.semantics = torch.from_numpy(sem.astype(np.int64))[None]  # 1 X Y Z
            targets.mask_camera = torch.from_numpy(np.ascontiguousarray(mc))[None]  # 1 X Y Z
            targets.mask_lidar = torch.from_numpy(np.ascontiguousarray(ml))[None]  # 1 X Y Z
        sem2d = [v[2] for v in views if v[2] is not None]
        depth2d = [v[3] for v in views if v[3] is not None]
        if sem2d:
            targets.sem2d = torch.from_numpy(np.stack(sem2d).astype(np.int64))[None]  # 1 n H W
        if depth2d:
            targets.depth2d = torch.from_numpy(np.stack(depth2d).astype(np.float32))[None]  # 1 n H W
        return Batch(inputs, targets, [raw.token])


def _symmetric(grid: GridConfig) -> bool:
    return bool(np.isclose(grid.lower[0], -grid.upper[0]) and np.isclose(grid.lower[1], -grid.upper[1]))


def class_frequencies(source: OccDataset | Manifest, max_frames: int = 200) -> np.ndarray:
    """Voxel counts per class (``18`` int64) under ``mask_camera`` over up to ``max_frames`` frames.

    A dataset counts on its model grid (without augmentation); a manifest on its stored
    grid over all its frames. Frames are spread evenly; frames without labels are skipped.
    """
    n = len(source) if isinstance(source, OccDataset) else len(source.frames)
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    if n == 0 or max_frames <= 0:
        return counts
    picks = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    for i in picks:
        if isinstance(source, OccDataset):
            labels = source.labels(int(i))
        else:
            occ = source.frames[int(i)].occ_path
            labels = load_occ3d_labels(source.resolve(occ)) if occ else None
        if labels is not None:
            counts += np.bincount(labels.semantics[labels.mask_camera].ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES]
    return counts
