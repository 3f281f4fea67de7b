#!/usr/bin/env bash
# The GPU check: CUDA paths of SR training/inference, SVF registration, the cerebellum CNN and the
# resampling against their CPU results on ds-xa30 (add --datasets ds-xa30 ds-forrest for both),
# timings and tolerances as JSON. On a lent GPU (target: under 8 minutes; not yet run on one):
#   tests/gpu/check.sh --json docs/results/gpu-check.json
# Without one (CI): tests/gpu/check.sh --device cpu --tiny
set -euo pipefail
exec bids-boldsr-bench gpu "$@"
