"""Training records: ``metrics.csv`` (one row per logged step), TensorBoard, ``curves.png``."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COLUMNS = ("step", "epoch", "lr", "elapsed_s", "step_time_s", "total", "ce", "lovasz", "depth", "causal",
           "grad_norm", "val_miou", "val_miou_d", "val_iou")


class MetricsLog:
    """Appends rows to ``run_dir/metrics.csv`` (and TensorBoard when importable).

    On resume from step ``resume_step`` rows logged after that step (by the interrupted
    run) are dropped, so the file always describes one consistent run.
    """

    def __init__(self, run_dir: Path, resume_step: int = 0, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.csv"
        rows = read_metrics(self.path) if resume_step > 0 and self.path.is_file() else []
        rows = [r for r in rows if int(float(r["step"])) <= resume_step]
        with self.path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step or None)
            except ImportError:
                log.debug("tensorboard not installed; logging to metrics.csv only")

    def log(self, row: dict[str, Any]) -> None:
        """Append one row (missing columns stay empty; unknown keys raise ``KeyError``)."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown metrics column(s) {sorted(unknown)}")
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=COLUMNS).writerow(row)
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, int(row["step"]))

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict[str, str]]:
    """Rows of a ``metrics.csv`` as dicts of strings."""
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _series(rows: list[dict[str, str]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        value = r.get(key, "")
        if value not in ("", None) and math.isfinite(float(value)):
            xs.append(float(r["step"]))
            ys.append(float(value))
    return xs, ys


def plot_curves(csv_path: Path, png_path: Path) -> Path:
    """Loss curves (total and parts) and the validation mIoU curve of one run, as a PNG."""
    from scaocc_core.viz import plt, save_figure

    rows = read_metrics(csv_path)
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("total", "ce", "lovasz", "depth", "causal"):
        xs, ys = _series(rows, key)
        if xs:
            ax_loss.plot(xs, ys, label=key, linewidth=1.5 if key == "total" else 0.8)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    xs, ys = _series(rows, "val_miou")
    ax_val.plot(xs, [100 * y for y in ys], marker="o")
    ax_val.set_xlabel("step")
    ax_val.set_ylabel("mIoU %")
    ax_val.set_title("validation mIoU")
    ax_val.grid(alpha=0.3)
    return save_figure(fig, png_path)
