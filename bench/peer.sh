#!/usr/bin/env bash
# AeroLLM against llama.cpp (issue 21, item 1), side by side on the same GGUF files: synthetic models of a real
# shape (aerollm synth) per weight type; for each, resident decode and prefill of 128 and 512 tokens, AeroLLM
# (`aerollm bench --json`) and llama.cpp (bench/peer_llama.mjs through node-llama-cpp, CPU, mmap) alternating,
# PEER_RUNS runs each, medians, the same thread count; then the streamed decode of a larger model under
# `../shared/tools/memlimit` (AeroLLM with --mem, llama.cpp with its mmap, which thrashes). Prints the ratios
# AeroLLM / llama.cpp (> 1: AeroLLM faster) and the load average beside every figure: a figure taken beside
# another job is not one (llama.cpp's threads spin while waiting). Run it on a quiet machine.
#
#   bash bench/peer.sh          # Llama-3.2-1B shape, every type, 3 runs, then the streamed 8B parts: about an hour
#   PEER_STREAM_SHAPE=none bash bench/peer.sh   # the resident figures only: about 30 minutes
#   PEER_TYPES="Q4_0 Q4_K" PEER_RUNS=1 bash bench/peer.sh   # a quick look
#
# Knobs: PEER_SHAPE (synth preset of the resident runs: llama-1b; llama-8b for the issue's table),
# PEER_LAYERS (cut the preset to this many layers: faster, same per-layer shapes), PEER_TYPES ("Q4_0 Q4_K
# Q5_K Q6_K Q8_0 Q4_K_M"), PEER_THREADS (2), PEER_RUNS (3), PEER_GEN (32 decoded tokens), PEER_STREAM_SHAPE
# (llama-8b; "none" skips the streamed part), PEER_STREAM_TYPE (Q4_0), PEER_STREAM_LIMIT (3G),
# PEER_STREAM_MEM (2.5G), PEER_STREAM_GEN (8), PEER_TIMEOUT (seconds a llama.cpp run may take: 600; a streamed
# run that times out is not repeated),
# PEER_VERIFY_TYPE (Q4_K: the streamed model of the verification costs and of --draft ngram on a repetitive
# prompt, AeroLLM alone; "none" skips them),
# PEER_DIR (where the models go: a fresh temporary folder, deleted at the end), NODE_LLAMA_CPP (the package).
set -u
: "${AEROLLM:=./aerollm}"
SHAPE=${PEER_SHAPE:-llama-1b}
LAYERS=${PEER_LAYERS:-}
TYPES=${PEER_TYPES-Q4_0 Q4_K Q5_K Q6_K Q8_0 Q4_K_M} # empty: no resident figures
THREADS=${PEER_THREADS:-2}
RUNS=${PEER_RUNS:-3}
GEN=${PEER_GEN:-32}
STREAM_SHAPE=${PEER_STREAM_SHAPE:-llama-8b}
STREAM_TYPE=${PEER_STREAM_TYPE:-Q4_0}
STREAM_LIMIT=${PEER_STREAM_LIMIT:-3G}
STREAM_MEM=${PEER_STREAM_MEM:-2.5G}
STREAM_GEN=${PEER_STREAM_GEN:-8}
TIMEOUT=${PEER_TIMEOUT:-600}
MEMLIMIT=$(dirname "$0")/../../shared/tools/memlimit
[ -x "$MEMLIMIT" ] || MEMLIMIT=../shared/tools/memlimit
PEER_JS=$(dirname "$0")/peer_llama.mjs
work=${PEER_DIR:-$(mktemp -d /tmp/aero_peer.XXXXXX)}
[ -n "${PEER_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"

[ -x "$AEROLLM" ] || { echo "peer: $AEROLLM not built (make)"; exit 1; }
llama_ok=1
probe=$(node "$PEER_JS" -m /nonexistent.gguf 2>/dev/null | head -1)
case $probe in *skipped*) echo "peer: llama.cpp side skipped: $probe"; llama_ok=0 ;; esac

