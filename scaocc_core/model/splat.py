"""Stage 5: channel-grouped splatting of frustum features into the voxel grid.

Context channels are split into G groups; group g is weighted by its own depth
distribution (channel-grouped lifting; G = 1 is plain LSS). Two pooling modes:

* ``hard``: each point adds its feature to the voxel containing it. One ``index_add_``
  with static shapes; exports to ONNX as ScatterND(add) without custom ops. Used at
  inference and in export. :func:`pool_hard_reference` is its naive loop reference.
* ``soft`` (soft filling): each point is spread over the 8 neighbouring voxel centres
  with trilinear weights, so gradients reach the coordinates (and through them the
  camera offsets and camera parameters). Training and inference use the same mode. On CPU
  a numba kernel fuses it with the lifting (:mod:`scaocc_core.model.soft_fill`), derivatives
  included; :func:`pool_soft` on :func:`grouped_features` is the PyTorch reference, used on
  GPU and for export.

A fused hard-pooling kernel (same values, e.g. the Triton one in
:mod:`scaocc_core.deploy.pool_triton`) may be passed in; it is used without gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scaocc_core.model.soft_fill import SplatVjp, corner_cells, corner_rows, lift_splat_soft, use_kernel

#: ``(depth b n G D h w, context b n C h w, coords b n D h w 3, size) -> b C X Y Z``
FusedPool = Callable[[Tensor, Tensor, Tensor, tuple[int, int, int]], Tensor]


def grouped_features(depth: Tensor, context: Tensor) -> Tensor:
    """Outer product per group: ``b n G D h w`` x ``b n C h w`` -> ``b (n D h w) C``."""
    b, n, G, D, h, w = depth.shape
    C = context.shape[2]
    # Multiply straight into the output layout: only the small factors are permuted.
    dep = depth.permute(0, 1, 3, 4, 5, 2)[..., None]  # b n D h w G 1
    ctx = context.view(b, n, G, C // G, h, w).permute(0, 1, 4, 5, 2, 3)[:, :, None]  # b n 1 h w G C/G
    vals = dep * ctx  # b n D h w G C/G
    return vals.reshape(b, n * D * h * w, C)  # b P C


def _flat_index(idx: Tensor, size: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """Flattened voxel index ``b P`` and validity for integer coordinates ``b P 3``."""
    X, Y, Z = size
    x, y, z = idx.unbind(-1)
    valid = (x >= 0) & (x < X) & (y >= 0) & (y < Y) & (z >= 0) & (z < Z)
    b = idx.shape[0]
    batch = torch.arange(b, device=idx.device).view(b, 1) * (X * Y * Z)
    flat = batch + (x * Y + y) * Z + z
    dump = torch.full_like(flat, b * X * Y * Z)  # invalid points go to one extra row
    return torch.where(valid, flat, dump), valid


def _scatter(values: Tensor, flat: Tensor, b: int, size: tuple[int, int, int]) -> Tensor:
    """Sum ``b P C`` values into ``b C X Y Z`` at flat indices ``b P``."""
    X, Y, Z = size
    C = values.shape[-1]
    out = values.new_zeros(b * X * Y * Z + 1, C)
    out = out.index_add(0, flat.reshape(-1), values.reshape(-1, C))
    return out[:-1].view(b, X, Y, Z, C).permute(0, 4, 1, 2, 3)  # b C X Y Z


def pool_hard(values: Tensor, coords: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Nearest-voxel pooling. ``values`` b P C, ``coords`` b P 3 (continuous voxel coords)."""
    flat, _ = _flat_index(torch.floor(coords).long(), size)
    return _scatter(values, flat, values.shape[0], size)


