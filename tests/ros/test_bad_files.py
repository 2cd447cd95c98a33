"""Bad files give one clear line and exit 1, no traceback: through ``scaocc`` and through occ_node.

A corrupt, truncated or missing checkpoint, a model config with an unknown key or a wrong
type, a truncated bag.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from sensor_msgs.msg import CameraInfo

from scaocc_core.cli import main as scaocc
from scaocc_ros import node as node_module
from scaocc_ros.tools.bag_synth import BagWriter
from scaocc_ros.tools.processes import ROOT
from tests.fixtures import tiny_checkpoint

MODEL_YAML = ROOT / "config" / "model" / "scaocc_tiny.yaml"


@pytest.fixture
def bad(tmp_path: Path) -> dict[str, Path]:
    """Bad files by name."""
    good = tiny_checkpoint(tmp_path / "good.pt").read_bytes()
    files = {"corrupt.pt": b"\x80\x02garbage" * 100, "truncated.pt": good[: len(good) // 2],
             "unknown_key.yaml": MODEL_YAML.read_text() + "\nbogus_key: 3\n",
             "wrong_type.yaml": MODEL_YAML.read_text().replace("depth: 18", "depth: eighteen")}
    out = {}
    for name, content in files.items():
        out[name] = tmp_path / name
        if isinstance(content, bytes):
            out[name].write_bytes(content)
        else:
            out[name].write_text(content)
    out["missing.pt"] = tmp_path / "missing.pt"
    return out


def one_line(err: str, prefix: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix) and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name, says", [("corrupt.pt", "corrupt, truncated or not a PyTorch file"),
                                        ("truncated.pt", "corrupt, truncated or not a PyTorch file"),
                                        ("missing.pt", "checkpoint not found")])
def test_bad_checkpoints_through_the_cli(bad: dict[str, Path], tmp_path: Path, name: str, says: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert scaocc(["export", "--checkpoint", str(bad[name]), "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert says in one_line(capsys.readouterr().err, "scaocc export: ")


@pytest.mark.parametrize("name, says", [("unknown_key.yaml", "unknown key(s) ['bogus_key']"),
                                        ("wrong_type.yaml", "encoder.depth: expected an integer, got 'eighteen'")])
def test_bad_configs_through_the_cli(bad: dict[str, Path], tmp_path: Path, name: str, says: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--config", str(bad[name]), "--data", "synthetic:scenes=1,frames=1", "--out", str(tmp_path / "r")]
    assert scaocc(args) == 1
    assert says in one_line(capsys.readouterr().err, "scaocc train: ")


def test_a_truncated_bag_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = tmp_path / "drive"
    with BagWriter(bag) as writer:
        for i in range(200):
            writer.write("/cam_front/camera_info", CameraInfo(width=1600, height=900), 10**9 + i)
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    assert scaocc(["bag", "infer", str(bag), "--out", str(tmp_path / "o")]) == 1
    assert "(truncated or corrupt?)" in one_line(capsys.readouterr().err, "scaocc bag infer: cannot read")


@pytest.mark.parametrize("name, args, says", [
    ("corrupt.pt", ["--model"], "corrupt, truncated or not a PyTorch file"),
    ("truncated.pt", ["--model"], "corrupt, truncated or not a PyTorch file"),
    ("missing.pt", ["--model"], "not found"),
    ("unknown_key.yaml", ["--ros-args", "-p"], "unknown key(s) ['bogus_key']"),
    ("wrong_type.yaml", ["--ros-args", "-p"], "expected an integer, got 'eighteen'"),
])
def test_bad_files_through_the_node(bad: dict[str, Path], name: str, args: list[str], says: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    value = str(bad[name]) if args == ["--model"] else f"model_config:={bad[name]}"
    parser = argparse.ArgumentParser()
    node_module.add_arguments(parser)
    argv = ["--params", str(ROOT / "config" / "occ_node.yaml"), *args, value, *([] if "-p" in args else
                                                                                ["--ros-args"]),
            "-p", "device:=cpu"]
    assert node_module.run(parser.parse_args(argv)) == 1
    assert says in one_line(capsys.readouterr().err, "occ_node: ")
