"""Environment for the ROS tests: the colcon-built interfaces of msg/ and an isolated rclpy.

``make pytest`` sources ``install/local_setup.sh`` (the standard way). So that a plain
``.venv/bin/pytest tests/ros`` works too, this file puts the install prefixes on ``sys.path``
and ``AMENT_PREFIX_PATH`` (both read at call time) and, when ``LD_LIBRARY_PATH`` lacks them
(it is read only at process start), loads the interface libraries by full path first:
rosidl later opens them by file name, which the dynamic loader resolves to the copy already
loaded. Each test session gets its own DDS domain on localhost so parallel runs on one
machine never see each other's topics.
"""

from __future__ import annotations

import ctypes
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "install"
INTERFACE_PACKAGES = ("scaocc_msgs", "tf2_msgs")


def _setup_environment() -> None:
    missing = [p for p in INTERFACE_PACKAGES if not (INSTALL / p).is_dir()]
    if missing:
        pytest.exit(f"ROS interfaces {missing} are not built in {INSTALL}: run `make setup`", returncode=4)
    prefixes = [str(INSTALL / p) for p in INTERFACE_PACKAGES]
    current = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(prefixes + [p for p in current if p not in prefixes])
    for p in INTERFACE_PACKAGES:
        site = str(INSTALL / p / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages")
        if site not in sys.path:
            sys.path.insert(0, site)
    lib_dirs = [str(INSTALL / p / "lib") for p in INTERFACE_PACKAGES]
    if not all(d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) for d in lib_dirs):
        for d in lib_dirs:
            # generator_c first: every other library of the package links against it.
            for lib in sorted(Path(d).glob("lib*.so"), key=lambda f: "generator_c" not in f.name):
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


_setup_environment()


@pytest.fixture(scope="session")
def ros_context() -> Iterator[object]:
    """An initialised rclpy context for the whole session (shut down at the end)."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


def pytest_configure(config: pytest.Config) -> None:
    """Silence a third-party deprecation (lark, loaded by rosidl_parser) that says nothing about us."""
    config.addinivalue_line("filterwarnings", "ignore:module 'sre_:DeprecationWarning:lark.utils")
