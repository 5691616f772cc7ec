#!/usr/bin/env bash
# One GPU session in one call: builds vid3d with its CUDA kernels against the machine's torch, runs
# the CUDA and Triton tests on the GPU, compute-sanitizer (memcheck, racecheck) on a reduced suite,
# ncu on the main kernels, and the benchmarks; every step is time-boxed so the whole run ends within
# VID3D_SESSION_SECONDS (default 540 s, under a 10-minute call). Logs and records go to $OUT
# (default /tmp/vid3d-gpu-out): session.log (the summary, read it first), build.log, tests.log,
# profile.log (compute-sanitizer, then ncu), bench.log, cuda_kernels.json and cuda_kernels.md (cuda
# vs triton vs torch over the DESIGN shapes), bench_ops.json (`vid3d bench ops`): 8 files, the most
# the device tool brings back. A step that fails or runs out of time is reported and the next one
# still runs. Usage, from the repository root on the GPU machine:
#   bash bench/gpu_session.sh
# The machine has no network: the build uses the installed torch, setuptools and ninja only.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/vid3d-gpu-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
START=$(date +%s)
DEADLINE=$((START + ${VID3D_SESSION_SECONDS:-540}))
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" VID3D_CUDA=1

log() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$OUT/session.log"; }

# step NAME CAP LOGFILE COMMAND...: runs COMMAND for at most CAP seconds (less if the session's
# deadline is nearer, keeping `reserve` seconds for the steps after it), appending to LOGFILE.
step() {
  local name=$1 cap=$2 logfile=$3 reserve=${RESERVE:-0}
  shift 3
  local left=$((DEADLINE - $(date +%s) - reserve))
  local limit=$((cap < left ? cap : left))
  if ((limit < 10)); then
    log "SKIP $name (no time left)"
    return
  fi
  log "START $name (limit ${limit}s)"
  echo "===== $name: $*" >>"$OUT/$logfile"
  timeout --kill-after=10 "$limit" "$@" >>"$OUT/$logfile" 2>&1
  local rc=$?
  if ((rc == 124 || rc == 137)); then
    log "TIMEOUT $name after ${limit}s (partial output in $logfile)"
  elif ((rc != 0)); then
    log "FAIL $name (exit $rc; see $logfile)"
  else
    log "OK $name"
  fi
  tail -n 3 "$OUT/$logfile" | sed 's/^/    /' | tee -a "$OUT/session.log" >/dev/null
  return $rc
}

log "machine: $(nvidia-smi -L 2>/dev/null | head -1); $($PY -c 'import torch, triton, setuptools; print("torch", torch.__version__, "triton", triton.__version__, "setuptools", setuptools.__version__)' 2>&1)"
log "tools: ncu=$(command -v ncu || echo none) compute-sanitizer=$(command -v compute-sanitizer || echo none)"

# Build: pyproject's license field needs setuptools >= 77 (checked above); no index, no downloads.
RESERVE=300 step build 240 build.log $PY -m pip install --no-build-isolation --no-deps --no-index -v . \
  || { log "build failed: nothing else can run"; tail -n 40 "$OUT/build.log" >>"$OUT/session.log"; exit 1; }
(cd /tmp && $PY -m vid3d.cli info) 2>&1 | tee -a "$OUT/session.log"

# Tests import the installed vid3d: `-P` keeps the working directory (the source tree, which has no
# built extension) off sys.path for `-m`; scripts put only their own folder there.
RESERVE=240 step test_cuda 120 tests.log $PY -P -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_cuda_index_math.py
grep -E "passed|failed|error" "$OUT/tests.log" | tail -n 2 | tee -a "$OUT/session.log"
RESERVE=200 step test_triton 60 tests.log $PY -P -m pytest -q -p no:cacheprovider -x tests/test_triton.py

if command -v compute-sanitizer >/dev/null; then
  RESERVE=150 step memcheck 70 profile.log compute-sanitizer --tool memcheck --error-exitcode 9 \
    $PY tests/cuda_sanitizer_suite.py
  RESERVE=120 step racecheck 60 profile.log compute-sanitizer --tool racecheck --racecheck-report hazard \
    --error-exitcode 9 $PY tests/cuda_sanitizer_suite.py
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed" "$OUT/profile.log" | tee -a "$OUT/session.log"
else
  log "SKIP compute-sanitizer (not installed)"
fi

if command -v ncu >/dev/null; then
  RESERVE=100 step ncu 50 profile.log ncu --target-processes all --kernel-name-base demangled \
    --kernel-name "regex:depthwise|input_grad|param_grad|shuffle_part|conv2plus1d" --launch-count 14 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
    $PY bench/cuda_kernels.py --ncu
else
  log "SKIP ncu (not installed)"
fi

RESERVE=25 step cuda_kernels_bench 200 bench.log $PY bench/cuda_kernels.py --json "$OUT/cuda_kernels.json" \
  --md "$OUT/cuda_kernels.md" --budget 0.05 --time-limit $((DEADLINE - $(date +%s) - 70))
# Its charts stay in /tmp: only the record comes back (the device tool returns 8 files).
mkdir -p /tmp/vid3d-bench
RESERVE=0 step vid3d_bench 40 bench.log $PY -P -m vid3d.cli bench ops --budget 0.05 --no-progress \
  --json /tmp/vid3d-bench/bench_ops.json
cp /tmp/vid3d-bench/bench_ops.json "$OUT/" 2>/dev/null
log "done in $(($(date +%s) - START))s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
