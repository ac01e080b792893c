#!/usr/bin/env bash
# All GPU tests and benchmarks in one call (device time is scarce: one run does everything).
#   scripts/gpu_tests.sh --stage   on the build machine: builds the CUDA tests (make -f cuda.mk cuda-tests) and
#                                  copies them, with their non-glibc shared libraries (from ldd), into .cuda/
#   scripts/gpu_tests.sh [--quick] on the GPU machine: runs test_cuda (kernels against the CPU reference,
#                                  bitwise batch invariance), then bench_cuda (floors, matvec bandwidth per type,
#                                  batched cost curve, copy/compute overlap, attention); logs go to $OUT if set.
# Exit status: 0 all passed, 77 no CUDA device (skipped), otherwise the first failure's status.
set -u
cd "$(dirname "$0")/.."
STAGE=.cuda

if [ "${1:-}" = "--stage" ]; then
    set -e
    make -f cuda.mk cuda-tests
    build-cuda/test_decode_host | tail -1   # the decoders on the CPU before spending device time
    mkdir -p "$STAGE/bin" "$STAGE/lib"
    [ -f "$STAGE/.gitignore" ] || echo '*' > "$STAGE/.gitignore"
    cp build-cuda/test_cuda build-cuda/bench_cuda "$STAGE/bin/"
    # libraries outside glibc and the loader: what the GPU machine may lack
    for bin in "$STAGE"/bin/*; do
        ldd "$bin" | awk '/=> \// {print $3}' | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' || true
    done | sort -u | while read -r lib; do cp -L "$lib" "$STAGE/lib/"; done
    ls -la "$STAGE/bin" "$STAGE/lib"
    exit 0
fi

BIN=$STAGE/bin
[ -x "$BIN/test_cuda" ] || BIN=build-cuda
export LD_LIBRARY_PATH="$PWD/$STAGE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LOG=${OUT:-/tmp}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.memory --format=csv

status=0
echo "== test_cuda"
"$BIN/test_cuda" 2>&1 | tee "$LOG/test_cuda.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 77 ] && exit 77
[ "$rc" = 0 ] || status=$rc
echo "== bench_cuda"
"$BIN/bench_cuda" "$@" 2>&1 | tee "$LOG/bench_cuda.log"
rc=${PIPESTATUS[0]}
[ "$status" = 0 ] && [ "$rc" != 0 ] && status=$rc
echo "== gpu_tests: exit $status"
exit $status
