"""``device: auto`` resolution."""

from __future__ import annotations

import logging

import pytest
import torch

from scaocc_core.device import resolve_device


def test_auto_is_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="scaocc_core.device"):
        assert resolve_device("auto") == "cpu"
    assert "device auto: cpu" in caplog.text


def test_auto_is_cuda_when_available(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU")
    with caplog.at_level(logging.INFO, logger="scaocc_core.device"):
        assert resolve_device("auto") == "cuda"
    assert "device auto: cuda (Fake GPU)" in caplog.text


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:1"])
def test_explicit_devices_pass_through(name: str) -> None:
    assert resolve_device(name) == name


@pytest.mark.parametrize("name", ["tpu", "CUDA", "cuda:x", ""])
def test_unknown_devices_raise(name: str) -> None:
    with pytest.raises(ValueError, match="device must be"):
        resolve_device(name)
