"""A plain ``colcon build`` of a workspace with this repository in ``src/`` builds the node,
its messages and (no tf2_msgs being installed here) the local tf2_msgs, and the result runs.

The workspace sees only the venv's ROS wheels (the stand-in for a sourced ROS install), not
this checkout's ``install/``. About a minute on two cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
TOP_SKIP = {".git", ".venv", ".agents", "build", "install", "log", "runs", "data", "demo_out", "models"}
SKIP = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
# this checkout's install/ (sourced for the tests), and the guard of the wheels' bootstrapper,
# which re-executes Python with the venv's libraries on LD_LIBRARY_PATH unless it is set
HIDDEN = ("PYTHONPATH", "LD_LIBRARY_PATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH",
          "_ROS_WHEELS_BOOTSTRAP_COMPLETE")


def _ignore(directory: str, names: list[str]) -> list[str]:
    """Build outputs and caches; the top level's own (``data/`` etc.) only there."""
    top = Path(directory) == ROOT
    return [n for n in names if n in SKIP or (top and n in TOP_SKIP)]

pytestmark = pytest.mark.slow

CHECK = """
import os
from ament_index_python.packages import get_package_share_directory
from rclpy.serialization import deserialize_message, serialize_message
from scaocc_msgs.msg import SemanticVoxelGrid
from tf2_msgs.msg import TFMessage
import scaocc_ros
msg = SemanticVoxelGrid(size_x=200)
assert deserialize_message(serialize_message(msg), SemanticVoxelGrid).size_x == 200
serialize_message(TFMessage())
share = get_package_share_directory("scaocc_ros")
for f in ("launch/occ.launch.py", "config/occ_node.yaml", "config/occ.rviz", "package.xml"):
    assert os.path.isfile(os.path.join(share, f)), f
print(scaocc_ros.__file__)
"""


def test_plain_colcon_build_of_a_workspace(tmp_path: Path) -> None:
    if not (VENV / "bin" / "colcon").exists() or shutil.which("cmake") is None:
        pytest.skip("colcon (make setup) and cmake are needed")
    ws = tmp_path / "ws"
    shutil.copytree(ROOT, ws / "src" / "scaocc", ignore=_ignore)
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN}
    env.update(PATH=f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(VENV),
               AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV))
    build = subprocess.run(["colcon", "build"], cwd=ws, env=env, capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    prefix = ws / "install" / "scaocc_ros"
    assert (prefix / "lib" / "scaocc_ros" / "occ_node").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "tf2_msgs").is_file()
    run = subprocess.run(["bash", "-c", f"source install/setup.bash && python -c '{CHECK}'"], cwd=ws, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.strip().startswith(str(prefix)), run.stdout
