"""Stage 5: channel-grouped splatting of frustum features into the voxel grid.

Context channels are split into G groups; group g is weighted by its own depth
distribution (channel-grouped lifting; G = 1 is plain LSS). Two pooling modes:

* ``hard``: each point adds its feature to the voxel containing it. One ``index_add_``
  with static shapes; exports to ONNX as ScatterND(add) without custom ops. Used at
  inference and in export. :func:`pool_hard_reference` is its naive loop reference.
* ``soft`` (soft filling): each point is spread over the 8 neighbouring voxel centres
  with trilinear weights, so gradients reach the coordinates (and through them the
  camera offsets and camera parameters). Training and inference use the same mode.

A fused hard-pooling kernel (same values, e.g. the Triton one in
:mod:`scaocc_core.deploy.pool_triton`) may be passed in; it is used without gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

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


def pool_soft(values: Tensor, coords: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Trilinear soft filling over the 8 neighbouring voxel centres (differentiable in coords)."""
    b = values.shape[0]
    p = coords - 0.5  # voxel centres sit at integer + 0.5
    base = torch.floor(p.detach())
    frac = p - base  # b P 3, carries the gradient
    base = base.long()
    total: Tensor | None = None
    for corner in range(8):
        offset = torch.tensor([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1], device=coords.device)
        weight = torch.where(offset.bool(), frac, 1 - frac).prod(-1, keepdim=True)  # b P 1
        flat, _ = _flat_index(base + offset, size)
        part = _scatter(values * weight, flat, b, size)
        total = part if total is None else total + part
    assert total is not None
    return total


def splat(depth: Tensor, context: Tensor, coords: Tensor, size: tuple[int, int, int], mode: str,
          fused_pool: FusedPool | None = None) -> Tensor:
    """Lift and pool: depth ``b n G D h w``, context ``b n C h w``, coords ``b n D h w 3``.

    Returns voxel features ``b C X Y Z``. Hard pooling without gradients runs ``fused_pool``
    when one is given.
    """
    if mode == "hard" and fused_pool is not None and not torch.is_grad_enabled():
        return fused_pool(depth, context, coords, size)
    values = grouped_features(depth, context)  # b P C
    pts = coords.reshape(coords.shape[0], -1, 3)  # b (n D h w) 3
    if mode == "hard":
        return pool_hard(values, pts, size)
    if mode == "soft":
        return pool_soft(values, pts, size)
    raise ValueError(f"unknown pooling mode {mode!r}")
