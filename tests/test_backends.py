"""Predictor engines: ONNX Runtime equals torch, one factory, clear errors for missing/corrupt backends."""

from __future__ import annotations

import logging
import os
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from scaocc_core.checkpoint import save_checkpoint
from scaocc_core.config import ModelConfig
from scaocc_core.deploy import backends
from scaocc_core.deploy.graph import InferenceGraph
from scaocc_core.deploy.onnx_model import OnnxModelError, ort_session, reducing_scatters
from scaocc_core.deploy.parity import ring_rig
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.predictor import Predictor, PredictorInput, make_predictor

from .fixtures import make_model, micro_config, small_tiny


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelConfig]:
    cfg = small_tiny()
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt", make_model(cfg, seed=2), cfg)
    return path, cfg


def camera_input(cfg: ModelConfig, seed: int) -> PredictorInput:
    """Random 225x400 images (resized by preprocess) on the ring rig."""
    rng = np.random.default_rng(seed)
    n = cfg.image.num_cams
    K, T = ring_rig(n, (225, 400))
    images = [rng.integers(0, 256, (225, 400, 3), dtype=np.uint8) for _ in range(n)]
    return PredictorInput(images, K, T, np.ones(n, dtype=bool))


def test_onnxruntime_equals_torch(checkpoint: tuple[Path, ModelConfig]) -> None:
    path, cfg = checkpoint
    ref = Predictor.from_checkpoint(path)
    ort = make_predictor(path, backend="onnxruntime", threads=1)
    assert type(ref) is type(ort) is Predictor  # one class; only the engine differs
    assert isinstance(ref.engine, backends.TorchEngine) and isinstance(ort.engine, backends.OrtEngine)
    assert ort.grid == ref.grid and ort.class_names == ref.class_names and ort.image_hw == ref.image_hw
    for seed in (0, 1):
        inp = camera_input(cfg, seed)
        a, b = ref.predict(inp), ort.predict(inp)
        assert (a.labels == b.labels).mean() >= 0.999
        assert np.abs(a.confidence.astype(int) - b.confidence.astype(int)).max() <= 1
        np.testing.assert_allclose(a.translation_offsets, b.translation_offsets, atol=1e-6)
        assert np.abs(a.rotation_offsets).max() > 1e-4  # the offsets path is live


def test_onnx_cache_and_from_checkpoint(checkpoint: tuple[Path, ModelConfig]) -> None:
    path, cfg = checkpoint
    make_predictor(path, backend="onnxruntime", threads=1)
    cached = path.with_name("small.onnx")
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    via_onnx = make_predictor(cached, backend="onnxruntime", threads=1)  # metadata alone
    via_predictor = Predictor.from_checkpoint(path, backend="onnxruntime")
    assert cached.stat().st_mtime_ns == stamp  # reused, not re-exported
    assert via_onnx.cfg == cfg and via_predictor.num_cams == cfg.image.num_cams
    inp = camera_input(cfg, 3)
    np.testing.assert_array_equal(via_onnx.predict(inp).labels, via_predictor.predict(inp).labels)


def test_tensorrt_missing_is_clear(checkpoint: tuple[Path, ModelConfig], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(backends.BackendUnavailable, match="needs the TensorRT 10 Python package"):
        make_predictor(checkpoint[0], device="cuda", backend="tensorrt")


def test_corrupt_onnx_is_clear(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(os.urandom(2048))
    with pytest.raises(OnnxModelError, match="cannot read ONNX file .*broken.onnx"):
        make_predictor(bad, backend="onnxruntime")
    with pytest.raises(backends.EngineError, match="not found"):
        make_predictor(tmp_path / "missing.onnx")
    with pytest.raises(backends.EngineError, match="unknown backend"):
        make_predictor(bad, backend="openvino")


def test_torch_options_checked(checkpoint: tuple[Path, ModelConfig], tmp_path: Path) -> None:
    with pytest.raises(backends.EngineError, match="need a CUDA device"):
        make_predictor(checkpoint[0], backend="torch", precision="fp16")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\0")
    with pytest.raises(backends.EngineError, match="needs a .pt checkpoint"):
        make_predictor(onnx_file, backend="torch")


def test_fused_pool_only_on_cuda_with_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "scaocc_core.deploy.pool_triton", raising=False)
    engine = backends.TorchEngine(CausalOcc(micro_config()), "cpu")
    assert engine.graph.model.fused_pool is None  # the model's own index_add pooling
    assert backends.fused_pool_kernel("cpu") is None and backends.fused_pool_kernel("cuda", enabled=False) is None
    assert "scaocc_core.deploy.pool_triton" not in sys.modules  # loaded (and compiled) on CUDA only
    kernel = types.ModuleType("pool_triton")
    kernel.pool_hard_fused, kernel.triton_available = (lambda *a: None), (lambda: True)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "scaocc_core.deploy.pool_triton", kernel)
    assert backends.fused_pool_kernel("cuda:1") is kernel.pool_hard_fused  # type: ignore[attr-defined]
    kernel.triton_available = lambda: False  # type: ignore[attr-defined]
    assert backends.fused_pool_kernel("cuda") is None


