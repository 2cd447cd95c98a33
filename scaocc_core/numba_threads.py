"""numba's parallel loops on numba's own thread pool, never on the OpenMP runtime PyTorch uses.

numba picks the ``omp`` threading layer when it can, which is the GNU OpenMP runtime that
PyTorch's CPU operators run on; launching a ``prange`` loop sets that runtime's thread count
to numba's (every core). A process started with one PyTorch thread (``OMP_NUM_THREADS=1``,
two trainings side by side on two cores) then ran every later PyTorch operator on all
cores: after its first RayIoU evaluation or synthetic render, ``torch.get_num_threads()``
read 2, and two ``scaocc ablation`` processes slowed from 0.6-1.0 s to 6-7 s a step. The
``workqueue`` layer is numba's own pool and leaves PyTorch's threads alone.

Every module with a ``parallel=True`` kernel calls :func:`use_numba_workqueue` when it is
imported, before any of its kernels can launch (the layer is fixed at the first launch).
"""

from __future__ import annotations

import numba

LAYER = "workqueue"


def use_numba_workqueue() -> None:
    """Make ``workqueue`` numba's threading layer for this process's parallel loops."""
    numba.config.THREADING_LAYER = LAYER  # type: ignore[attr-defined]  # numba fills its config at runtime
