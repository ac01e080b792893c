#!/usr/bin/env bash
# Rebuilds docs/perf.md from the module notes in docs/perf/ (each note's headings one level down), so the
# figures live in one place per module and the overview never drifts from them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/perf.md.tmp.$$
trap 'rm -f "$out"' EXIT
{
  echo "# Performance: floors, predictions, results"
  echo
  echo "Every figure is a ratio to a floor measured in the same run, with the machine's load beside it (a shared"
  echo "2-vCPU box; rerun \`make bench\` on a quiet machine for absolute speeds). This page is assembled by"
  echo "scripts/perf_assemble.sh from the module notes in docs/perf/; edit those, not this page."
  for m in model kernels cpu stream kv moe arch cuda spec server batch web tokenizer training; do
    [ -f "docs/perf/$m.md" ] || continue
    echo
    sed 's/^#/##/' "docs/perf/$m.md"
  done
} > "$out"
mv "$out" docs/perf.md
trap - EXIT
