"""The CUDA suite: every test is marked ``cuda`` and skipped where no GPU is present.

CI never runs it on a GPU (it collects and skips it). ``bench/gpu_check.sh`` runs it on a
GPU machine. ``SCAOCC_CUDA_DRY=1`` runs the same tests on the CPU at reduced sizes (the
pooling kernel through Triton's interpreter), so the suite's own logic is checked without
a GPU; tests of CUDA-only features (half-precision autocast, CUDA graphs) skip there.
Tests without the marker here (``test_tensorrt_guard.py``) are ordinary CPU tests.
"""

from __future__ import annotations

import pytest
import torch

from tests.cuda.common import DRY, ON_CUDA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``cuda`` tests without a GPU (unless ``SCAOCC_CUDA_DRY=1``)."""
    if ON_CUDA or DRY:
        return
    skip = pytest.mark.skip(reason="no CUDA GPU (SCAOCC_CUDA_DRY=1 runs this suite on the CPU at small sizes)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The GPU, or the CPU in the dry run."""
    return torch.device("cuda" if ON_CUDA else "cpu")
