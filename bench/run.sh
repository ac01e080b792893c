#!/usr/bin/env bash
# `make bench` after the C benchmarks: engine-level benchmarks that need the aerollm binary.
# Each bench/bench_*.sh script prints its own figures and floors.
set -u
: "${AEROLLM:=./aerollm}"
export AEROLLM
rc=0
for b in bench/bench_*.sh; do
  [ -e "$b" ] || continue
  echo "== $b"
  bash "$b" || rc=1
done
exit $rc
