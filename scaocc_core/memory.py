"""Keep freed memory in the process, so CPU training does not page-fault its tensors in again.

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks over its mmap threshold (at
most 32 MB) with fresh ``mmap`` calls and returns them on ``free``, and trims the heap's
free top; each new tensor of that size is then faulted in and zeroed by the kernel page by
page. A scaocc_tiny training step allocates about 400 MB that way: ~110,000 page faults and
150-250 ms of system time per step, a quarter of the step (bench/RESULTS.md). With mmap off
and trimming off, freed blocks are reused as they are; the process keeps its peak heap, as
PyTorch's CUDA caching allocator keeps its peak on the GPU. One arena for all threads, so
the node's inference thread reuses its blocks the same way (threads' own arenas live in
mmapped heaps of their own).

:func:`keep_freed_memory` is called once by the ``scaocc`` command line, the node's entry
point and the benchmarks; library code never changes the allocator behind its caller's back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: glibc ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
#: Largest trim threshold ``mallopt`` takes (an ``int``): trim only above 2 GB of free top.
NO_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Tell glibc's ``malloc`` to serve every block from one heap and never trim it.

    Returns whether the setting took (``False`` on a C library without ``mallopt``, e.g. musl
    or macOS, where nothing changes). Affects the whole process, from this call on.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no mallopt in the C library (%s): allocator left as it is", name)
        return False
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NO_TRIM), (M_ARENA_MAX, 1))
    ok = all(mallopt(param, value) for param, value in settings)
    log.debug("malloc: mmap off, trimming off, one arena (%s)", "applied" if ok else "refused")
    return ok
