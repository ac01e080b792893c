#!/usr/bin/env bash
# The issue-14 benchmark: the Qwen3-30B-A3B shape at Q4_K (48 layers, 17.2 GB) under `memlimit 4G` with
# `--mem 3G`: bytes read per decoded token against the floor (goal <= 1.10), tokens/s, the expert cache's and
# the predictor's hit rates, the verification cost curve c(k); then the same file fully resident (decode tok/s,
# c(k)). Bytes and hit rates are exact counts (any machine); times need a quiet one (docs/perf/moe.md).
#   bash bench/moe_qwen3.sh                      # 48 layers; writes /tmp/aero-moe/q3-48-Q4_K.gguf once (~1 min)
#   LAYERS=24 bash bench/moe_qwen3.sh            # the 24-layer cut of the earlier figures (8.8 GB)
#   RESIDENT=0 bash bench/moe_qwen3.sh           # skip the resident run (it needs ~18 GB of free RAM)
#   DIR=/nvme/aero THREADS=16 N=96 KEEP=1 bash bench/moe_qwen3.sh
set -eu
AEROLLM=${AEROLLM:-build/aerollm}
BENCH=${BENCH:-build/bench/bench_moe}
MEMLIMIT=${MEMLIMIT:-../shared/tools/memlimit}
DIR=${DIR:-/tmp/aero-moe}
LAYERS=${LAYERS:-48}
TYPE=${TYPE:-Q4_K}
MEM=${MEM:-3G}
LIMIT=${LIMIT:-4G}
N=${N:-96}
THREADS=${THREADS:-2}
CK=${CK:-1,2,4,8,16}
[ -x "$BENCH" ] || make -s "$BENCH"
mkdir -p "$DIR"
f="$DIR/q3-$LAYERS-$TYPE.gguf"
[ -f "$f" ] || "$AEROLLM" synth --preset qwen3-30b-a3b --layers "$LAYERS" --type "$TYPE" --quiet -o "$f"
echo "== plan: aerollm info --mem $MEM"
"$AEROLLM" info "$f" --mem "$MEM" | grep -E '^  (experts|split|expected)'
echo "== experts streamed: memlimit $LIMIT, --mem $MEM, $N sampled tokens (seed 3), predictor off (default)"
"$MEMLIMIT" "$LIMIT" "$BENCH" "$f" --mem "$MEM" -n "$N" -t "$THREADS" --seed 3 --ck "$CK"
echo "== the same with the predictor on"
"$MEMLIMIT" "$LIMIT" "$BENCH" "$f" --mem "$MEM" -n "$N" -t "$THREADS" --seed 3 --ck 0 --prefetch
echo "== aerollm run --stats (the CLI's figure: prompt 'hello', temperature 1, seed 3)"
"$MEMLIMIT" "$LIMIT" "$AEROLLM" run -m "$f" --mem "$MEM" -n "$N" --temp 1 --seed 3 -t "$THREADS" --ignore-eos \
  -p hello --stats 2>&1 >/dev/null | grep -E '^(load|experts|cache|read/token|predictor|memlimit)'
if [ "${RESIDENT:-1}" != 0 ]; then
  echo "== fully resident (no --mem), $N sampled tokens"
  "$BENCH" "$f" -n "$N" -t "$THREADS" --seed 3 --ck "$CK"
fi
[ -n "${KEEP:-}" ] || rm -f "$f"