load() { cut -d' ' -f1 /proc/loadavg; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# A JSON field of one line (jq-free).
field() { python3 -c 'import json,sys
try: print(json.loads(sys.argv[1]).get(sys.argv[2], "nan"))
except Exception: print("nan")' "$1" "$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "n/a"}'; }

# Whether this synth writes the type (Q4_K_M comes with the mixes of another change).
synth_has() { "$AEROLLM" synth --help 2>&1 | grep -q -- "$1"; }

# Synthesizes SHAPE at TYPE into $work unless there (the path on stdout).
model_for() { # shape type
  local f="$work/$1-$2.gguf"
  if [ ! -s "$f" ]; then
    local extra=()
    [ -n "$LAYERS" ] && [ "$1" = "$SHAPE" ] && extra=(--layers "$LAYERS")
    "$AEROLLM" synth --preset "$1" --type "$2" "${extra[@]}" -t "$THREADS" --quiet -o "$f" >&2 || { rm -f "$f"; return 1; }
  fi
  echo "$f"
}

# One AeroLLM run: prints "prefill_tok_s decode_tok_s load".
aero_run() { # model n_prompt n_gen [extra args / prefix]
  local m=$1 p=$2 n=$3; shift 3
  local l out; l=$(load)
  out=$("$AEROLLM" bench -m "$m" -p "$p" -n "$n" -t "$THREADS" --json 2>/dev/null | tail -1)
  echo "$(field "$out" prefill_tok_s) $(field "$out" decode_tok_s) $l"
}
# One llama.cpp run: the same figures.
llama_run() { # model n_prompt n_gen
  local l out; l=$(load)
  out=$(timeout "$TIMEOUT" node "$PEER_JS" -m "$1" -p "$2" -n "$3" --threads "$THREADS" 2>/dev/null | tail -1)
  echo "$(field "$out" prefill_tok_s) $(field "$out" decode_tok_s) $l"
}

echo "peer: AeroLLM $("$AEROLLM" --version 2>/dev/null | head -1) vs llama.cpp (node-llama-cpp), $THREADS threads, $RUNS alternating runs, medians"
echo "peer: shape $SHAPE${LAYERS:+ cut to $LAYERS layers}; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load average now $(load)"
printf "%-7s %-13s %10s %10s %6s   %s\n" type figure AeroLLM llama.cpp ratio "load (aero runs / llama runs)"
for type in $TYPES; do
  if [ "$type" = Q4_K_M ] && ! synth_has Q4_K_M; then
    echo "$type    skipped: this aerollm synth cannot write the Q4_K_M mix yet (--type Q4_K_M)"
    continue
  fi
  m=$(model_for "$SHAPE" "$type") || { echo "$type    skipped: synth failed"; continue; }
  for p in 128 512; do
    a_pre=() a_dec=() a_load=() l_pre=() l_dec=() l_load=()
    n=$([ "$p" = 128 ] && echo "$GEN" || echo 1) # decode is measured once, beside the 128-token prefill
    for r in $(seq "$RUNS"); do
      read -r x y z < <(aero_run "$m" "$p" "$n")
      a_pre+=("$x") a_dec+=("$y") a_load+=("$z")
      if [ $llama_ok = 1 ]; then
        read -r x y z < <(llama_run "$m" "$p" "$n")
        l_pre+=("$x") l_dec+=("$y") l_load+=("$z")
      fi
    done
    ap=$(printf '%s\n' "${a_pre[@]}" | median) lp=$(printf '%s\n' "${l_pre[@]:-nan}" | median)
    printf "%-7s %-13s %10s %10s %6s   %s / %s\n" "$type" "prefill $p" "$ap" "$lp" "$(ratio "$ap" "$lp")" \
      "${a_load[*]}" "${l_load[*]:-}"
    if [ "$p" = 128 ]; then
      ad=$(printf '%s\n' "${a_dec[@]}" | median) ld=$(printf '%s\n' "${l_dec[@]:-nan}" | median)
      printf "%-7s %-13s %10s %10s %6s   %s / %s\n" "$type" "decode tok/s" "$ad" "$ld" "$(ratio "$ad" "$ld")" \
        "${a_load[*]}" "${l_load[*]:-}"
    fi
  done
  [ -n "${PEER_DIR:-}" ] || rm -f "$m"
done

if [ "$STREAM_SHAPE" = none ]; then exit 0; fi
echo "== streamed: $STREAM_SHAPE $STREAM_TYPE under memlimit $STREAM_LIMIT (AeroLLM --mem $STREAM_MEM; llama.cpp mmap)"
if ! "$MEMLIMIT" 64M true 2>/dev/null; then
  echo "skipped: memlimit cannot make a memory cgroup here"
  exit 0
fi
free_kb=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
if [ "${free_kb:-0}" -lt $((6 * 1024 * 1024)) ]; then echo "skipped: need 6 GB free in $work"; exit 0; fi
m=$(model_for "$STREAM_SHAPE" "$STREAM_TYPE") || { echo "skipped: synth failed"; exit 0; }
a_dec=() a_load=() l_dec=() l_load=()
llama_stream=$llama_ok
for r in $(seq "$RUNS"); do
  l=$(load)
  out=$("$MEMLIMIT" "$STREAM_LIMIT" "$AEROLLM" bench -m "$m" --mem "$STREAM_MEM" -p 16 -n "$STREAM_GEN" -t "$THREADS" --json 2>/dev/null | tail -1)
  a_dec+=("$(field "$out" decode_tok_s)") a_load+=("$l")
  if [ $llama_stream = 1 ]; then
    l=$(load)
    out=$(timeout "$TIMEOUT" "$MEMLIMIT" "$STREAM_LIMIT" node "$PEER_JS" -m "$m" -p 16 -n "$STREAM_GEN" --threads "$THREADS" 2>/dev/null | tail -1)
    l_dec+=("$(field "$out" decode_tok_s)") l_load+=("$l")
    [ "$(field "$out" decode_tok_s)" = nan ] && llama_stream=0 # timed out: once is enough
  fi
done
ad=$(printf '%s\n' "${a_dec[@]}" | median) ld=$(printf '%s\n' "${l_dec[@]:-nan}" | median)
printf "%-7s %-13s %10s %10s %6s   %s / %s\n" "$STREAM_TYPE" "streamed tok/s" "$ad" "$ld" "$(ratio "$ad" "$ld")" \
  "${a_load[*]}" "${l_load[*]:-}"
echo "(llama.cpp figures of nan: it did not finish within PEER_TIMEOUT=${TIMEOUT}s under the limit)"

# Verification on the streamed model (AeroLLM alone): the cost c(k) = t(k) / t(1) of one pass verifying k
# tokens (goals: c(16) <= 1.3, c(64) <= 2.5), and --draft ngram on a repetitive prompt against plain decoding.
VERIFY_TYPE=${PEER_VERIFY_TYPE:-Q4_K}
[ "$VERIFY_TYPE" = none ] && exit 0
[ "$VERIFY_TYPE" = "$STREAM_TYPE" ] || [ -n "${PEER_DIR:-}" ] || rm -f "$m"
echo "== verification: $STREAM_SHAPE $VERIFY_TYPE, --mem $STREAM_MEM under memlimit $STREAM_LIMIT, --draft ngram"
m=$(model_for "$STREAM_SHAPE" "$VERIFY_TYPE") || { echo "skipped: synth failed"; exit 0; }
rep="$work/repetitive.txt"
for i in $(seq 30); do echo "The little robot walked to the market and bought three red apples for its friend."; done > "$rep"
for r in $(seq "$RUNS"); do
  l=$(load)
  out=$("$MEMLIMIT" "$STREAM_LIMIT" "$AEROLLM" bench -m "$m" --mem "$STREAM_MEM" --draft ngram -f "$rep" -p 64 \
        -n "$((STREAM_GEN * 4))" -t "$THREADS" --json 2>/dev/null | tail -1)
  python3 - "$out" "$l" <<'EOF2'
import json, sys
try:
    j = json.loads(sys.argv[1])
except Exception:
    print(f"run failed: {sys.argv[1][:200]}"); sys.exit(0)
k, v = j["verify_k"], j["verify_s"]
c = {k[i]: v[i] / v[0] for i in range(len(k))}
print(f"c(16) = {c.get(16, float('nan')):.2f}, c(64) = {c.get(64, float('nan')):.2f} (t(1) = {v[0]*1e3:.0f} ms); "
      f"ngram: {j['measured_speedup']:.2f}x plain ({j['tokens_per_pass']:.2f} tokens per pass, identical {j['identical']}); "
      f"load {sys.argv[2]}")
EOF2
done
