"""Camera-parameter noise: statistics, determinism, rigid vs element-wise protocols."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaocc_core.data.noise import CameraNoise, perturb_extrinsics
from scaocc_core.data.rig import load_nuscenes_sample_rig


def _extrinsics() -> np.ndarray:
    return np.stack([c.ego_T_cam for c in load_nuscenes_sample_rig().cameras])  # 6 4 4


def _angle_between(Ra: np.ndarray, Rb: np.ndarray) -> float:
    cos = (np.trace(Ra.T @ Rb) - 1) / 2
    return math.acos(float(np.clip(cos, -1, 1)))


def test_parse_and_errors() -> None:
    n = CameraNoise.parse("so3:1,0.05")
    assert (n.mode, n.sigma_deg, n.sigma_m) == ("so3", 1.0, 0.05)
    assert CameraNoise.parse(str(n)) == n
    assert CameraNoise.parse("elementwise:0.5,0").mode == "elementwise"
    for bad in ("so3", "so3:1", "gauss:1,2", "so3:a,b", "so3:-1,0"):
        with pytest.raises(ValueError):
            CameraNoise.parse(bad)


def test_so3_statistics_and_rigidity() -> None:
    T = _extrinsics()
    noise = CameraNoise("so3", sigma_deg=2.0, sigma_m=0.1)
    angles, shifts = [], []
    for index in range(400):
        P = noise.apply(T, seed=7, index=index)
        for k in range(6):
            R = P[k, :3, :3]
            np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)  # rig is float32-exact
            assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-6)
            angles.append(_angle_between(T[k, :3, :3], R))
            shifts.append(P[k, :3, 3] - T[k, :3, 3])
    # |N(0, sigma)| has RMS sigma.
    rms_deg = math.degrees(math.sqrt(np.mean(np.square(angles))))
    assert rms_deg == pytest.approx(2.0, rel=0.06)
    shifts_arr = np.array(shifts)
    np.testing.assert_allclose(shifts_arr.std(axis=0), 0.1, rtol=0.06)
    assert np.abs(shifts_arr.mean(axis=0)).max() < 0.01
    np.testing.assert_array_equal(P[:, 3], T[:, 3])  # homogeneous row untouched


def test_so3_axis_is_uniform() -> None:
    T = np.repeat(np.eye(4)[None], 2000, axis=0)
    P = perturb_extrinsics(T, CameraNoise("so3", 5.0, 0.0), np.random.default_rng(0))
    R = P[:, :3, :3]
    axis = np.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], axis=1)
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    # Uniform directions on the sphere: each coordinate has mean 0 and variance 1/3.
    assert np.abs(axis.mean(axis=0)).max() < 0.05
    np.testing.assert_allclose((axis**2).mean(axis=0), 1 / 3, atol=0.03)


def test_elementwise_statistics() -> None:
    T = _extrinsics()
    noise = CameraNoise("elementwise", sigma_deg=1.0, sigma_m=0.05)
    deltas = np.stack([noise.apply(T, 3, i) - T for i in range(500)])  # 500 6 4 4
    rot = deltas[:, :, :3, :3].reshape(-1)
    assert rot.std() == pytest.approx(math.radians(1.0), rel=0.05)
    assert deltas[:, :, :3, 3].std() == pytest.approx(0.05, rel=0.05)
    assert not deltas[:, :, 3].any()


def test_deterministic_per_seed_and_index() -> None:
    T = _extrinsics()
    noise = CameraNoise("so3", 1.0, 0.05)
    np.testing.assert_array_equal(noise.apply(T, 0, 5), noise.apply(T, 0, 5))
    assert not np.allclose(noise.apply(T, 0, 5), noise.apply(T, 0, 6))
    assert not np.allclose(noise.apply(T, 0, 5), noise.apply(T, 1, 5))
    np.testing.assert_array_equal(CameraNoise("so3", 0.0, 0.0).apply(T, 0, 5), T)
    with pytest.raises(ValueError, match="n x 4 x 4"):
        noise.apply(T[0], 0, 0)
