#!/usr/bin/env bash
# One GPU session in one call: builds vid3d with its CUDA kernels against the machine's torch, checks
# the CUDA kernels, times them (bench/cuda_kernels.py, `vid3d bench ops`, `vid3d bench` models), runs
# the whole test suite on the GPU machine (the CUDA and Triton-on-GPU cases, and the CPU kernels on its
# processor), the >2^31-element GPU tests, compute-sanitizer (memcheck, racecheck) on a reduced suite
# and ncu on the main kernels. Every step is time-boxed so the run ends within VID3D_SESSION_SECONDS
# (default 540 s, under a 10-minute call); a step that fails or runs out of time is reported and the
# next one still runs.
#
# Usage, from the repository root on the GPU machine (no network there: the build uses the installed
# torch, setuptools and ninja; a setuptools wheel in .whl/ is used if the installed one is too old):
#   OUT=/dir VID3D_COMMIT=<commit> bash bench/gpu_session.sh
# VID3D_STEPS picks steps (default: all, in this order): build cuda_tests bench_kernels bench_ops
# bench_models suite huge memcheck racecheck ncu. A later call on the same (still warm) machine can
# run the rest without `build`.
#
# $OUT gets at most 8 files (what the device tool brings back): session.log (the summary: read it
# first), build.log, tests.log, profile.log (compute-sanitizer, ncu), bench.log and records.tar
# (cuda_kernels.json, cuda_kernels.md, the `vid3d bench` records and their charts).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/vid3d-gpu-out}"
RECORDS=/tmp/vid3d-records
mkdir -p "$OUT" "$RECORDS"
PY="${PYTHON:-python3}"
START=$(date +%s)
DEADLINE=$((START + ${VID3D_SESSION_SECONDS:-540}))
STEPS=" ${VID3D_STEPS:-build cuda_tests bench_kernels bench_ops bench_models suite huge memcheck racecheck ncu} "
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
PYTEST=($PY -P -m pytest -p no:cacheprovider -q -rfE)  # -P: import the installed vid3d, not the source tree

log() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$OUT/session.log"; }
wanted() { [[ "$STEPS" == *" $1 "* ]]; }

# step NAME CAP LOGFILE COMMAND...: runs COMMAND for at most CAP seconds (less where the deadline is
# nearer, keeping RESERVE seconds for the steps after it), appending its output to LOGFILE.
step() {
  local name=$1 cap=$2 logfile=$3 reserve=${RESERVE:-0}
  shift 3
  local left=$((DEADLINE - $(date +%s) - reserve))
  local limit=$((cap < left ? cap : left))
  if ((limit < 10)); then
    log "SKIP $name (no time left)"
    return 1
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
  grep -E "^(FAILED|ERROR) | FAILED |[0-9]+ (passed|failed)|error:|Error" "$OUT/$logfile" | tail -n 40 | sed 's/^/    /' \
    | tee -a "$OUT/session.log" >/dev/null
  return $rc
}

pack_records() { tar -C "$RECORDS" -cf "$OUT/records.tar" . 2>/dev/null; }

if wanted build; then
  log "machine: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | head -1)"
  log "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x$(nproc); avx512f: $(grep -c -m1 avx512f /proc/cpuinfo)"
  log "python: $($PY -c 'import sys, torch, triton, setuptools; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__, "setuptools", setuptools.__version__)' 2>&1)"
  log "tools: nvcc=$(command -v nvcc || echo none) ncu=$(command -v ncu || echo none) compute-sanitizer=$(command -v compute-sanitizer || echo none)"
  # pyproject's SPDX license field needs setuptools >= 77.
  if ! $PY -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' && ls .whl/setuptools-*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --target /tmp/vid3d-site .whl/setuptools-*.whl \
      && export PYTHONPATH=/tmp/vid3d-site && log "setuptools from .whl: $($PY -c 'import setuptools; print(setuptools.__version__)')"
  fi
  if ! VID3D_CUDA=1 RESERVE=300 step build 240 build.log $PY -m pip install --no-build-isolation --no-deps --no-index -v .; then
    tail -n 60 "$OUT/build.log" | grep -E "error|Error" | head -n 20 >>"$OUT/session.log"
    # Without the CUDA kernels the Triton kernels and the CPU kernels can still be checked here.
    VID3D_CUDA=0 RESERVE=300 step build_cpu_only 150 build.log $PY -m pip install --no-build-isolation --no-deps --no-index -v . \
      || { log "no build: nothing else can run"; exit 1; }
  fi
  (cd /tmp && $PY -m vid3d.cli info) 2>&1 | tee -a "$OUT/session.log"
fi

if wanted cuda_tests; then
  RESERVE=330 step cuda_tests 100 tests.log "${PYTEST[@]}" tests/test_cuda.py tests/test_cuda_index_math.py
fi

if wanted bench_kernels; then
  RESERVE=230 step bench_kernels 110 bench.log $PY bench/cuda_kernels.py --json "$RECORDS/cuda_kernels.json" \
    --md "$RECORDS/cuda_kernels.md" --budget 0.05 --time-limit 85
  pack_records
fi

if wanted bench_ops; then
  RESERVE=190 step bench_ops 45 bench.log $PY -P -m vid3d.cli bench ops --budget 0.05 --no-progress \
    --json "$RECORDS/bench_ops.json"
  pack_records
fi
if wanted bench_models; then
  RESERVE=130 step bench_models 70 bench.log $PY -P -m vid3d.cli bench models --no-compile --budget 0.05 \
    --no-progress --json "$RECORDS/bench_models.json"
  pack_records
fi

# The whole suite: the CUDA and Triton-on-GPU cases skipped on the CPU machines, and the CPU kernels
# on this machine's processor (AVX-512 where it has it). One thread per worker: 12 workers share it.
# -v names each test as it ends: a step cut off by its time limit still says which ones failed.
if wanted suite; then
  OMP_NUM_THREADS=1 RESERVE=60 step suite 150 tests.log "${PYTEST[@]}" -v -n 12 -m "not huge" tests \
    --ignore tests/test_cuda.py --ignore tests/test_cuda_index_math.py
fi
if wanted huge; then
  RESERVE=50 step huge 40 tests.log "${PYTEST[@]}" -m huge -k cuda tests/test_reliability.py tests/test_cuda.py
fi

if wanted memcheck && command -v compute-sanitizer >/dev/null; then
  RESERVE=30 step memcheck 60 profile.log compute-sanitizer --tool memcheck --error-exitcode 9 \
    $PY tests/cuda_sanitizer_suite.py
fi
if wanted racecheck && command -v compute-sanitizer >/dev/null; then
  RESERVE=20 step racecheck 50 profile.log compute-sanitizer --tool racecheck --racecheck-report hazard \
    --error-exitcode 9 $PY tests/cuda_sanitizer_suite.py
fi
if wanted ncu && command -v ncu >/dev/null; then
  step ncu 45 profile.log ncu --clock-control none --target-processes all --kernel-name-base demangled \
    --kernel-name "regex:depthwise|input_grad|param_grad|shuffle_part|conv2plus1d" --launch-count 14 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
    $PY bench/cuda_kernels.py --ncu
fi
grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed" "$OUT/profile.log" 2>/dev/null | tee -a "$OUT/session.log"
pack_records
log "done in $(($(date +%s) - START))s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
