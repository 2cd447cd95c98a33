"""Synthetic evaluation/training worlds used by the ablation: described once, rendered once.

A :class:`SynthSet` names one world (seed, preset, size). :func:`ensure_synthetic` writes it
to ``root/<name>`` with the synthetic world's ``write_dataset`` (skipped when its manifest
already exists) and returns the directory to train or evaluate from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaocc_core.data.dataset import OccDataset, _SyntheticSource

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
    writer(out, s, val_scenes=spec.val_scenes)
    return out


class CachedFrames:
    """Keeps every frame a dataset source has produced in memory (a source of rendered frames).

    A synthetic frame rendered on the fly costs ~0.15 s of CPU at 128x352; training revisits
    every frame each epoch, so an ``OccDataset`` over a ``synthetic:`` source gets this wrapper
    (:func:`cache_synthetic_frames`). About 4 MB per frame at 128x352 with 200x200x16 labels.
    The cache stays in its process: a pickled copy (a DataLoader worker's) starts empty.
    """

    def __init__(self, source: Any) -> None:
        self.inner = source
        self.grid = source.grid
        self.cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.inner)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the frames (hundreds of MB sent to every spawned worker each epoch)."""
        return {**self.__dict__, "cache": {}}

    def frame(self, index: int, with_images: bool = True) -> Any:
        """The inner source's frame ``index`` (always rendered with images, then kept)."""
        if index not in self.cache:
            self.cache[index] = self.inner.frame(index)
        return self.cache[index]


#: One cache per synthetic world and split, shared by every dataset of this process.
_CACHES: dict[tuple[str, tuple[int, ...]], CachedFrames] = {}


def cache_synthetic_frames(dataset: OccDataset) -> OccDataset:
    """Share one :class:`CachedFrames` per world and split if ``dataset`` renders synthetic frames on the fly."""
    source = dataset.source
    if isinstance(source, _SyntheticSource):
        key = (repr(source.spec), tuple(source.scenes))
        dataset.source = _CACHES.setdefault(key, CachedFrames(source))  # type: ignore[assignment]
    return dataset
