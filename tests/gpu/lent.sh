#!/usr/bin/env bash
# Everything measured on a lent GPU, in one go (docs/benchmarks.md, "On a GPU"):
#   1. tests/gpu/check.sh on both runs: every engine's CUDA path against its CPU result;
#   2. register-real at the GPU's default SVF level (1 mm): real T1w -> MNI152NLin2009aSym;
#   3. the default SR (tvsr-prior) against spline / spline-dc on ds-xa30, x2 kspace, on the GPU;
#   4. its streaming throughput and peak memory on ds-forrest (20 and 156 volumes).
# Usage: tests/gpu/lent.sh DATA OUT   (DATA holds ds-xa30/, ds-forrest/, labelled/ as ../shared/data)
# On a machine without pybids: PYTHONPATH=tests/gpu/lent_site:$PWD BOLDSR_TEMPLATE_COPY=COPY (see there).
# Each step has its own time limit, so one that hangs leaves the others' results. STEPS (default: all
# four) picks steps by name; THROUGHPUT (default "20 156") the streamed run lengths.
set -uo pipefail
DATA=${1:?usage: lent.sh DATA OUT}
OUT=${2:?usage: lent.sh DATA OUT}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-gpu-check register-real sr-quality sr-throughput}
mkdir -p "$OUT"
LOG="$OUT/lent.log"
BENCH=(python3 -c 'import sys; from bids_boldsr.bench import main; sys.exit(main())')
X=$DATA/ds-xa30/sub-01
F=$DATA/ds-forrest/sub-02
step() {  # step NAME SECONDS ARGS...: one bench command under a time limit, its output in the log
    local name=$1 limit=$2
    shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    echo "== $name: bids-boldsr-bench $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout "$limit" "${BENCH[@]}" "$@" 2>&1 | tee -a "$LOG"
    echo "== $name rc=${PIPESTATUS[0]} in $((SECONDS - t0)) s" | tee -a "$LOG"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available())'; nproc; } 2>&1 | tee -a "$LOG"
step gpu-check 210 gpu --device "$DEVICE" --data "$DATA" --datasets ds-xa30 ds-forrest --json "$OUT/gpu-check.json"
step register-real 180 register-real --device "$DEVICE" --threads 8 \
    --labelled "$DATA/labelled/vxm-subj_T1w.nii.gz" "$DATA/labelled/vxm-subj_dseg.nii.gz" \
    --t1w "$F/anat/sub-02_T1w.nii.gz" --methods bids-boldsr --json "$OUT/register_real_gpu.json"
step sr-quality 80 sr --device "$DEVICE" --bold "$X/func/sub-01_task-fa_run-1_bold.nii.gz" --factor 2 \
    --degradation kspace --methods tvsr-prior,spline-dc,spline --json "$OUT/sr-x2-xa30-kspace-prior-gpu.json"
step sr-throughput 180 sr --device "$DEVICE" --bold "$F/func/sub-02_task-oneback_run-1_bold.nii.gz" --factor 2 \
    --volumes 1 --methods spline --throughput ${THROUGHPUT:-20 156} --throughput-method tvsr-prior \
    --json "$OUT/sr-throughput-forrest-prior-gpu.json"