def test_labels_from_logits_matches_graph() -> None:
    logits = torch.randn(1, 18, 5, 4, 3) * 3
    labels, conf = backends.labels_from_logits(logits.numpy())
    prob = logits.softmax(dim=1)
    top, arg = prob.max(dim=1)
    np.testing.assert_array_equal(labels, arg.numpy())
    assert np.abs(conf.astype(int) - torch.round(top * 255).numpy().astype(int)).max() <= 1


def test_closed_form_inverse_mode(checkpoint: tuple[Path, ModelConfig]) -> None:
    A = torch.randn(4, 3, 3) + 3 * torch.eye(3)
    with backends._closed_form_inverse():
        inv = torch.linalg.inv(A)
    torch.testing.assert_close(inv, torch.linalg.inv(A), atol=1e-5, rtol=1e-5)
    path, cfg = checkpoint
    predictor = Predictor.from_checkpoint(path)
    assert isinstance(predictor.engine, backends.TorchEngine) and isinstance(predictor.engine.graph, InferenceGraph)
    feeds = predictor.preprocess(camera_input(cfg, 4))
    plain = predictor.run(feeds)
    with backends._closed_form_inverse():
        closed = predictor.run(feeds)
    assert (plain[0] == closed[0]).mean() >= 0.999


def scatter_add_model(path: Path, rows: int, channels: int, points: int) -> onnx.ModelProto:
    """One ScatterND with reduction add: ``points`` update rows into ``rows`` output rows."""
    from onnx import TensorProto, helper

    tensor = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("ScatterND", ["data", "idx", "upd"], ["out"], reduction="add", name="pool")], "scatter",
        [tensor("data", TensorProto.FLOAT, [rows, channels]), tensor("idx", TensorProto.INT64, [points, 1]),
         tensor("upd", TensorProto.FLOAT, [points, channels])],
        [tensor("out", TensorProto.FLOAT, [rows, channels])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return model


def test_reducing_scatter_runs_on_one_onnxruntime_thread_and_sums_exactly(tmp_path: Path, caplog) -> None:
    """ONNX Runtime's CPU ScatterND(add) loses updates to a shared row on several threads (0.2 %
    of 185,856 rows into 2,000 on 2 threads, measured); the session falls back to one thread."""
    rows, channels, points = 500, 8, 60_000
    model = scatter_add_model(tmp_path / "scatter.onnx", rows, channels, points)
    assert reducing_scatters(model) == ["pool"]
    with caplog.at_level(logging.WARNING):
        session = ort_session(tmp_path / "scatter.onnx", "cpu", threads=4)
    assert "1 intra-op thread instead of 4" in caplog.text
    assert session.get_session_options().intra_op_num_threads == 1
    idx = np.random.default_rng(0).integers(0, rows, size=(points, 1))
    updates = np.ones((points, channels), np.float32)
    exact = np.zeros((rows, channels))
    np.add.at(exact, idx[:, 0], updates)
    out = session.run(None, {"data": np.zeros((rows, channels), np.float32), "idx": idx, "upd": updates})[0]
    np.testing.assert_array_equal(out, exact)


def test_graph_without_reducing_scatter_keeps_its_threads(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(tmp_path / "relu.onnx"))
    assert ort_session(tmp_path / "relu.onnx", "cpu", threads=2).get_session_options().intra_op_num_threads == 2
