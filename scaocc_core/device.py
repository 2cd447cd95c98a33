"""The inference device a configuration names, with ``auto`` resolved on this machine."""

from __future__ import annotations

import logging
import re

import torch

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a CUDA device, else ``cpu`` (logged, either way);
    ``cpu``, ``cuda`` and ``cuda:N`` are returned as given. Anything else raises ``ValueError``.

    An explicit ``cuda`` is not checked here: the predictor refuses it with a clear message
    when CUDA is missing, rather than silently running on the CPU.
    """
    if name == "auto":
        if torch.cuda.is_available():
            log.info("device auto: cuda (%s)", torch.cuda.get_device_name(0))
            return "cuda"
        log.info("device auto: cpu (torch.cuda.is_available() is False)")
        return "cpu"
    if name == "cpu" or re.fullmatch(r"cuda(:\d+)?", name):
        return name
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
