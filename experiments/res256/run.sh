#!/usr/bin/env bash
# The res256 experiment (PLAN.md): `make models` at 256 x 704, stride 16. Resumable: rerun to continue.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=data/models/train_s0_256
RUNS=runs/res256
test -f $DATA/manifest.json || $PY -m scaocc_core.cli synth --out $DATA --scenes 24 --frames 8 --seed 0 \
  --val-scenes 2 --workers 2 --resolution 256x704
test -f data/models/test_s1000_256/manifest.json || $PY -m scaocc_core.cli synth --out data/models/test_s1000_256 \
  --scenes 4 --frames 6 --seed 1000 --val-scenes 4 --workers 2 --resolution 256x704
test -f $RUNS/pretrain/encoder.pt || $PY -m scaocc_core.cli pretrain --config experiments/res256/scaocc_tiny.yaml \
  --data $DATA --out $RUNS/pretrain --no-progress
train() {  # both stages of one config, one thread
  OMP_NUM_THREADS=1 $PY -m scaocc_core.training.train --config experiments/res256/$1.yaml --data $DATA \
    --pretrained $RUNS/pretrain/encoder.pt --train-config config/train/models.yaml \
    --out $RUNS/$1 --resume --no-progress
  OMP_NUM_THREADS=1 $PY -m scaocc_core.training.train --config experiments/res256/$1.yaml --data $DATA \
    --init $RUNS/$1/final.pt --train-config config/train/models_finetune.yaml \
    --out $RUNS/$1_ft --resume --no-progress
}
train baseline_tiny > $RUNS/baseline_tiny.log 2>&1 &
train scaocc_tiny > $RUNS/scaocc_tiny.log 2>&1 &
wait
