"""Child processes of the demo and the end-to-end tests: ROS environment, start, bounded stop.

Every child gets the colcon install of ``msg/`` on its paths (as ``source
install/local_setup.sh`` would), a private ``ROS_DOMAIN_ID`` and localhost-only discovery, so
nothing leaves the machine and parallel runs never see each other. :class:`ChildProcesses`
terminates (then kills) whatever it started, on every exit path.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "install"
#: Fast DDS transports for bursts of raw images on one machine (see the file's comment).
FASTDDS_PROFILE = ROOT / "config" / "fastdds_localhost.xml"
#: Variables a process must share with its children to be on their private domain.
DOMAIN_VARIABLES = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY",
                    "FASTDDS_DEFAULT_PROFILES_FILE")
INTERFACE_PACKAGES = ("scaocc_msgs", "tf2_msgs")
log = logging.getLogger(__name__)


def free_domain_id(rng: random.Random | None = None) -> int:
    """A random DDS domain id in 120..230 (clear of the test session's 1..100)."""
    return (rng or random.SystemRandom()).randint(120, 230)


def _prepend(env: dict[str, str], key: str, paths: list[str]) -> None:
    current = [p for p in env.get(key, "").split(os.pathsep) if p]
    env[key] = os.pathsep.join(paths + [p for p in current if p not in paths])


def ros_environment(domain_id: int, install: Path = INSTALL, profile: Path | None = None) -> dict[str, str]:
    """``os.environ`` plus the interface packages of ``install``, a private localhost domain and
    a Fast DDS profile: ``profile``, else the one already in the environment, else
    ``config/fastdds_localhost.xml``."""
    missing = [p for p in INTERFACE_PACKAGES if not (install / p).is_dir()]
    if missing:
        raise FileNotFoundError(f"ROS interfaces {missing} are not built in {install}: run `make setup`")
    env = dict(os.environ)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    _prepend(env, "PYTHONPATH", [str(install / p / "lib" / py / "site-packages") for p in INTERFACE_PACKAGES])
    _prepend(env, "LD_LIBRARY_PATH", [str(install / p / "lib") for p in INTERFACE_PACKAGES])
    _prepend(env, "AMENT_PREFIX_PATH", [str(install / p) for p in INTERFACE_PACKAGES])
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_LOCALHOST_ONLY"] = "1"  # pre-Jazzy spelling of the same
    if profile is not None:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile.resolve())
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def join_private_domain(profile: Path | None = None) -> tuple[int, dict[str, str]]:
    """A fresh private domain that this process and its children share: picks the domain id,
    builds the children's :func:`ros_environment` and exports its :data:`DOMAIN_VARIABLES`
    into ``os.environ`` (so ``rclpy.init(domain_id=...)`` here joins it); returns both."""
    domain = free_domain_id()
    env = ros_environment(domain, profile=profile)
    for key in DOMAIN_VARIABLES:
        os.environ[key] = env[key]
    return domain, env


def scaocc_command(*args: str) -> list[str]:
    """``scaocc ARGS`` run by this interpreter (no console script needed)."""
    return [sys.executable, "-m", "scaocc_core.cli", *args]


class ChildProcesses:
    """Starts processes with their output in log files; stops all of them on exit."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        """Start ``cmd`` with stdout and stderr in ``<log_dir>/<name>.log``."""
        with open(self.log_dir / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        log.info("started %s (pid %d): %s", name, proc.pid, " ".join(cmd))
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last ``lines`` lines a child wrote."""
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise ``RuntimeError`` (with its log tail) if a child exited with an error."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code not in (None, 0):
                raise RuntimeError(f"{name} exited with code {code}:\n{self.log_tail(name)}")

    def stop(self, name: str, timeout: float = 10.0) -> int | None:
        """SIGINT (clean ROS shutdown), then SIGTERM, then SIGKILL; returns the exit code."""
        proc = self.procs[name]
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored signal %s", name, proc.pid, sig.name)
        return proc.wait()

    def stop_all(self) -> None:
        """Stop every child that is still running (newest first)."""
        for name in reversed(list(self.procs)):
            self.stop(name)

    def __enter__(self) -> ChildProcesses:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()
