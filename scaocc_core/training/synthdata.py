"""Synthetic evaluation/training worlds used by the ablation: described once, rendered once.

A :class:`SynthSet` names one world (seed, preset, size). :func:`ensure_synthetic` writes it
to ``root/<name>`` with the synthetic world's ``write_dataset`` (skipped when its manifest
already exists) and returns the directory to train or evaluate from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthSet:
    """One synthetic world: ``scenes`` x ``frames``, the last ``val_scenes`` scenes held out."""

    seed: int
    preset: str
    scenes: int
    frames: int
    val_scenes: int
    height: int
    width: int

    @property
    def name(self) -> str:
        """Directory name, unique per content."""
        return (f"synth_{self.preset}_seed{self.seed}_{self.scenes}x{self.frames}_val{self.val_scenes}"
                f"_{self.height}x{self.width}")

    def source(self) -> str:
        """The equivalent on-the-fly ``synthetic:`` dataset source."""
        return (f"synthetic:scenes={self.scenes},frames={self.frames},seed={self.seed},preset={self.preset},"
                f"res={self.height}x{self.width},val_scenes={self.val_scenes}")


def ensure_synthetic(spec: SynthSet, root: Path) -> Path | str:
    """The world on disk under ``root`` (written now if missing); the ``synthetic:`` source as fallback."""
    from scaocc_core.data import synthetic

    writer = getattr(synthetic, "write_dataset", None)
    if writer is None:
        log.warning("scaocc_core.data.synthetic.write_dataset is unavailable; rendering %s on the fly", spec.name)
        return spec.source()
    out = root / spec.name
    if (out / "manifest.json").is_file():
        return out
    s = synthetic.SynthSpec(seed=spec.seed, scenes=spec.scenes, frames=spec.frames, preset=spec.preset,
                            height=spec.height, width=spec.width)
    log.info("writing synthetic world %s", out)
    writer(s, out, val_scenes=spec.val_scenes)
    return out
