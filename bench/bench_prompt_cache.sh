#!/usr/bin/env bash
# Time to first token of a request whose 400-token prefix is already cached, against the same request cold
# (issue 15): the bundled teacher streamed with a 16M weight budget (its context is 512).
#   1. server prompt reuse: `aerollm serve -np 1`; cold = cache_prompt false (nothing reused), warm = the prefix
#      was sent by the previous request, so only the new tail is prefilled. max_tokens 1: the response time is
#      the time to the first token.
#   2. saved prompts: `aerollm run --prompt-cache` with the prefix saved by an earlier process, against the same
#      run without it (the "prompt ... in X s" line).
# Goal: warm >= 10x faster than cold. Run on a quiet machine:  bash bench/bench_prompt_cache.sh
# Env: MODEL, WEIGHTS_MEM (default 16M; the KV cache of one 512-token sequence is added to --mem), REPS (5).
set -u
A=${AEROLLM:-./aerollm}
MODEL=${MODEL:-models/aero-teacher-34M-Q8_0.gguf}
WEIGHTS_MEM=${WEIGHTS_MEM:-16M}
REPS=${REPS:-5}
[ -x "$A" ] && [ -f "$MODEL" ] || { echo "skipped: $A or $MODEL missing"; exit 0; }
command -v curl >/dev/null || { echo "skipped: curl missing"; exit 0; }
T=$(mktemp -d /tmp/aero_bench_pc.XXXXXX)
SRV=""
trap '[ -n "$SRV" ] && kill "$SRV" 2>/dev/null; rm -rf "$T"' EXIT

kv_tok=$("$A" info "$MODEL" 2>/dev/null | sed -n 's/.*: \([0-9.]*\) KiB per token).*/\1/p' | head -1)
CTX=512
MEM=$(awk -v w="$(numfmt --from=iec "$WEIGHTS_MEM")" -v c="$CTX" -v k="$kv_tok" 'BEGIN { printf "%dK", (w + c * k * 1024) / 1024 + 64 }')

# a prefix of about 400 tokens
words=(the little girl saw a big red ball in the park and she ran to get it with her dog)
prefix="Once upon a time"
i=0
while :; do
    prefix+=" ${words[i % ${#words[@]}]}"; i=$((i + 1))
    if (( i % 20 == 0 )); then
        n=$("$A" tokenize -m "$MODEL" --ids -p "$prefix" | wc -w)
        (( n >= 400 )) && break
    fi
done
echo "model $MODEL, --mem $MEM (weights $WEIGHTS_MEM + KV of $CTX tokens), prefix $n tokens, best and median of $REPS"

median() { sort -g | awk '{ a[NR] = $1 } END { printf "%.1f %.1f", a[1], a[int((NR + 1) / 2)] }'; }

# 1. the server
"$A" serve -m "$MODEL" --port 0 -np 1 -c "$CTX" --mem "$MEM" --quiet 2>"$T/srv.log" &
SRV=$!
for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$T/srv.log")
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
done
req() { # $1 tail text, $2 cache_prompt -> ms of the whole response (max_tokens 1)
    local body
    body=$(printf '{"prompt": "%s %s", "max_tokens": 1, "temperature": 0, "cache_prompt": %s}' "$prefix" "$1" "$2")
    curl -s -o "$T/resp" -w '%{time_total}\n' -H 'Content-Type: application/json' -d "$body" \
        "http://127.0.0.1:$port/v1/completions" | awk '{ printf "%.1f\n", $1 * 1000 }'
}
req "warm up" false >/dev/null
for r in $(seq "$REPS"); do req "cold question $r" false; done >"$T/cold"
for r in $(seq "$REPS"); do req "prime $r" true >/dev/null; req "warm question $r" true; done >"$T/warm"
grep -o '"cached_tokens":[0-9]*' "$T/resp" | sed 's/^/last warm response: /'
read -r cb cm < <(median <"$T/cold"); read -r wb wm < <(median <"$T/warm")
echo "server TTFT: cold $cm ms (best $cb), 400-token prefix cached $wm ms (best $wb): $(awk -v c="$cm" -v w="$wm" 'BEGIN { printf "%.1fx", c / w }') faster"
kill "$SRV"; wait "$SRV" 2>/dev/null; SRV=""

# 2. run --prompt-cache across processes
prompt_ms() { sed -n 's/.*| prompt [0-9]* tokens in \([0-9.]*\) s.*/\1/p' "$1" | awk '{ printf "%.1f\n", $1 * 1000 }'; }
"$A" run -m "$MODEL" -p "$prefix" -n 1 --temp 0 -c "$CTX" --mem "$MEM" --prompt-cache "$T/p.kv" >/dev/null 2>&1
for r in $(seq "$REPS"); do
    "$A" run -m "$MODEL" -p "$prefix question $r" -n 1 --temp 0 -c "$CTX" --mem "$MEM" >/dev/null 2>"$T/e"
    prompt_ms "$T/e"
done >"$T/rcold"
for r in $(seq "$REPS"); do
    "$A" run -m "$MODEL" -p "$prefix question $r" -n 1 --temp 0 -c "$CTX" --mem "$MEM" --prompt-cache "$T/p.kv" \
        --prompt-cache-ro >/dev/null 2>"$T/e"
    prompt_ms "$T/e"
done >"$T/rwarm"
grep 'prompt cache:' "$T/e" | head -1
read -r cb cm < <(median <"$T/rcold"); read -r wb wm < <(median <"$T/rwarm")
echo "run prompt time: cold $cm ms (best $cb), prefix from --prompt-cache $wm ms (best $wb, load included): $(awk -v c="$cm" -v w="$wm" 'BEGIN { printf "%.1fx", c / w }') faster"
