"""keep_freed_memory: freed tensor memory is reused instead of faulted in again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scaocc_core import memory

PROBE = """
import json, resource, sys, torch
from scaocc_core.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False

def step():  # tensors of a training step's sizes (MB), all alive at once, then freed
    return [torch.ones(mb * 2**18) for mb in (46, 10, 32, 10, 3, 46, 10)]

for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def probe(mode: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_page_faults_of_reallocated_tensors():
    default, kept = probe("default"), probe("keep")
    assert kept["kept"] is True
    # 5 x 157 MB is 200,000 pages: by default each tensor is mapped and faulted in afresh.
    assert int(default["faults"]) > 100_000, default
    assert int(kept["faults"]) < int(default["faults"]) // 10, (default, kept)


def test_keep_freed_memory_reports_a_c_library_without_mallopt(monkeypatch):
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: object())
    assert memory.keep_freed_memory() is False
