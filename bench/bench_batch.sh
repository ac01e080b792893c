#!/usr/bin/env bash
# Aggregate generated tokens/s of `aerollm batch` at batch sizes 1, 8, 32, 64 (issue 18) on a streamed model,
# against the roofline of each: a pass advancing B sequences costs at least max(disk floor, B x per-token
# compute), so throughput should follow B / max(floor, B x compute). The floor and the per-token compute come
# from one `aerollm run --stats` under the same weight budget (the mean of its decode passes: "floor ms" and
# "comp ms"). Run it on a quiet machine:
#   bash bench/bench_batch.sh                                   # the bundled teacher, weights --mem 16M
#   MODEL=/path/llama8b-q4k.gguf WEIGHTS_MEM=2560M bash bench/bench_batch.sh
# Env: MODEL, WEIGHTS_MEM (the weights' share; the KV cache of B sequences of CTX tokens is added to --mem),
# CTX (default 128), GEN (tokens per request, default 64), SIZES (default "1 8 32 64"), THREADS (-t).
set -u
A=${AEROLLM:-./aerollm}
MODEL=${MODEL:-models/aero-teacher-34M-Q8_0.gguf}
WEIGHTS_MEM=${WEIGHTS_MEM:-16M}
CTX=${CTX:-128}
GEN=${GEN:-64}
SIZES=${SIZES:-1 8 32 64}
TARGS=(); [ -n "${THREADS:-}" ] && TARGS=(-t "$THREADS")
[ -x "$A" ] && [ -f "$MODEL" ] || { echo "skipped: $A or $MODEL missing"; exit 0; }
T=$(mktemp -d /tmp/aero_bench_batch.XXXXXX)
trap 'rm -rf "$T"' EXIT

# bytes: sizes like 16M -> bytes
bytes() { numfmt --from=iec "$1"; }
kv_tok=$("$A" info "$MODEL" 2>/dev/null | sed -n 's/.*: \([0-9.]*\) KiB per token).*/\1/p' | head -1)
[ -n "$kv_tok" ] || { echo "cannot read the KV bytes per token from aerollm info"; exit 1; }
wmem=$(bytes "$WEIGHTS_MEM")
mem_for() { awk -v w="$wmem" -v b="$1" -v c="$CTX" -v k="$kv_tok" 'BEGIN { printf "%dK", (w + b * c * k * 1024) / 1024 + 64 }'; }

# the floor and per-token compute of one decode pass, from run --stats at batch 1
"$A" run -m "$MODEL" -p "Once upon a time" -n 32 --ignore-eos --temp 0 -c "$CTX" --mem "$(mem_for 1)" --stats \
    "${TARGS[@]}" >/dev/null 2>"$T/stats" || { cat "$T/stats"; exit 1; }
# "comp ms" is the 5th column, "floor ms" the one before the last ("x floor"), whatever columns come between
read -r floor_ms comp_ms < <(awk '$1 == "mean>1" { print $(NF - 1), $5 }' "$T/stats")
streamed=$(sed -n 's/.*), \([0-9.]*\) MB streamed per pass.*/\1/p' "$T/stats")
echo "model $MODEL, weights --mem $WEIGHTS_MEM (+ KV of B x $CTX tokens at $kv_tok KiB/token), $GEN tokens per request"
echo "one pass: $streamed MB streamed, disk floor $floor_ms ms, compute $comp_ms ms at 1 token (from run --stats)"
printf '%6s %8s %10s %12s %12s %10s\n' B requests "tok/s" "roofline" "x roofline" "vs B=1"
base=""
for B in $SIZES; do
    n=$(( B * 3 < 16 ? 16 : B * 3 )) # several waves, so refill is measured too
    : >"$T/in.jsonl"
    for i in $(seq 1 "$n"); do
        printf '{"custom_id":"r%d","method":"POST","url":"/v1/completions","body":{"prompt":"Once upon a time %d","max_tokens":%d,"temperature":0,"ignore_eos":true}}\n' \
            "$i" "$i" "$GEN" >>"$T/in.jsonl"
    done
    rm -f "$T/out.jsonl"
    "$A" batch -m "$MODEL" "$T/in.jsonl" -o "$T/out.jsonl" -np "$B" -c "$CTX" --mem "$(mem_for "$B")" "${TARGS[@]}" \
        2>"$T/err" || { tail -3 "$T/err"; exit 1; }
    tps=$(sed -n 's/.*(\([0-9.]*\) generated tok\/s).*/\1/p' "$T/err")
    roof=$(awk -v b="$B" -v f="$floor_ms" -v c="$comp_ms" 'BEGIN { p = (f > b * c ? f : b * c); printf "%.1f", b * 1000 / p }')
    [ -z "$base" ] && base=$tps
    printf '%6d %8d %10s %12s %12s %10s\n' "$B" "$n" "$tps" "$roof" \
        "$(awk -v t="$tps" -v r="$roof" 'BEGIN { printf "%.2f", r / t }')" \
        "$(awk -v t="$tps" -v b="$base" 'BEGIN { printf "%.1fx", t / b }')"
done
echo "(x roofline: roofline / measured, goal <= 1.15; the roofline's compute term is the 1-token pass's, so it"
echo " overstates B x compute where batching makes each token cheaper)"
