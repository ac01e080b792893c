#!/usr/bin/env bash
# DeepSeek-V3 shape (671B: 61 layers, 3 dense + 58 MoE of 256 experts, 8 per token) cut to what a disk holds:
# decode cost per dense layer and per MoE layer, and the bytes behind them, extrapolated to 61 layers
# (docs/perf/moe.md, section "deepseek2"). Three cut files: 1 and 3 layers (dense only: the leading dense count
# is clamped to the layer count) and 5 layers (3 dense + 2 MoE), so
#   per dense layer = (t3 - t1) / 2,  per MoE layer = (t5 - t3) / 2,  t61 = t3 + 58 x per MoE layer.
# Not part of `make bench` (it writes ~18 GB at Q4_K): run it by hand on a quiet machine, e.g.
#   bash bench/deepseek_v3.sh                       # resident (needs RAM for the 5-layer file, ~15 GB)
#   MEM=6G bash bench/deepseek_v3.sh                # experts streamed through the expert cache
#   DIR=/nvme/aero TYPE=Q4_K N=32 THREADS=16 KEEP=1 bash bench/deepseek_v3.sh
set -eu
AEROLLM=${AEROLLM:-build/aerollm}
DIR=${DIR:-/tmp/aero-ds3}
TYPE=${TYPE:-Q4_K}
N=${N:-32}
MEM=${MEM:-}
THREADS=${THREADS:-}
mkdir -p "$DIR"
for L in 1 3 5; do
  f="$DIR/ds3-L$L-$TYPE.gguf"
  [ -f "$f" ] || "$AEROLLM" synth --preset "${PRESET:-deepseek-v3}" --layers "$L" --type "$TYPE" -o "$f"
done
"$AEROLLM" info "$DIR/ds3-L5-$TYPE.gguf" ${MEM:+--mem "$MEM"} | tail -n 12
for L in 1 3 5; do
  # sampled decoding (temperature 1, seed 3) so that the routing varies as a real text's does
  "$AEROLLM" bench -m "$DIR/ds3-L$L-$TYPE.gguf" -p 64 -n "$N" --temp 1 --seed 3 --json \
    ${MEM:+--mem "$MEM"} ${THREADS:+-t "$THREADS"} > "$DIR/bench-L$L.json"
  if [ -n "$MEM" ]; then # the expert cache's lines (hit rate, read/token against the oracle floor)
    "$AEROLLM" bench -m "$DIR/ds3-L$L-$TYPE.gguf" -p 64 -n "$N" --temp 1 --seed 3 --mem "$MEM" \
      ${THREADS:+-t "$THREADS"} | grep -E '^(experts|cache|read/token|predictor)' || true
  fi
done
node - "$DIR" "$TYPE" <<'EOF'
const fs = require('fs');
const [dir, type] = process.argv.slice(2);
const b = (L) => JSON.parse(fs.readFileSync(`${dir}/bench-L${L}.json`, 'utf8'));
const size = (L) => fs.statSync(`${dir}/ds3-L${L}-${type}.gguf`).size;
const [b1, b3, b5] = [b(1), b(3), b(5)];
const t = (x) => x.decode_s_per_token;
const dense = (t(b3) - t(b1)) / 2, moe = (t(b5) - t(b3)) / 2, t61 = t(b3) + 58 * moe;
const denseBytes = (size(3) - size(1)) / 2, moeBytes = (size(5) - size(3)) / 2;
// one routed expert: gate + up + down of 7168 x 2048 at the file's type (every row a whole number of blocks)
const bitsPer = { Q4_K: 4.5, Q2_K: 2.625, Q3_K: 3.4375, Q5_K: 5.5, Q6_K: 6.5625, Q8_0: 8.5, F16: 16 };
const expert = 3 * 7168 * 2048 * (bitsPer[type] || 4.5) / 8;
const mb = (x) => (x / 1e6).toFixed(1) + ' MB';
console.log(`decode s/token: L1 ${t(b1).toFixed(3)}, L3 ${t(b3).toFixed(3)}, L5 ${t(b5).toFixed(3)} ` +
  `(threads ${b5.threads}, ${b5.isa}, --mem ${b5.mem_budget || 'none'})`);
console.log(`per dense layer ${(dense * 1e3).toFixed(1)} ms (${mb(denseBytes)} of weights); ` +
  `per MoE layer ${(moe * 1e3).toFixed(1)} ms (${mb(moeBytes)} of weights, ${mb(expert)} per expert; active per token: ${mb(moeBytes - 248 * expert)})`);
console.log(`61 layers extrapolated: ${t61.toFixed(2)} s/token = ${(1 / t61).toFixed(3)} tok/s`);
if (b5.mem_budget) {
  const rd = (b5.decode_bytes_streamed) / b5.decode_tokens, rd3 = b3.decode_bytes_streamed / b3.decode_tokens;
  console.log(`streamed bytes/token: L5 ${mb(rd)}, L3 ${mb(rd3)}; per MoE layer ${mb((rd - rd3) / 2)}; ` +
    `disk ${b5.disk_bw_gbs} GB/s`);
}
EOF
[ -n "${KEEP:-}" ] || rm -f "$DIR"/ds3-L*-"$TYPE".gguf
