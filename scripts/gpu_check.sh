#!/usr/bin/env bash
# The GPU check: on a CUDA machine with no network (the lent H200: torch 2.11, Triton 3.6), in under 8 minutes.
#
#   scripts/gpu_check.sh OUT_DIR            # native: the gpu-marked tests, then the GPU benchmark
#   scripts/gpu_check.sh OUT_DIR --dry-run  # the same steps on the CPU at toy sizes (CI runs this)
#
# Installs nothing from a network: peers missing on the machine travel as wheels in .whl/ (kornia, kornia_rs,
# triton_augment; see benchmarks/README.md) and go to a private folder; fastaug runs from a staged copy of this tree
# (fastaug/ with kernels/ as fastaug/kernels, as the wheel lays it out). Writes into OUT_DIR: gpu_check.log, the
# pytest log and junit XML, and the benchmark's JSON + PNG (per pipeline). Each step has its own time limit; a failed
# step is reported and the next one still runs; the exit status is that of the first failed step.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR [--dry-run]}
DRY=0
if [ "${2:-}" = "--dry-run" ]; then DRY=1; elif [ -n "${2:-}" ]; then echo "unknown option: $2 (only --dry-run)"; exit 2; fi
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
STATUS=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log the outcome, remember the first failure
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@"
  rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - start ))s"
  if [ $rc -ne 0 ] && [ $STATUS -eq 0 ]; then STATUS=$rc; fi
}

main() {
STAGE=$(mktemp -d)
cp -r "$REPO/fastaug" "$REPO/tests" "$REPO/benchmarks" "$REPO/pyproject.toml" "$STAGE/"
cp -r "$REPO/kernels" "$STAGE/fastaug/kernels"
if compgen -G "$REPO/.whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$STAGE/site" "$REPO"/.whl/*.whl \
    || echo "peer wheels did not install: those peers will be recorded as unavailable"
else
  echo "no .whl/*.whl (carry .whl with the tree): peers missing on this machine will be recorded as unavailable"
fi
export PYTHONPATH="$STAGE:$STAGE/site${PYTHONPATH:+:$PYTHONPATH}"
cd "$STAGE" || exit 1

$PY - <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
for name in ("triton", "numba", "kornia", "torchvision", "triton_augment"):
    try:
        print(name, __import__(name).__version__)
    except Exception as e:  # noqa: BLE001
        print(name, "unavailable:", type(e).__name__, e)
EOF

if [ $DRY -eq 1 ]; then
  # the gpu tests must at least collect; the benchmark runs its plumbing on the CPU at toy sizes
  step "gpu tests (collect only)" 300 $PY -m pytest -q -p no:cacheprovider -m gpu --collect-only tests/test_triton_backend.py \
    tests/test_autograd_triton.py tests/test_policies.py tests/test_cuda_graph.py
  step "benchmark (dry run, cpu)" 300 $PY -m benchmarks.bench --device cpu --isa native --batch 2 --size 32 --warmup 1 --repeats 2 \
    --no-backward --peers fastaug-numba torchvision-per-sample fastaug-triton-graph triton-augment --out-dir "$OUT"
else
  step "gpu tests (native)" 220 $PY -m pytest -q -p no:cacheprovider -m gpu --junitxml="$OUT/pytest-gpu.xml" \
    tests/test_triton_backend.py tests/test_autograd_triton.py tests/test_policies.py tests/test_cuda_graph.py
  PEERS="fastaug-triton fastaug-triton-graph kornia torchvision-per-sample torchvision-batch-wide triton-augment"
  step "benchmark: reference pipeline" 150 $PY -m benchmarks.bench --device cuda --isa native --batch 256 --size 224 --warmup 3 --repeats 15 \
    --peers $PEERS --out-dir "$OUT"
  step "benchmark: reference pipeline, 512x512" 60 $PY -m benchmarks.bench --device cuda --isa native --batch 64 --size 512 --warmup 3 --repeats 15 \
    --no-backward --peers $PEERS --out-dir "$OUT/512"
  step "benchmark: affine-flip-color (triton-augment's ops)" 60 $PY -m benchmarks.bench --device cuda --isa native --pipeline affine-flip-color \
    --batch 256 --size 224 --warmup 3 --repeats 15 --no-backward --peers $PEERS --out-dir "$OUT"
fi
cd "$REPO" && rm -rf "$STAGE"
echo "gpu_check: exit $STATUS"
return $STATUS
}

main 2>&1 | tee -a "$OUT/gpu_check.log"  # the log and the terminal; tee finishes before the script does
exit "${PIPESTATUS[0]}"
