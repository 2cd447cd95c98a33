"""ONNX export: ONNX Runtime vs PyTorch parity, graph checks, metadata, the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from scaocc_core.checkpoint import save_checkpoint
from scaocc_core.config import ModelConfig, load_config
from scaocc_core.data.synthetic import SynthSpec, render_frame
from scaocc_core.deploy import export
from scaocc_core.deploy.graph import InferenceGraph, LogitsGraph
from scaocc_core.deploy.onnx_model import read_metadata
from scaocc_core.deploy.parity import rig_feeds, torch_outputs
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.predictor import Predictor, PredictorInput

from .fixtures import make_model, small_tiny

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[CausalOcc, ModelConfig, Path]:
    cfg = load_config(ROOT / "config/model/scaocc_tiny.yaml")
    model = make_model(cfg)
    path = export.export_model(model, cfg, tmp_path_factory.mktemp("onnx") / "tiny.onnx", outputs="logits")
    return model, cfg, path


def test_offsets_are_exercised(tiny: tuple[CausalOcc, ModelConfig, Path]) -> None:
    model, cfg, _ = tiny
    _, rotation, translation = torch_outputs(LogitsGraph(model), rig_feeds(cfg))
    assert np.abs(rotation).max() > 1e-4 and np.abs(translation).max() > 1e-4


def test_parity_random_inputs(tiny: tuple[CausalOcc, ModelConfig, Path]) -> None:
    model, cfg, path = tiny
    for seed in (1, 2):
        report = export.onnx_parity(path, LogitsGraph(model), rig_feeds(cfg, seed=seed))
        assert report.scale > 5 and report.max_abs_diff < 1e-3 * report.scale, str(report)
        assert report.argmax_agreement >= 0.999 and report.passed(), str(report)
        assert report.max_abs_offset_diff < 1e-5, str(report)


def test_parity_synthetic_frame(tiny: tuple[CausalOcc, ModelConfig, Path]) -> None:
    model, cfg, path = tiny
    spec = SynthSpec(seed=3, scenes=1, frames=1, height=cfg.image.height, width=cfg.image.width, grid=cfg.grid)
    frame = render_frame(spec, 0, 0)
    predictor = Predictor.from_model(model, cfg)
    feeds = predictor.preprocess(PredictorInput(list(frame.images), frame.intrinsics, frame.ego_T_cam,
                                                np.ones(cfg.image.num_cams, dtype=bool)))
    report = export.onnx_parity(path, LogitsGraph(model), feeds)
    # A few frustum points round across voxel faces (see ParityReport): bound the bulk tightly.
    assert report.p99_abs_diff < 1e-3 * report.scale and report.max_abs_diff < 1e-2 * report.scale, str(report)
    assert report.argmax_agreement >= 0.999 and report.passed(), str(report)


def test_graph_and_metadata(tiny: tuple[CausalOcc, ModelConfig, Path]) -> None:
    _, cfg, path = tiny
    model = onnx.load(str(path))
    ops = export.check_graph(model)
    scatters = [n for n in model.graph.node if n.op_type == "ScatterND"]
    assert scatters and all(helper.get_attribute_value(a) == b"add" for n in scatters for a in n.attribute
                            if a.name == "reduction")
    assert ops["BatchNormalization"] == 0  # folded into the convolutions
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    meta = read_metadata(path)
    assert meta.config == cfg and meta.outputs == "logits" and meta.precision == "fp32"
    assert meta.grid.size == (200, 200, 16) and meta.class_names[17] == "free"
    dims = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert dims[0] == [1, 6, 3, cfg.image.height, cfg.image.width]


def test_check_graph_rejects_plain_scatter() -> None:
    node = helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=0)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("x", "u")]
        + [helper.make_tensor_value_info("i", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    with pytest.raises(export.ExportError, match="ScatterElements"):
        export.check_graph(helper.make_model(graph))
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"])
    graph.node[0].CopyFrom(node)
    with pytest.raises(export.ExportError, match="reduction='none'"):
        export.check_graph(helper.make_model(graph))


def test_cli_fp16_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = small_tiny()
    model = make_model(cfg, seed=1)
    ckpt = save_checkpoint(tmp_path / "small.pt", model, cfg)
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    args = parser.parse_args(["--checkpoint", str(ckpt), "--onnx", str(tmp_path / "small.onnx"), "--fp16"])
    assert export.run(args) == 0
    out = capsys.readouterr().out
    assert "parity ONNX Runtime vs PyTorch" in out and "OK" in out
    meta = read_metadata(tmp_path / "small.onnx")
    assert meta.outputs == "labels" and meta.precision == "fp16" and meta.config.image.num_cams == 4
    graph = onnx.load(str(tmp_path / "small.onnx")).graph
    halves = [t for t in graph.initializer if t.data_type == TensorProto.FLOAT16]
    assert len(halves) > 20  # the encoder / voxel-net convolution weights
    report = export.onnx_parity(tmp_path / "small.onnx", InferenceGraph(model), rig_feeds(cfg, seed=5))
    assert report.argmax_agreement >= 0.98 and report.p99_abs_diff <= 3, str(report)
