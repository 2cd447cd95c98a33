"""Pictures of occupancy: camera overlays, BEV maps and 3D voxel views (PNG files).

The plotting functions are pure (arrays in, PNG path out) and use matplotlib's Agg
backend, so training, the demo and the node tooling can call them headless. Colours are
the Occ3D palette (:data:`scaocc_core.grid.PALETTE`).

``scaocc viz --data DIR|synthetic:SPEC [--index I] [--split val] [--checkpoint CKPT] --out DIR``
writes, for one frame: ``cameras_gt.png`` (six views with 2D labels, or the GT voxels
rendered into the cameras), ``bev.png`` (GT and, with a checkpoint, prediction) and
``voxels_gt.png`` / ``voxels_pred.png``. The 3D voxel views are rendered as cubes by open3d
offscreen when it can run here (:mod:`scaocc_core.viz3d`), otherwise as a matplotlib scatter;
``--view3d open3d|matplotlib`` forces one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from scaocc_core.config import GridConfig  # noqa: E402
from scaocc_core.grid import CLASS_NAMES, FREE, IGNORE, PALETTE  # noqa: E402
from scaocc_core.viz3d import cube_mesh, open3d_unavailable, render_png, warn_fallback  # noqa: E402

log = logging.getLogger(__name__)
UNOBSERVED_RGB = np.array([200, 200, 200], dtype=np.uint8)
CAMERA_TITLES = ("FRONT LEFT", "FRONT", "FRONT RIGHT", "BACK LEFT", "BACK", "BACK RIGHT")
VIEW3D_BACKENDS = ("auto", "open3d", "matplotlib")


def save_figure(fig: Figure, path: str | Path, layout: bool = True) -> Path:
    """Write ``fig`` to ``path`` as a PNG (creating its folder), close it and return the path.

    ``layout`` runs ``tight_layout`` first; pass False where the figure placed its axes itself.
    """
    if layout:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _legend(ax: plt.Axes, classes: np.ndarray) -> None:
    handles = [Patch(color=PALETTE[c] / 255.0, label=CLASS_NAMES[c]) for c in classes if c != FREE]
    if handles:
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)


def _is_sparse(sem: np.ndarray) -> bool:
    return bool(np.mean((sem != IGNORE) & (sem != FREE)) < 0.2)


def overlay(image: np.ndarray, sem: np.ndarray | None, alpha: float = 0.55) -> np.ndarray:
    """Blend a label map ``H W`` (255 = none, 17 = free: not drawn) over an ``H W 3`` uint8 image.

    Sparse maps (projected lidar) are dilated into small squares so they stay visible.
    """
    import cv2

    if sem is None:
        return image
    sem = sem.astype(np.uint8)
    if _is_sparse(sem):
        k = max(3, image.shape[1] // 250)  # about 1.5 px of a 2x3 grid panel
        marked = np.where((sem != IGNORE) & (sem != FREE), sem + 1, 0).astype(np.uint8)
        sem = cv2.dilate(marked, np.ones((k, k), np.uint8)) - 1  # 255 where nothing was marked
    labelled = (sem != IGNORE) & (sem != FREE)
    colours = PALETTE[np.minimum(sem, FREE)]
    blended = cv2.addWeighted(image, 1 - alpha, colours, alpha, 0.0)
    return np.where(labelled[..., None], blended, image)


def _display_size(image: np.ndarray, sem: np.ndarray | None, width: int = 640) -> np.ndarray:
    """Overlay ``sem`` on ``image`` and shrink the result to at most ``width`` pixels across.

    Dense labels are shrunk first (nearest) to save time; sparse ones are dilated at full
    resolution (in :func:`overlay`) so no point vanishes.
    """
    import cv2

    if image.shape[1] <= width:
        return overlay(image, sem)
    h = round(image.shape[0] * width / image.shape[1])
    if sem is not None and not _is_sparse(sem):
        small = cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA)
        return overlay(small, cv2.resize(sem.astype(np.uint8), (width, h), interpolation=cv2.INTER_NEAREST))
    return cv2.resize(overlay(image, sem), (width, h), interpolation=cv2.INTER_AREA)


def camera_overlay_png(
    images: np.ndarray | list[np.ndarray],
    sem2d: np.ndarray | list[np.ndarray] | None,
    path: str | Path,
    titles: tuple[str, ...] = CAMERA_TITLES,
    suptitle: str | None = None,
) -> Path:
    """Six camera views (``n H W 3`` uint8) in a 2x3 grid with a semantic overlay (``n H W``)."""
    path = Path(path)
    n = len(images)
    rows = (n + 2) // 3
    h, w = images[0].shape[:2]
    fig, axes = plt.subplots(rows, 3, figsize=(15, 15 * rows * h / (3 * w) + 0.8), squeeze=False)
    present: set[int] = set()
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= n:
            continue
        sem = None if sem2d is None else np.asarray(sem2d[k])
        ax.imshow(_display_size(np.asarray(images[k]), sem))
        ax.set_title(titles[k] if k < len(titles) else f"camera {k}", fontsize=10)
        if sem is not None:
            present.update(int(c) for c in np.unique(sem) if c < FREE)
    _legend(axes[0, -1], np.array(sorted(present), dtype=int))
    if suptitle:
        fig.suptitle(suptitle)
    return save_figure(fig, path)


def bev_image(semantics: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Top-down RGB ``X Y 3`` -> image with +x (forward) up and +y (left) left.

    Each column shows its top-most non-free (and observed, when ``mask`` is given) class,
    shaded darker the lower it sits; empty columns are white, never-observed ones grey.
    """
    occ = semantics != FREE
    if mask is not None:
        occ &= mask
    Z = semantics.shape[2]
    top = Z - 1 - np.argmax(occ[..., ::-1], axis=-1)  # X Y, highest occupied k
    has = occ.any(-1)
    cls = np.take_along_axis(semantics, top[..., None], axis=-1)[..., 0]
    shade = 0.7 + 0.3 * (top + 1) / Z
    rgb = np.where(has[..., None], PALETTE[cls] * shade[..., None], 255.0).astype(np.uint8)
    if mask is not None:
        rgb[~mask.any(-1) & ~has] = UNOBSERVED_RGB
    return rgb[::-1, ::-1]  # rows: x descending; columns: y descending


