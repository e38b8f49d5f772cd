#!/usr/bin/env bash
# The accelerator check: one command, run first whenever a GPU is lent, within 9 minutes
# on one GPU. Everything it measures goes under one folder named by the device:
#   benchmarks/results/accelerator_<device>/   (or --out DIR)
#
#   bash benchmarks/accelerator_check.sh              # on the GPU host, from the repo root
#   bash benchmarks/accelerator_check.sh --dry-run    # every stage on the CPU, tiny sizes
#
# Stages (each bounded by `timeout`, each logged to <stage>.log; a failed stage is
# recorded in summary.txt and the next one still runs):
#   1. cudnn_test   the test that cuDNN's fused attention agrees with the chunked path
#   2. mixers       benchmarks/mixers.py in bf16: every mixer's forward and backward,
#                   records naming the softmax attention path (cudnn)
#   3. train_speed  the Text step (configs/lra_text.py) with Luna-16, Luna-256 and the
#                   softmax Transformer at 1K-4K tokens, batch 32, bf16: steps/s and the
#                   compiled temporary memory, both against the Transformer (the Luna
#                   paper's 4.9x speed and 0.16x memory at 4K)
#   4. listops      the full-size ListOps Luna-16 config (configs/lra_listops.py) for as
#                   many steps as fit in 4 minutes, validating every 100 steps; its
#                   validation curve is listops_curve.png
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: $0 [--dry-run] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

PLATFORM=cuda
[ "$DRY" = 1 ] && PLATFORM=cpu
export JAX_PLATFORMS=$PLATFORM  # (the tests' conftest would otherwise choose the CPU)
DEVICE=$(JAX_PLATFORMS=$PLATFORM python -c \
  "from benchmarks.common import device_name; print(device_name())" 2>/dev/null | tail -1)
if [ -z "$DEVICE" ]; then
  echo "error: JAX sees no $PLATFORM device; install with pip install -e '.[cuda,test]'" >&2
  exit 2
fi
OUT=${OUT:-benchmarks/results/accelerator_${DEVICE}}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
{
  echo "accelerator check on $DEVICE, $(date -u +%Y-%m-%dT%H:%MZ)$([ $DRY = 1 ] && echo ' (dry run)')"
  git log -1 --format='commit %h %s' 2>/dev/null
  python -c "import jax; print('jax', jax.__version__, jax.devices())" 2>/dev/null
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
} > "$SUMMARY"

stage() {  # stage NAME SECONDS COMMAND...
  local name=$1 seconds=$2
  shift 2
  local start=$SECONDS
  timeout --signal=TERM --kill-after=10 "$seconds" "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  echo "$name: exit $status in $((SECONDS - start)) s (limit $seconds s)" | tee -a "$SUMMARY"
}

if [ "$DRY" = 1 ]; then
  stage cudnn_test 120 python -m pytest -q -p no:cacheprovider \
    tests/test_softmax_baseline.py -k "cudnn"
  stage mixers 300 python benchmarks/mixers.py --quick --dtype bfloat16 --out "$OUT"
  stage train_speed 300 python benchmarks/train_speed.py --quick --dtype bfloat16 --out "$OUT"
  LISTOPS=(--config configs/lra_listops.py:cpu --config.num_train_steps=20
           --config.eval_every=10 --config.log_every=10 --config.checkpoint_every=20
           --config.generate_examples=200 --config.generate_eval_examples=40
           --config.max_eval_batches=2)
  LISTOPS_LIMIT=300
else
  stage cudnn_test 90 python -m pytest -q -p no:cacheprovider \
    tests/test_softmax_baseline.py -k "cudnn"
  stage mixers 120 python benchmarks/mixers.py --dtype bfloat16 --repeats 3 \
    --lengths 1024 4096 16384 --linear_extra 65536 --out "$OUT"
  stage train_speed 120 python benchmarks/train_speed.py --dtype bfloat16 --batch 32 \
    --lengths 1024 4096 --out "$OUT"
  # 20,000 generated training examples (of 96,000) so that generating fits the budget;
  # validation on 20 batches every 100 steps.
  LISTOPS=(--config configs/lra_listops.py --config.generate_examples=20000
           --config.generate_eval_examples=2000 --config.eval_every=100
           --config.max_eval_batches=20 --config.checkpoint_every=1000
           --config.progress_bar=False)
  LISTOPS_LIMIT=240
fi
rm -rf "$OUT/listops_run"
stage listops "$LISTOPS_LIMIT" python train.py "${LISTOPS[@]}" \
  --config.data_dir="$OUT/lra_data" --workdir "$OUT/listops_run"
# Keep the curve, not the data or checkpoints.
python benchmarks/curve.py "$OUT/listops_run/metrics.jsonl" "$OUT/listops_curve.png" \
  >> "$SUMMARY" 2>&1
cp "$OUT/listops_run/metrics.jsonl" "$OUT/listops_metrics.jsonl" 2>/dev/null
rm -rf "$OUT/listops_run" "$OUT/lra_data"
echo "results in $OUT" | tee -a "$SUMMARY"
