"""TensorRT: the version guard and the "not installed" error (CPU tests, run in CI; no ``cuda`` marker).

TensorRT itself is never exercised here (the wheel cannot be installed in this project's
environments): these tests pin what a user without it, or with TensorRT 11, is told.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from scaocc_core.checkpoint import save_checkpoint
from scaocc_core.deploy import backends, trt_engine
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.predictor import make_predictor
from tests.fixtures import micro_config


def fake_tensorrt(version: str) -> types.ModuleType:
    module = types.ModuleType("tensorrt")
    module.__version__ = version  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize("version", ["10.0.1", "10.16.1.11"])
def test_tensorrt_10_is_accepted(version: str) -> None:
    trt_engine.check_version(fake_tensorrt(version))


@pytest.mark.parametrize("version", ["11.0.0.114", "11.4.0.106", "8.6.1"])
def test_other_majors_are_refused_clearly(version: str) -> None:
    with pytest.raises(trt_engine.TensorRTError, match=rf"TensorRT {version} is installed .* TensorRT 10 only"):
        trt_engine.check_version(fake_tensorrt(version))


def test_engine_refuses_tensorrt_11_before_touching_the_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("11.4.0.106"))
    with pytest.raises(trt_engine.TensorRTError, match="supports TensorRT 10 only"):
        trt_engine.TensorRTEngine(tmp_path / "model.onnx", meta=None, device="cuda")  # type: ignore[arg-type]


def test_tensorrt_not_installed_is_clear(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = micro_config()
    ckpt = save_checkpoint(tmp_path / "micro.pt", CausalOcc(cfg), cfg)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(backends.BackendUnavailable, match="needs the TensorRT 10 Python package"):
        make_predictor(ckpt, "cuda", "tensorrt")
