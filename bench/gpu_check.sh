#!/usr/bin/env bash
# One command for the GPU measurements of issue 14; everything lands in the folder given.
#
#   bench/gpu_check.sh OUT                 # on the GPU machine: at most ~7.5 minutes
#   bench/gpu_check.sh OUT --device cpu    # dry run on a CPU: the same steps at small sizes
#
# Steps (each under its own time limit, all under one deadline, so a slow step cannot take
# the others' time and whatever finished is still assembled):
#   1. pool       bench/gpu_bench.py pool     -> OUT/pool.json   (Triton kernel GB/s vs copy peak, vs index_add)
#   2. train      bench/gpu_bench.py train    -> OUT/train.json  (scaocc_r50 step, +causal ratio, bf16, batch 4)
#   3. pre        bench/gpu_bench.py pre      -> OUT/pre.json    (6 x 900x1600 pre-processing: CPU vs on the GPU)
#   4. inference  bench/inference.py          -> OUT/inference.json (r50 + tiny: eager fp32/fp16/bf16,
#                                                CUDA graphs, compiled, compiled + graphs; pre/post/FPS)
#   5. tests      pytest tests/cuda -m cuda   -> OUT/cuda_tests.xml
#   6. profile    bench/gpu_profile.py       -> OUT/profile.txt (r50 fp16 network: stages, top kernels)
#   7. report     bench/gpu_report.py         -> OUT/gpu.json (copy it to bench/results/gpu.json)
# plus OUT/log.txt (the environment: nvidia-smi, torch, triton; then all output): 8 files,
# the most the device tool brings back.
#
# Needs: python3 with torch (CUDA build on the GPU machine), triton, numpy, numba, opencv,
# pyyaml, pytest, onnx + onnxscript (only if ONNX rows run). No ROS, nothing from the network.
# PYTHON overrides the interpreter (default: .venv/bin/python if present, else python3).
set -uo pipefail

usage() { echo "usage: $0 OUT [--device cuda|cpu]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT=$1; shift
DEVICE=cuda
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=${2:-}; shift 2 ;;
    *) usage ;;
  esac
done
[ "$DEVICE" = cuda ] || [ "$DEVICE" = cpu ] || usage

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
exec > >(tee "$OUT/log.txt") 2>&1

START=$(date +%s)
if [ "$DEVICE" = cuda ]; then
  DEADLINE=$((START + 450))  # 7.5 minutes: inside the issue's 8, the run tool's 10
  DEV=()
  SMALL=()
  INFER=(--devices cuda --configs scaocc_r50 scaocc_tiny)  # r50 first: its fp16 FPS is the goal
  TRAIN=(--config scaocc_r50 --batch 4 --reps 6)
  POOL=(--config scaocc_r50)
  PROFILE=(--config scaocc_r50 --precision fp16 --iters 5)
  TESTS=()
  PRE=(--config scaocc_r50 --reps 20)
  LIMITS=(pool=60 train=90 pre=30 inference=220 tests=200 profile=60)
else
  DEADLINE=$((START + 1800))
  DEV=(--device cpu)
  SMALL=(--small)
  INFER=(--devices cpu --configs scaocc_tiny --repeats 1 --no-compile --no-jpeg --threads 2)
  TRAIN=(--config scaocc_r50 --batch 1 --reps 1)
  POOL=(--config scaocc_r50 --copy-mib 64)
  PROFILE=(--config scaocc_tiny --precision fp32 --iters 1)
  TESTS=(-k "not compiled")  # torch.compile on 2 CPU cores takes minutes; run it alone to check it
  export SCAOCC_CUDA_DRY=1
  PRE=(--config scaocc_r50 --reps 2)
  LIMITS=(pool=300 train=300 pre=120 inference=300 tests=900 profile=300)
fi

limit() {  # limit STEP: seconds for STEP, clipped to the deadline (15 s kept for the report)
  local cap=0 kv
  for kv in "${LIMITS[@]}"; do [ "${kv%%=*}" = "$1" ] && cap=${kv#*=}; done
  local left=$((DEADLINE - $(date +%s) - 15))
  [ "$left" -lt "$cap" ] && cap=$left
  echo "$cap"
}

STATUS=()
step() {  # step NAME COMMAND...: run under its limit, record the exit status
  local name=$1; shift
  local t; t=$(limit "$name")
  if [ "$t" -le 5 ]; then
    echo "=== $name: skipped, the deadline is reached"
    STATUS+=("$name=skipped"); return
  fi
  echo "=== $name (limit ${t}s): $*"
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$t" "$@"
  local rc=$?
  echo "=== $name: exit $rc after $(( $(date +%s) - t0 ))s"
  STATUS+=("$name=$rc")
}

echo "=== environment"
{
  echo "date: $(date -u +%FT%TZ)"; echo "device mode: $DEVICE"; echo "repo: $(git rev-parse HEAD 2>/dev/null)"
  nvidia-smi 2>/dev/null || echo "nvidia-smi: not available"
  "$PYTHON" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, "sm", f"{p.major}.{p.minor}", "SMs", p.multi_processor_count,
          "memory GiB", round(p.total_memory / 2**30, 1))
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: not installed")
EOF
} 2>&1

step pool "$PYTHON" bench/gpu_bench.py pool "${DEV[@]}" "${SMALL[@]}" "${POOL[@]}" --json "$OUT/pool.json"
step train "$PYTHON" bench/gpu_bench.py train "${DEV[@]}" "${SMALL[@]}" "${TRAIN[@]}" --json "$OUT/train.json"
step pre "$PYTHON" bench/gpu_bench.py pre "${DEV[@]}" "${PRE[@]}" --json "$OUT/pre.json"
step inference "$PYTHON" bench/inference.py "${INFER[@]}" --json "$OUT/inference.json"
step tests "$PYTHON" -m pytest tests/cuda -m cuda -q -rfEs -p no:cacheprovider "${TESTS[@]}" \
  --junitxml="$OUT/cuda_tests.xml"
step profile "$PYTHON" bench/gpu_profile.py "${DEV[@]}" "${SMALL[@]}" "${PROFILE[@]}" --out "$OUT/profile.txt"

MACHINE=""
if [ "$DEVICE" = cpu ]; then MACHINE="dry run on the CPU ($(nproc) cores), small sizes: checks the steps, not the speed"; fi
"$PYTHON" bench/gpu_report.py "$OUT" ${MACHINE:+--machine "$MACHINE"} --command "bench/gpu_check.sh OUT --device $DEVICE"
echo "steps: ${STATUS[*]}; total $(( $(date +%s) - START ))s; results in $OUT"
