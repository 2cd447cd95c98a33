"""The open3d renderer of the 3D voxel view: voxels as coloured cubes, rendered offscreen.

:func:`cube_mesh` turns voxel indices into one triangle mesh with numpy (no loop per
voxel): every voxel face whose neighbour is not occupied becomes a quad of 4 vertices
(2 triangles) in its class colour (:data:`scaocc_core.grid.PALETTE`), shaded by the
face's direction (tops at full colour) and darkened a little on every other voxel.
The shading is baked into the vertex colours and rendered unlit, so the picture needs no
lights and the top faces of even voxels (``i + j + k`` even) keep their exact palette colour.

:func:`open3d_unavailable` says why open3d cannot render here (not installed, or its
offscreen renderer does not start: it needs EGL or, from open3d 0.20 on, a Vulkan driver
such as Mesa's lavapipe). The renderer is probed once per process in a subprocess,
because a failing graphics stack may crash the process rather than raise.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaocc_core.config import GridConfig
from scaocc_core.grid import CLASS_NAMES, FREE, PALETTE

log = logging.getLogger(__name__)

#: Brightness of a face by its outward normal: +x, -x, +y, -y, +z (top), -z (bottom).
FACE_SHADE = np.array([0.80, 0.70, 0.90, 0.75, 1.0, 0.55])
#: Faces of voxels with odd ``i + j + k`` are this much darker, so the lattice shows.
CHECKER_DARKEN = 0.08
_QUAD_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]])  # 2 3, counter-clockwise seen from outside
_PROBE = "import open3d as o3d; o3d.visualization.rendering.OffscreenRenderer(16, 16)"


def _face_corners() -> np.ndarray:
    """Unit-cube corners of the 6 faces, ``6 4 3``, counter-clockwise seen from outside."""
    out = np.zeros((6, 4, 3))
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])  # 4 2, counter-clockwise in (u, v)
    for a in range(3):
        u, v = (a + 1) % 3, (a + 2) % 3  # u x v = +a
        for s, f in ((1, 2 * a), (0, 2 * a + 1)):
            out[f, :, a] = s
            quad = square if s else square[::-1]  # reversed winding faces -a
            out[f, :, u], out[f, :, v] = quad[:, 0], quad[:, 1]
    return out


FACE_CORNERS = _face_corners()
FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


@dataclass(frozen=True)
class CubeMesh:
    """Voxel faces as one triangle mesh: ``vertices`` ``V 3`` (metres, ego frame),
    ``triangles`` ``T 3`` (vertex indices, counter-clockwise from outside) and
    ``colours`` ``V 3`` (RGB in [0, 1])."""

    vertices: np.ndarray
    triangles: np.ndarray
    colours: np.ndarray


def _sub_quads(n_u: int, n_v: int) -> np.ndarray:
    """A unit square cut into ``n_u x n_v`` quads: ``(n_u n_v) 4 2`` corners in (u, v), counter-clockwise."""
    a, b = np.meshgrid(np.arange(n_u), np.arange(n_v), indexing="ij")
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])  # 4 2
    lo = np.stack([a.ravel(), b.ravel()], axis=1)[:, None, :]  # (n_u n_v) 1 2
    return (lo + square[None]) / np.array([n_u, n_v])


def cube_mesh(
    idx: np.ndarray,
    labels: np.ndarray,
    grid: GridConfig,
    occupied: np.ndarray | None = None,
    max_edge: float | None = None,
) -> CubeMesh:
    """Cubes of one voxel edge at voxel indices ``idx`` (``k 3``) coloured by class ``labels`` (``k``).

    Faces between two occupied voxels are left out (``occupied``: ``X Y Z`` bool, default
    only the voxels in ``idx``); beyond the grid's sides and floor counts as occupied,
    above its ceiling as free (as in :func:`scaocc_core.viz.surface_voxels`). Faces with
    edges longer than ``max_edge`` metres (default: 1/80 of the grid's x extent, 1 m for
    Occ3D) are cut into smaller quads: Mesa's software rasteriser (lavapipe) takes tens of
    seconds on a frame of a few hundred large triangles.
    """
    idx = np.asarray(idx, dtype=np.int64).reshape(-1, 3)
    labels = np.asarray(labels).reshape(-1)
    if len(idx) != len(labels):
        raise ValueError(f"cube_mesh: {len(idx)} voxel indices but {len(labels)} labels")
    if occupied is None:
        occupied = np.zeros(grid.size, dtype=bool)
        occupied[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    padded = np.pad(occupied, 1, constant_values=True)  # X+2 Y+2 Z+2
    padded[:, :, -1] = False
    lower, size = np.asarray(grid.lower), np.asarray(grid.voxel_size)
    max_edge = max_edge or (grid.upper[0] - grid.lower[0]) / 80
    cuts = np.maximum(1, np.ceil(size / max_edge - 1e-9)).astype(int)  # sub-quads along x, y, z
    verts, tris, cols, n = [], [], [], 0
    for f in range(6):
        ni = idx + 1 + FACE_NORMALS[f]  # neighbour, in padded indices
        keep = ~padded[ni[:, 0], ni[:, 1], ni[:, 2]]
        a = f // 2
        u, v = (a + 1) % 3, (a + 2) % 3
        sub = _sub_quads(cuts[u], cuts[v])  # s 4 2
        corners = np.repeat(FACE_CORNERS[f][None], len(sub), axis=0)  # s 4 3
        corners[:, :, u], corners[:, :, v] = sub[:, :, 0], sub[:, :, 1]
        if f % 2:  # faces -a: reversed winding
            corners = corners[:, ::-1]
        quads = (idx[keep][:, None, None, :] + corners[None]) * size + lower  # m s 4 3
        verts.append(quads.reshape(-1, 3))  # (m s 4) 3
        m = quads.shape[0] * quads.shape[1]  # quads of this face direction
        checker = 1.0 - CHECKER_DARKEN * (idx[keep].sum(1) % 2)  # shows the voxel lattice
        colour = PALETTE[labels[keep]] / 255.0 * (FACE_SHADE[f] * checker)[:, None]  # m' 3
        cols.append(np.repeat(colour, 4 * len(sub), axis=0))  # (m s 4) 3
        base = n + 4 * np.arange(m)
        tris.append((base[:, None, None] + _QUAD_TRIANGLES[None]).reshape(-1, 3))  # (m s 2) 3
        n += 4 * m
    return CubeMesh(np.concatenate(verts), np.concatenate(tris).astype(np.int32), np.concatenate(cols))


@functools.cache
def _probe_renderer() -> str | None:
    """Start open3d's offscreen renderer once in a subprocess: ``None`` if it works, else why not."""
    try:
        res = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "open3d's offscreen renderer did not start within 120 s"
    if res.returncode == 0:
        return None
    lines = [s for s in res.stderr.strip().splitlines() if s.strip()]
    why = lines[-1] if lines else f"exit status {res.returncode}"
    if res.returncode < 0:
        why = f"crashed with signal {-res.returncode}"
    return f"open3d's offscreen renderer cannot start here ({why}); headless rendering needs EGL or Vulkan (Mesa)"


