#!/usr/bin/env bash
# PLAN.md: a fourth stage from a shipped checkpoint (models/M.pt at 4efee2f), with the 3^3 sub-voxel
# head (`head3`), unchanged (`control`) or without class balancing in the cross-entropy
# (`nobalance`): 600 steps of config/train/models_restart.yaml, data seed 5.
# Usage: run.sh baseline_tiny|scaocc_tiny head3|control|nobalance. Resumable: rerun to continue.
set -euo pipefail
PY=${PY:-.venv/bin/python}
M=$1
RUNS=runs/stage4
STAGE3=$RUNS/${M}_stage3.pt
mkdir -p $RUNS
test -f $STAGE3 || git show 4efee2f:models/$M.pt > $STAGE3
case "$2" in
  head3)
    CFG=experiments/subvoxel_head/${M}_head3.yaml INIT=$RUNS/${M}_head3_init.pt
    test -f "$INIT" || $PY experiments/subvoxel_head/widen_head.py $STAGE3 "$CFG" "$INIT";;
  control) CFG=config/model/$M.yaml INIT=$STAGE3;;
  nobalance) CFG=experiments/stage4/${M}_nobalance.yaml INIT=$STAGE3;;
  *) echo "unknown variant $2: head3, control or nobalance" >&2; exit 2;;
esac
exec $PY -m scaocc_core.training.train --config "$CFG" --data data/models/train_s0_256 --init "$INIT" \
  --train-config config/train/models_restart.yaml --seed 5 --out $RUNS/${M}_$2 --resume --no-progress