def bev_png(
    gt: np.ndarray | None,
    pred: np.ndarray | None,
    path: str | Path,
    mask: np.ndarray | None = None,
    grid: GridConfig | None = None,
) -> Path:
    """BEV maps of ground truth and prediction side by side (either may be ``None``)."""
    grid = grid or GridConfig()
    panels = [(name, sem) for name, sem in (("ground truth", gt), ("prediction", pred)) if sem is not None]
    if not panels:
        raise ValueError("bev_png needs gt or pred")
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels) + 2.2, 6.4), squeeze=False)
    (x0, y0, _), (x1, y1, _) = grid.lower, grid.upper
    present: set[int] = set()
    for ax, (name, sem) in zip(axes[0], panels):
        m = mask if mask is not None else None
        ax.imshow(bev_image(sem, m), extent=(y1, y0, x0, x1), interpolation="nearest")
        ax.add_patch(Rectangle((-0.95, -2.4), 1.9, 4.8, color="black"))  # ego car, ~4.8 m x 1.9 m
        ax.set_title(name + (" (camera-visible voxels)" if m is not None else ""))
        ax.set_xlabel("y (m, left)")
        ax.set_ylabel("x (m, forward)")
        present.update(int(c) for c in np.unique(sem if m is None else sem[m]) if c < FREE)
    _legend(axes[0, -1], np.array(sorted(present), dtype=int))
    return save_figure(fig, path)


