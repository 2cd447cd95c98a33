"""Camera-parameter noise for robustness evaluation (the images are never touched).

Two protocols perturb the ``ego_T_cam`` extrinsics the model sees:

* ``so3``: per camera, a rotation of angle ~ N(0, sigma_deg) about a uniformly random
  axis is composed with the camera rotation (in the ego frame), and each translation
  component gets N(0, sigma_m). The result is still a rigid transform.
* ``elementwise`` (the SCAOcc authors' protocol): i.i.d. N(0, sigma) is added to each of the
  9 rotation entries (sigma = sigma_deg in radians) and N(0, sigma_m) to the 3 translation
  entries; the rotation block is no longer orthonormal.

Noise is a pure function of ``(seed, frame index)``, so every model evaluated with the same
seed sees exactly the same perturbed cameras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MODES = ("so3", "elementwise")


@dataclass(frozen=True)
class CameraNoise:
    """Noise on ``ego_T_cam``: ``mode`` in :data:`MODES`, rotation ``sigma_deg``, translation ``sigma_m``."""

    mode: str = "so3"
    sigma_deg: float = 0.0
    sigma_m: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"camera noise mode must be one of {MODES}, got {self.mode!r}")
        if not (self.sigma_deg >= 0 and self.sigma_m >= 0):
            raise ValueError(f"camera noise sigmas must be >= 0, got {self.sigma_deg}, {self.sigma_m}")

    @classmethod
    def parse(cls, text: str) -> CameraNoise:
        """Parse ``MODE:SIGMA_DEG,SIGMA_M`` such as ``so3:1,0.05`` or ``elementwise:0.5,0.02``."""
        mode, sep, rest = text.partition(":")
        parts = rest.split(",")
        if not sep or len(parts) != 2:
            raise ValueError(f"camera noise must look like 'so3:1,0.05' (MODE:SIGMA_DEG,SIGMA_M), got {text!r}")
        try:
            sigma_deg, sigma_m = float(parts[0]), float(parts[1])
        except ValueError as exc:
            raise ValueError(f"camera noise sigmas must be numbers, got {text!r}") from exc
        return cls(mode.strip(), sigma_deg, sigma_m)

    def __str__(self) -> str:
        return f"{self.mode}:{self.sigma_deg:g},{self.sigma_m:g}"

    def rng(self, seed: int, index: int) -> np.random.Generator:
        """The generator used for frame ``index`` under ``seed``."""
        return np.random.default_rng([int(seed), int(index)])

    def apply(self, ego_T_cam: np.ndarray, seed: int, index: int) -> np.ndarray:
        """Perturbed copy of ``n 4 4`` extrinsics for frame ``index`` (deterministic in ``seed``)."""
        return perturb_extrinsics(ego_T_cam, self, self.rng(seed, index))


def rotation_about_axis(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: 3x3 rotation of ``angle`` radians about the unit vector ``axis``."""
    x, y, z = axis / np.linalg.norm(axis)
    K = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * (K @ K)


def perturb_extrinsics(ego_T_cam: np.ndarray, noise: CameraNoise, rng: np.random.Generator) -> np.ndarray:
    """Apply ``noise`` to every camera of ``ego_T_cam`` (``n 4 4``); returns a new array."""
    T = np.array(ego_T_cam, dtype=np.float64, copy=True)
    if T.ndim != 3 or T.shape[1:] != (4, 4):
        raise ValueError(f"ego_T_cam must be n x 4 x 4, got {T.shape}")
    sigma_rad = math.radians(noise.sigma_deg)
    for i in range(T.shape[0]):
        if noise.mode == "so3":
            axis = rng.normal(size=3)  # isotropic Gaussian -> uniform direction
            angle = float(rng.normal(0.0, sigma_rad))
            T[i, :3, :3] = rotation_about_axis(axis, angle) @ T[i, :3, :3]
        else:
            T[i, :3, :3] += rng.normal(0.0, sigma_rad, size=(3, 3))
        T[i, :3, 3] += rng.normal(0.0, noise.sigma_m, size=3)
    return T
