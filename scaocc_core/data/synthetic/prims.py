"""Analytic primitives of the synthetic world and a builder for composite objects.

A primitive is one of three solids standing upright (yaw only):

* ``BOX``: centre ``(cx, cy)``, half extents ``a, b`` along its heading and left axes,
  vertical range ``[z0, z1]``;
* ``CONE``: a vertical truncated cone (a cylinder when ``a == b``) with radius ``a`` at
  ``z0`` and ``b`` at ``z1``;
* ``ELLIPSOID``: semi-axes ``a, b`` (heading, left) and ``(z1 - z0) / 2`` (up), centred at
  ``(cx, cy, (z0 + z1) / 2)``.

They are stored column-wise (``geo`` is ``P 8``: ``cx, cy, z0, z1, a, b, cos yaw, sin yaw``)
so numba kernels can read them directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOX, CONE, ELLIPSOID = 0, 1, 2

#: surface patterns used by the shader
PLAIN, FACADE, GLASS, BARK, STRIPES = 0, 1, 2, 3, 4


@dataclass
class Prims:
    """``P`` primitives in some frame (global, ego or an object's own frame)."""

    kind: np.ndarray  # P int8
    geo: np.ndarray  # P 8 float64: cx cy z0 z1 a b cos sin
    cls: np.ndarray  # P uint8 Occ3D class
    color: np.ndarray  # P 3 float32 linear albedo
    inst: np.ndarray  # P int32 instance id (texture seed)
    pattern: np.ndarray  # P int8

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @staticmethod
    def empty() -> Prims:
        """A table without primitives."""
        return Prims(np.zeros(0, np.int8), np.zeros((0, 8)), np.zeros(0, np.uint8),
                     np.zeros((0, 3), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int8))

    def take(self, index: np.ndarray) -> Prims:
        """The primitives selected by a boolean mask or an index array."""
        return Prims(self.kind[index], self.geo[index], self.cls[index], self.color[index],
                     self.inst[index], self.pattern[index])

    def transformed(self, cos_t: np.ndarray | float, sin_t: np.ndarray | float,
                    tx: np.ndarray | float, ty: np.ndarray | float) -> Prims:
        """Apply a planar rigid motion (rotation by ``theta`` then translation ``t``).

        Scalars move every primitive alike; ``P``-arrays give one motion per primitive.
        """
        g = self.geo.copy()
        x, y = self.geo[:, 0], self.geo[:, 1]
        g[:, 0] = cos_t * x - sin_t * y + tx
        g[:, 1] = sin_t * x + cos_t * y + ty
        c, s = self.geo[:, 6], self.geo[:, 7]
        g[:, 6] = cos_t * c - sin_t * s
        g[:, 7] = sin_t * c + cos_t * s
        return Prims(self.kind, g, self.cls, self.color, self.inst, self.pattern)

    def xy_bounds(self) -> np.ndarray:
        """Axis-aligned footprint of every primitive, ``P 4``: xmin, xmax, ymin, ymax."""
        g = self.geo
        c, s = np.abs(g[:, 6]), np.abs(g[:, 7])
        a, b = g[:, 4].copy(), g[:, 5].copy()
        cone = self.kind == CONE
        r = np.maximum(a, b)
        a[cone], b[cone] = r[cone], r[cone]
        ex = c * a + s * b
        ey = s * a + c * b
        return np.stack([g[:, 0] - ex, g[:, 0] + ex, g[:, 1] - ey, g[:, 1] + ey], axis=1)

    @staticmethod
    def concat(parts: list[Prims]) -> Prims:
        """Join several tables."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Prims.empty()
        return Prims(*(np.concatenate([getattr(p, n) for p in parts]) for n in
                       ("kind", "geo", "cls", "color", "inst", "pattern")))


class PrimBuilder:
    """Accumulates primitives; ``build()`` returns a :class:`Prims` table."""

    def __init__(self) -> None:
        self._rows: list[tuple[int, tuple[float, ...], int, tuple[float, float, float], int, int]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def box(self, cx: float, cy: float, z0: float, z1: float, length: float, width: float, yaw: float,
            cls: int, color: tuple[float, float, float], inst: int, pattern: int = PLAIN) -> None:
        """An upright box ``length`` x ``width`` x ``z1 - z0`` heading along ``yaw``."""
        self._add(BOX, cx, cy, z0, z1, length / 2, width / 2, yaw, cls, color, inst, pattern)

    def cone(self, cx: float, cy: float, z0: float, z1: float, r0: float, r1: float,
             cls: int, color: tuple[float, float, float], inst: int, pattern: int = PLAIN) -> None:
        """A vertical truncated cone (cylinder when ``r0 == r1``)."""
        self._add(CONE, cx, cy, z0, z1, r0, r1, 0.0, cls, color, inst, pattern)

    def ellipsoid(self, cx: float, cy: float, z0: float, z1: float, length: float, width: float,
                  yaw: float, cls: int, color: tuple[float, float, float], inst: int,
                  pattern: int = PLAIN) -> None:
        """An ellipsoid filling the box ``length`` x ``width`` x ``[z0, z1]``."""
        self._add(ELLIPSOID, cx, cy, z0, z1, length / 2, width / 2, yaw, cls, color, inst, pattern)

    def _add(self, kind: int, cx: float, cy: float, z0: float, z1: float, a: float, b: float, yaw: float,
             cls: int, color: tuple[float, float, float], inst: int, pattern: int) -> None:
        if not (z1 > z0 and a > 0 and b >= 0):
            raise ValueError(f"degenerate primitive: z {z0}..{z1}, sizes {a}, {b}")
        geo = (cx, cy, z0, z1, a, b, math.cos(yaw), math.sin(yaw))
        self._rows.append((kind, geo, cls, color, inst, pattern))

    def truncate(self, n: int) -> None:
        """Drop every primitive added after the first ``n``."""
        del self._rows[n:]

    def recentre_x(self, start: int) -> float:
        """Shift the primitives added since ``start`` so their x extent is centred on 0.

        Returns that extent (the object's length when built at heading 0).
        """
        rows = self._rows[start:]
        if not rows:
            return 0.0

        def reach(kind: int, g: tuple[float, ...]) -> float:
            return max(g[4], g[5]) if kind == CONE else abs(g[6]) * g[4] + abs(g[7]) * g[5]

        lo = min(g[0] - reach(k, g) for k, g, *_ in rows)
        hi = max(g[0] + reach(k, g) for k, g, *_ in rows)
        mid = (lo + hi) / 2
        self._rows[start:] = [(k, (g[0] - mid, *g[1:]), c, col, i, pat) for k, g, c, col, i, pat in rows]
        return hi - lo

    def build(self) -> Prims:
        """The accumulated table."""
        if not self._rows:
            return Prims.empty()
        return Prims(
            np.array([r[0] for r in self._rows], np.int8),
            np.array([r[1] for r in self._rows], np.float64),
            np.array([r[2] for r in self._rows], np.uint8),
            np.array([r[3] for r in self._rows], np.float32),
            np.array([r[4] for r in self._rows], np.int32),
            np.array([r[5] for r in self._rows], np.int8),
        )