def surface_voxels(semantics: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices ``k 3`` of occupied voxels with at least one free 6-neighbour.

    Beyond the grid's sides and floor counts as occupied (cut faces are not drawn), above
    its ceiling as free.
    """
    occ = semantics != FREE
    if mask is not None:
        occ &= mask
    padded = np.pad(occ, 1, constant_values=True)
    padded[:, :, -1] = False
    inner = np.ones_like(occ)
    for axis in range(3):
        for shift in (-1, 1):
            inner &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(occ & ~inner)


def voxels_3d_png(
    semantics: np.ndarray,
    path: str | Path,
    mask: np.ndarray | None = None,
    grid: GridConfig | None = None,
    title: str = "",
    max_points: int = 60000,
    backend: str = "auto",
) -> Path:
    """A 3D view of the occupied voxels (``X Y Z`` labels), seen from behind and above.

    ``backend``: ``"open3d"`` (cubes rendered offscreen, see :mod:`scaocc_core.viz3d`),
    ``"matplotlib"`` (a scatter of at most ``max_points`` surface voxels) or ``"auto"``
    (open3d when it can render here, else matplotlib with a logged warning).
    """
    if backend not in VIEW3D_BACKENDS:
        raise ValueError(f"voxels_3d_png: backend must be one of {VIEW3D_BACKENDS}, got {backend!r}")
    grid = grid or GridConfig()
    idx = surface_voxels(semantics, mask)
    if backend != "matplotlib":
        reason = open3d_unavailable()
        if reason is None:
            occupied = semantics != FREE if mask is None else (semantics != FREE) & mask
            labels = semantics[idx[:, 0], idx[:, 1], idx[:, 2]]
            return render_png(cube_mesh(idx, labels, grid, occupied), np.unique(labels), path, grid,
                              title or f"{len(idx)} surface voxels")
        if backend == "open3d":
            raise RuntimeError(f"3D view with open3d requested, but {reason}")
        warn_fallback(reason)
    if len(idx) > max_points:
        idx = idx[np.random.default_rng(0).choice(len(idx), max_points, replace=False)]
    centres = np.asarray(grid.lower) + (idx + 0.5) * np.asarray(grid.voxel_size)  # k 3
    colours = PALETTE[semantics[idx[:, 0], idx[:, 1], idx[:, 2]]] / 255.0
    fig = plt.figure(figsize=(11, 8))
    ax = fig.add_subplot(projection="3d")
    # Marker side ~ one voxel at this figure scale (about 900 px across the grid, 0.72 pt/px).
    side_pt = 0.72 * 900 * max(grid.voxel_size[:2]) / (grid.upper[0] - grid.lower[0])
    ax.scatter(centres[:, 0], centres[:, 1], centres[:, 2], c=colours, marker="s", s=(1.2 * side_pt) ** 2,
               depthshade=False, edgecolors="none")
    ax.set_xlim(grid.lower[0], grid.upper[0])
    ax.set_ylim(grid.lower[1], grid.upper[1])
    ax.set_zlim(grid.lower[2], grid.upper[2])
    extent = np.asarray(grid.upper) - np.asarray(grid.lower)
    ax.set_box_aspect((extent[0], extent[1], 3 * extent[2]), zoom=1.35)  # z exaggerated 3x
    ax.view_init(elev=30, azim=-160)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z")
    ax.set_title(title or f"{len(idx)} surface voxels")
    classes = np.unique(semantics[idx[:, 0], idx[:, 1], idx[:, 2]])
    handles = [Patch(color=PALETTE[c] / 255.0, label=CLASS_NAMES[c]) for c in classes if c != FREE]
    if handles:
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.0, right=0.82, bottom=0.0, top=0.95)
    return save_figure(fig, path, layout=False)


def render_voxels_to_cameras(
    semantics: np.ndarray,
    grid: GridConfig,
    intrinsics: np.ndarray,
    ego_T_cam: np.ndarray,
    image_hw: tuple[int, int],
    width: int = 400,
) -> np.ndarray:
    """What each camera sees of the voxels: ``n H W`` uint8 labels (255 = nothing).

    Surface voxels are splatted as squares of their projected size, far to near (a
    painter's z-buffer), at ``width`` pixels across, then upsampled (nearest) to ``image_hw``.
    """
    import cv2

    H, W = image_hw
    s = min(1.0, width / W)
    h, w = max(1, round(H * s)), max(1, round(W * s))
    idx = surface_voxels(semantics)
    centres = np.asarray(grid.lower) + (idx + 0.5) * np.asarray(grid.voxel_size)  # k 3
    labels = semantics[idx[:, 0], idx[:, 1], idx[:, 2]]
    out = []
    for K, T in zip(intrinsics, ego_T_cam):
        cam_T_ego = np.linalg.inv(T)
        pc = centres @ cam_T_ego[:3, :3].T + cam_T_ego[:3, 3]  # k 3, optical frame
        front = pc[:, 2] > 0.3
        uvw = pc[front] @ K.T
        u, v, d = s * uvw[:, 0] / uvw[:, 2], s * uvw[:, 1] / uvw[:, 2], pc[front, 2]
        half = 0.6 * s * K[0, 0] * max(grid.voxel_size) / d  # projected half-size, px
        keep = (u + half >= 0) & (u - half < w) & (v + half >= 0) & (v - half < h)
        order = np.argsort(-d[keep])  # far first
        x0, x1 = (u[keep] - half[keep])[order].astype(int), (u[keep] + half[keep])[order].astype(int)
        y0, y1 = (v[keep] - half[keep])[order].astype(int), (v[keep] + half[keep])[order].astype(int)
        img = np.full((h, w), IGNORE, dtype=np.uint8)
        for a, b, c, e, lab in zip(x0, y0, x1, y1, labels[front][keep][order].tolist()):
            cv2.rectangle(img, (int(a), int(b)), (int(c), int(e)), lab, thickness=-1)
        out.append(cv2.resize(img, (W, H), interpolation=cv2.INTER_NEAREST))
    return np.stack(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scaocc viz``."""
    parser.add_argument("--data", required=True, help="manifest directory/file or synthetic:SPEC")
    parser.add_argument("--index", type=int, default=0, help="frame index within the split")
    parser.add_argument("--split", default="val", help="split name (train, val, all)")
    parser.add_argument("--checkpoint", type=Path, help="also draw this model's prediction")
    parser.add_argument("--out", type=Path, required=True, help="output directory for the PNGs")
    parser.add_argument("--view3d", choices=VIEW3D_BACKENDS, default="auto",
                        help="3D voxel view renderer: open3d offscreen, matplotlib, or auto (open3d if it can run)")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``scaocc viz``: write the PNGs of one frame."""
    import torch

    from scaocc_core.config import ModelConfig
    from scaocc_core.data.dataset import OccDataset, open_source

    if args.view3d == "open3d" and (reason := open3d_unavailable()) is not None:
        print(f"scaocc viz: --view3d open3d, but {reason}", file=sys.stderr)
        return 2
    model = None
    if args.checkpoint is not None:
        from scaocc_core.checkpoint import load_checkpoint

        model, cfg = load_checkpoint(args.checkpoint)
    else:  # ground truth only: show the labels on their stored grid
        cfg = ModelConfig(grid=open_source(args.data, args.split).grid)
    ds = OccDataset(args.data, args.split, cfg)
    raw = ds.raw_frame(args.index)
    out: Path = args.out
    written = []
    labels = ds.labels(args.index)
    images, hw = raw.images, raw.images[0].shape[:2]
    if raw.sem2d is not None:
        written.append(camera_overlay_png(images, raw.sem2d, out / "cameras_gt.png",
                                          suptitle=f"{raw.token}: 2D labels"))
    elif labels is not None:
        rendered = render_voxels_to_cameras(labels.semantics, cfg.grid, raw.intrinsics, raw.ego_T_cam, hw)
        written.append(camera_overlay_png(images, rendered, out / "cameras_gt.png",
                                          suptitle=f"{raw.token}: ground-truth voxels seen by each camera"))
    pred = None
    if model is not None:
        batch = ds[args.index]
        with torch.no_grad():
            pred = model(batch.inputs).logits.argmax(1)[0].numpy().astype(np.uint8)  # X Y Z
        rendered = render_voxels_to_cameras(pred, cfg.grid, raw.intrinsics, raw.ego_T_cam, hw)
        written.append(camera_overlay_png(images, rendered, out / "cameras_pred.png",
                                          suptitle=f"{raw.token}: predicted voxels seen by each camera"))
        written.append(voxels_3d_png(pred, out / "voxels_pred.png", grid=cfg.grid, title="prediction",
                                     backend=args.view3d))
    gt = labels.semantics if labels is not None else None
    if gt is not None or pred is not None:
        mask = labels.mask_camera if labels is not None else None
        written.append(bev_png(gt, pred, out / "bev.png", mask=mask, grid=cfg.grid))
    if gt is not None and labels is not None:
        written.append(voxels_3d_png(gt, out / "voxels_gt.png", grid=cfg.grid, title="ground truth",
                                     backend=args.view3d))
    for p in written:
        print(p)
    return 0