def open3d_unavailable() -> str | None:
    """``None`` when open3d can render offscreen in this process, otherwise the reason."""
    try:
        import open3d  # noqa: F401
    except ImportError:
        return "open3d is not installed (pip install open3d)"
    return _probe_renderer()


@functools.cache
def warn_fallback(reason: str) -> None:
    """Log (once per reason) that the 3D view falls back to matplotlib."""
    log.warning("3D voxel view: %s; using matplotlib instead", reason)


def _legend_panel(classes: np.ndarray, height: int, width: int = 220) -> np.ndarray:
    """A white ``height width 3`` RGB panel with one colour swatch and name per class."""
    import cv2

    panel = np.full((height, width, 3), 255, np.uint8)
    y = max(20, (height - 24 * len(classes)) // 2)
    for c in classes:
        cv2.rectangle(panel, (10, y), (28, y + 16), tuple(int(v) for v in PALETTE[c]), thickness=-1)
        cv2.putText(panel, CLASS_NAMES[c], (36, y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        y += 24
    return panel


def render_png(
    mesh: CubeMesh,
    classes: np.ndarray,
    path: str | Path,
    grid: GridConfig,
    title: str,
    size: tuple[int, int] = (1000, 750),
) -> Path:
    """Render ``mesh`` with open3d offscreen (``size`` = width, height) seen from behind and
    above the ego, add a title and a legend of ``classes`` on the right, and write the PNG
    (``height`` x ``width + 220`` pixels)."""
    import cv2
    import open3d as o3d

    width, height = size
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    renderer = o3d.visualization.rendering.OffscreenRenderer(width, height)
    tm = o3d.geometry.TriangleMesh()
    tm.vertices = o3d.utility.Vector3dVector(mesh.vertices)
    tm.triangles = o3d.utility.Vector3iVector(mesh.triangles)
    tm.vertex_colors = o3d.utility.Vector3dVector(mesh.colours)
    material = o3d.visualization.rendering.MaterialRecord()
    material.shader = "defaultUnlit"  # shading is baked into the vertex colours
    renderer.scene.set_background([1.0, 1.0, 1.0, 1.0])
    renderer.scene.view.set_post_processing(False)  # no tone mapping: exact colours
    if len(mesh.triangles):
        renderer.scene.add_geometry("voxels", tm, material)
    lower, upper = np.asarray(grid.lower), np.asarray(grid.upper)
    extent = upper - lower
    centre = np.array([lower[0] + 0.5 * extent[0], (lower[1] + upper[1]) / 2, lower[2]])
    elev, azim = np.radians(38.0), np.radians(-165.0)  # behind (-x), a little to the right, above
    eye = centre + 1.3 * extent[0] * np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    renderer.setup_camera(50.0, centre, eye, [0.0, 0.0, 1.0])
    image = np.asarray(renderer.render_to_image())  # H W 3 uint8 RGB
    del renderer
    image = np.ascontiguousarray(image)
    cv2.putText(image, title, (12, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    out = np.concatenate([image, _legend_panel(classes[classes != FREE], height)], axis=1)  # H W+220 3
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(out, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
