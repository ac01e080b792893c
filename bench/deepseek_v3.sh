#!/usr/bin/env bash
# DeepSeek-V3 shape (671B: 61 layers, 3 dense + 58 MoE of 256 experts, 8 per token) cut to what a disk holds:
# decode cost per dense layer and per MoE layer, and the bytes behind them, extrapolated to 61 layers
# (docs/perf/moe.md, section "deepseek2"). Three cut files: 1 and 3 layers (dense only: the leading dense count
# is clamped to the layer count) and 4 layers (3 dense + 1 MoE), 11.9 GB in all at Q4_K, so
#   per dense layer = (t3 - t1) / 2,  per MoE layer = t4 - t3,  t61 = t3 + 58 x per MoE layer.
# Decoding samples (temperature 1, seed 3) so that the routing varies as a real text's does (a random model's
# greedy text repeats one token, and its experts with it). Not part of `make bench`: run it by hand on a quiet
# machine, e.g.
#   bash bench/deepseek_v3.sh                       # resident (needs ~10 GB of free RAM for the 4-layer file)
#   MEM=6G bash bench/deepseek_v3.sh                # experts streamed through the expert cache
#   DIR=/nvme/aero TYPE=Q4_K N=32 THREADS=16 KEEP=1 bash bench/deepseek_v3.sh
set -eu
AEROLLM=${AEROLLM:-build/aerollm}
BENCH=${BENCH:-build/bench/bench_moe}
DIR=${DIR:-/tmp/aero-ds3}
TYPE=${TYPE:-Q4_K}
N=${N:-32}
MEM=${MEM:-}
THREADS=${THREADS:-}
[ -x "$BENCH" ] || make -s "$BENCH"
mkdir -p "$DIR"
for L in 1 3 4; do
  f="$DIR/ds3-L$L-$TYPE.gguf"
  [ -f "$f" ] || "$AEROLLM" synth --preset "${PRESET:-deepseek-v3}" --layers "$L" --type "$TYPE" --quiet -o "$f"
done
"$AEROLLM" info "$DIR/ds3-L4-$TYPE.gguf" ${MEM:+--mem "$MEM"} | grep -E '^  (experts|split|expected)' || true
for L in 1 3 4; do
  "$BENCH" "$DIR/ds3-L$L-$TYPE.gguf" -n "$N" --seed 3 --ck 0 ${MEM:+--mem "$MEM"} ${THREADS:+-t "$THREADS"} \
    | tee "$DIR/bench-L$L.txt"
done
node - "$DIR" "$TYPE" <<'EOF'
const fs = require('fs');
const [dir, type] = process.argv.slice(2);
const txt = (L) => fs.readFileSync(`${dir}/bench-L${L}.txt`, 'utf8');
const size = (L) => fs.statSync(`${dir}/ds3-L${L}-${type}.gguf`).size;
const num = (s, re) => { const m = s.match(re); return m ? parseFloat(m[1]) : NaN; };
const t = (L) => 1 / num(txt(L), /= ([\d.]+) tok\/s/);                      // s per decoded token
const rd = (L) => num(txt(L), /^read\/token ([\d.]+) MB/m) * 1e6 || 0;       // bytes read per token (streamed)
const [t1, t3, t4] = [t(1), t(3), t(4)];
const dense = (t3 - t1) / 2, moe = t4 - t3, t61 = t3 + 58 * moe;
const denseBytes = (size(3) - size(1)) / 2, moeBytes = size(4) - size(3);
// one routed expert: gate + up + down of n_embd x n_ff_exp (7168 x 2048 for V3) at the file's type
const bitsPer = { Q4_K: 4.5, Q2_K: 2.625, Q3_K: 3.4375, Q5_K: 5.5, Q6_K: 6.5625, Q8_0: 8.5, F16: 16 };
const expert = 3 * 7168 * 2048 * (bitsPer[type] || 4.5) / 8;
const mb = (x) => (x / 1e6).toFixed(1) + ' MB';
console.log(`decode s/token: L1 ${t1.toFixed(3)}, L3 ${t3.toFixed(3)}, L4 ${t4.toFixed(3)}`);
console.log(`per dense layer ${(dense * 1e3).toFixed(1)} ms (${mb(denseBytes)} of weights); ` +
  `per MoE layer ${(moe * 1e3).toFixed(1)} ms (${mb(moeBytes)} of weights, ${mb(expert)} per expert; ` +
  `touched per token: ${mb(moeBytes - 248 * expert)})`);
console.log(`61 layers extrapolated: ${t61.toFixed(2)} s/token = ${(1 / t61).toFixed(3)} tok/s`);
if (rd(4)) console.log(`expert bytes read per token: L4 ${mb(rd(4))} (the one MoE layer's; x58 for 61 layers: ` +
  `${mb(58 * rd(4))})`);
EOF
[ -n "${KEEP:-}" ] || rm -f "$DIR"/ds3-L*-"$TYPE".gguf