def pool_hard_reference(values: Tensor, coords: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Naive per-point loop; the reference that :func:`pool_hard` is tested against."""
    b, P, C = values.shape
    X, Y, Z = size
    out = [values.new_zeros(C, X, Y, Z) for _ in range(b)]
    for bi in range(b):
        acc = out[bi]
        for p in range(P):
            x, y, z = (int(torch.floor(c)) for c in coords[bi, p])
            if 0 <= x < X and 0 <= y < Y and 0 <= z < Z:
                acc = acc.index_put((torch.arange(C), torch.tensor(x), torch.tensor(y), torch.tensor(z)),
                                    values[bi, p], accumulate=True)
        out[bi] = acc
    return torch.stack(out)


def corner_weights(coords: Tensor, size: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """Trilinear weights ``8 (b P)`` of each point's 8 neighbouring voxel centres and their rows
    ``8 (b P)`` (:func:`~scaocc_core.model.soft_fill.corner_rows`: ``(b X Y Z + 1)`` rows, the
    last a dump for corners outside the grid); corner ``k = 4 dx + 2 dy + dz``. The weights are
    differentiable in ``coords`` (``b P 3``, continuous voxel coordinates).
    """
    frac, lo = corner_cells(coords)  # 3 (b P) each
    rows = corner_rows(lo, coords.shape[0], size)  # 8 (b P)
    weight = [(1 - frac[a], frac[a]) for a in range(3)]  # per axis: lower and upper neighbour
    weights: list[Tensor] = []
    for dx in (0, 1):
        for dy in (0, 1):
            w_xy = weight[0][dx] * weight[1][dy]
            weights.extend(w_xy * weight[2][dz] for dz in (0, 1))
    return torch.stack(weights), rows


def _rows_to_grid(rows: Tensor, b: int, size: tuple[int, int, int]) -> Tensor:
    """``(b X Y Z + 1) C`` rows (the last the dump) -> ``b C X Y Z``."""
    return rows[:-1].view(b, *size, rows.shape[-1]).permute(0, 4, 1, 2, 3)


def pool_soft(values: Tensor, coords: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Trilinear soft filling over the 8 neighbouring voxel centres, one scatter per corner.

    ``values`` b P C, ``coords`` b P 3 -> ``b C X Y Z``; differentiable in both (and so in
    the coordinates' camera offsets and parameters). Any device; exports to ONNX.
    """
    b, P, C = values.shape
    weight, flat = corner_weights(coords, size)  # 8 (b P)
    x = values.reshape(b * P, C)
    rows = values.new_zeros(b * size[0] * size[1] * size[2] + 1, C)
    for k in range(8):
        rows = rows.index_add(0, flat[k], x * weight[k, :, None])
    return _rows_to_grid(rows, b, size)


def splat(depth: Tensor, context: Tensor, coords: Tensor, size: tuple[int, int, int], mode: str,
          fused_pool: FusedPool | None = None) -> tuple[Tensor, SplatVjp | None]:
    """Lift and pool: depth ``b n G D h w``, context ``b n C h w``, coords ``b n D h w 3``.

    Returns voxel features ``b C X Y Z`` and, from the kernel, its :class:`SplatVjp` (else
    ``None``). Hard pooling without gradients runs ``fused_pool`` when one is given; soft filling
    on CPU (outside export and compilation) runs the fused numba kernel
    (:mod:`scaocc_core.model.soft_fill`), equal to :func:`grouped_features` + :func:`pool_soft`
    in values and in derivatives of every order.
    """
    if mode == "hard" and fused_pool is not None and not torch.is_grad_enabled():
        return fused_pool(depth, context, coords, size), None
    b = coords.shape[0]
    pts = coords.reshape(b, -1, 3)  # b (n D h w) 3
    if mode == "soft" and use_kernel(context):
        rows, vjp = lift_splat_soft(depth, context, coords, size)
        return _rows_to_grid(rows, b, size), vjp
    values = grouped_features(depth, context)  # b P C
    if mode == "hard":
        return pool_hard(values, pts, size), None
    if mode == "soft":
        return pool_soft(values, pts, size), None
    raise ValueError(f"unknown pooling mode {mode!r}")
