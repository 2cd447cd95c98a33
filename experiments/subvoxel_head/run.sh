#!/usr/bin/env bash
# PLAN.md: a third stage for a shipped model, with the sub-voxel head reading a 3^3 neighbourhood
# (`head3`) or unchanged (`control`); both 600 steps of config/train/models_finetune.yaml, seed 3.
# Usage: run.sh baseline_tiny|scaocc_tiny head3|control. Resumable: rerun to continue.
# The control is now the shipped recipe's third stage (config/train/models_restart.yaml).
# Both start from the pair shipped before this experiment (two stages; models/M.pt at 0f55c38).
set -euo pipefail
PY=${PY:-.venv/bin/python}
M=$1
RUNS=runs/subvoxel_head
STAGE2=$RUNS/${M}_stage2.pt
mkdir -p $RUNS
test -f $STAGE2 || git show 0f55c38:models/$M.pt > $STAGE2
case "$2" in
  head3)
    CFG=experiments/subvoxel_head/${M}_head3.yaml INIT=$RUNS/${M}_head3_init.pt
    test -f "$INIT" || $PY experiments/subvoxel_head/widen_head.py $STAGE2 "$CFG" "$INIT";;
  control) CFG=config/model/$M.yaml INIT=$STAGE2;;
  *) echo "unknown variant $2: head3 or control" >&2; exit 2;;
esac
exec $PY -m scaocc_core.training.train --config "$CFG" --data data/models/train_s0_256 --init "$INIT" \
  --train-config config/train/models_finetune.yaml --steps 600 --seed 3 --out $RUNS/${M}_$2 --resume --no-progress
