"""numba's parallel kernels leave PyTorch's thread count alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, numba, numpy as np, torch
from scaocc_core.config import GridConfig
from scaocc_core.rayiou import RayIoU
before = torch.get_num_threads()
grid = GridConfig()
sem = np.full(grid.size, 17, np.uint8)
sem[:, :, 0] = 11
rays = RayIoU(grid)
rays.update(sem, sem)  # a prange loop over the rays
print(json.dumps({"before": before, "after": torch.get_num_threads(), "layer": numba.threading_layer()}))
"""


def test_rayiou_parallel_loop_keeps_one_torch_thread():
    """A process started with one PyTorch thread keeps one after a numba prange loop (on the
    OpenMP layer numba set PyTorch's runtime to every core, EXPERIMENTS.md section 4)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True, env=env).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["layer"] == "workqueue"
    assert probe["before"] == 1 and probe["after"] == 1, probe
