#!/usr/bin/env bash
# Probe (PLAN.md, "Stride 8"): does a finer frustum find the cars beyond 20 m? Both tiny configs
# at 256 x 704 with image features at stride 8 (32 x 88 cells), pretraining and stage 1 of
# `make models` only, against the stride-16 run's stage 1 (run.sh). Resumable: rerun to continue.
# Usage: run_stride8.sh [baseline_tiny|scaocc_tiny] [finetune] (default baseline_tiny); stage 1 one at a
# time on two threads; `finetune` runs stage 2 (models_finetune.yaml) from that stage 1's final.pt,
# `finetune_lowres` the same with low-resolution augmentation (models_finetune_lowres.yaml),
# `finetune_seed2` with data seed 2 (models_finetune_seed2.yaml).
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=data/models/train_s0_256
RUNS=runs/res256
M=${1:-baseline_tiny}
CFG=experiments/res256/${M}_stride8.yaml
test -f $RUNS/pretrain_stride8/encoder.pt || $PY -m scaocc_core.cli pretrain --config experiments/res256/baseline_tiny_stride8.yaml \
  --data $DATA --out $RUNS/pretrain_stride8 --no-progress
case "${2:-}" in
  "") ;;
  finetune) TRAIN=config/train/models_finetune.yaml OUT=${M}_stride8_ft;;
  finetune_lowres) TRAIN=experiments/res256/models_finetune_lowres.yaml OUT=${M}_stride8_ft_lowres;;
  finetune_seed2) TRAIN=experiments/res256/models_finetune_seed2.yaml OUT=${M}_stride8_ft_seed2;;
  *) echo "unknown mode ${2}: finetune, finetune_lowres or finetune_seed2" >&2; exit 2;;
esac
if [ -n "${2:-}" ]; then
  exec $PY -m scaocc_core.training.train --config $CFG --data $DATA --init $RUNS/${M}_stride8/final.pt \
    --train-config $TRAIN --out $RUNS/$OUT --resume --no-progress
fi
$PY -m scaocc_core.training.train --config $CFG --data $DATA --pretrained $RUNS/pretrain_stride8/encoder.pt \
  --train-config config/train/models.yaml --out $RUNS/${M}_stride8 --resume --no-progress
