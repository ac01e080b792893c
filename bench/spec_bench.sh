#!/usr/bin/env bash
# Speculative decoding (issue 22): tokens per verify pass and wall-clock speedup, for docs/perf/spec.md.
#
# Part 1, tokens per pass (exact counts; any machine, even a busy one): 5 prompts x 200 tokens (--ignore-eos),
#   temperatures 0 / 0.7 / 1.0 (seeds 1..5, the default top-k 40, top-p 0.95, min-p 0.05), for chains, best-first
#   trees and trees grown by cost (--draft-policy cost). Modes marked "measured" choose their sizes from timings,
#   so their counts move a little with the machine's load; every other mode is deterministic.
# Part 2, wall clock (a quiet machine only): the teacher streamed with 16 MiB for its weights (bundled pair;
#   --mem is that plus the KV cache and the resident drafter, so plain and speculative runs stream alike), plain
#   decoding against each speculative mode, greedy, 5 prompts x 200 tokens; speedup = plain s / speculative s.
# Pairs: bundled (the 34M teacher and its 3M drafter), stories (stories260K and its Q4_0 copy), head (the 34M
#   teacher and its draft head, train/train_head.sh's models/aero-draft-head-*.gguf; SPEC_BENCH_HEAD overrides;
#   SPEC_BENCH_DRAFTER replaces the bundled pair's drafter, to weigh a newly trained one).
# Knobs: SPEC_BENCH_PAIRS ("bundled stories"; add "head" once the head file exists), SPEC_BENCH_N (200), SPEC_BENCH_TEMPS ("0 0.7 1.0"),
#   SPEC_BENCH_PARTS ("tpp wall"), SPEC_BENCH_THREADS (2), SPEC_BENCH_DRAFT_THREADS (1), SPEC_BENCH_REPS (1: wall
#   runs per prompt; the median is kept), SPEC_BENCH_ONLY (an extended regex: only the modes whose name matches).
# Usage (from the repository root, after make): bash bench/spec_bench.sh [> figures.md]
set -u
: "${AEROLLM:=./aerollm}"
PAIRS=${SPEC_BENCH_PAIRS:-bundled stories}
N=${SPEC_BENCH_N:-200}
TEMPS=${SPEC_BENCH_TEMPS:-0 0.7 1.0}
PARTS=${SPEC_BENCH_PARTS:-tpp wall}
THREADS=${SPEC_BENCH_THREADS:-2}
DTHREADS=${SPEC_BENCH_DRAFT_THREADS:-1}
REPS=${SPEC_BENCH_REPS:-1}
PROMPTS=("Once upon a time" "One day, a little boy named Tim" "Lily and her mom went to the store"
  "The cat sat on the mat" "There was a big red ball")

# name|flags of each speculative mode (the drafter comes from the pair)
MODES=(
  "chain 4|--draft-fixed --draft-max 4"
  "chain 16|--draft-fixed --draft-max 16"
  "chain, adaptive (measured)|--draft-max 16"
  "tree 32, best-first|--draft-fixed --draft-tree 32"
  "tree 64, best-first|--draft-fixed --draft-tree 64"
  "cost, free (V=0, D=0; <= 128 nodes, depth <= 32)|--draft-policy cost --draft-costs 0,0 --draft-max 32"
  "cost, V=0.005 D=0.01 (GPU-like)|--draft-policy cost --draft-costs 0.005,0.01 --draft-max 32"
  "cost, V=0.02 D=0.05 (CPU, streamed)|--draft-policy cost --draft-costs 0.02,0.05 --draft-max 32"
  "cost (measured)|--draft-policy cost --draft-max 32"
)

if [ -n "${SPEC_BENCH_ONLY:-}" ]; then
  kept=()
  for m in "${MODES[@]}"; do grep -Eq -- "$SPEC_BENCH_ONLY" <<<"${m%%|*}" && kept+=("$m"); done
  MODES=("${kept[@]}")
fi

pair_files() { # pair -> TEACHER DRAFTER WEIGHT_BYTES (the teacher's share of --mem: 16M, 900K)
  case "$1" in
  bundled) echo "models/aero-teacher-34M-Q8_0.gguf ${SPEC_BENCH_DRAFTER:-models/aero-drafter-3M-F16.gguf} 16777216" ;;
  stories) echo "../shared/data/models/stories260K.gguf ../shared/data/models/stories260K-Q4_0.gguf 921600" ;;
  head) echo "models/aero-teacher-34M-Q8_0.gguf head:${SPEC_BENCH_HEAD:-models/aero-draft-head-4M-F16.gguf} 16777216" ;;
  *) echo "" ;;
  esac
}

# One generation: prints "passes generated drafted accepted gen_seconds" (zeros when it failed).
one() { # teacher drafter-or-empty temp seed prompt extra-flags...
  local t=$1 d=$2 temp=$3 seed=$4 p=$5
  shift 5
  local args=(run -m "$t" -p "$p" -n "$N" --ignore-eos --temp "$temp" --seed "$seed" -t "$THREADS" "$@")
  case $d in
  "") ;;
  head:*) args+=(--draft-head "${d#head:}" --stats) ;; # the head runs on the target's threads and memory
  *) args+=(--draft "$d" --draft-threads "$DTHREADS" --stats) ;;
  esac
  "$AEROLLM" "${args[@]}" 2>&1 >/dev/null | awk '
    /prefill \+ [0-9]+ verify/ { for (i = 1; i <= NF; i++) { if ($i == "verify;") v = $(i - 1); if ($i == "tokens)") g = substr($(i - 1), 2) } }
    /^  drafted/ { d = $2; sub(",", "", d); a = $4; sub(":", "", a) }
    /generated [0-9]+ tokens in/ { for (i = 1; i <= NF; i++) if ($i == "in" && $(i - 1) == "tokens") s = $(i + 1) }
    END { printf "%d %d %d %d %s\n", v, g, d, a, s == "" ? 0 : s }'
}

tpp() { # pair
  read -r T D _ <<<"$(pair_files "$1")"
  [ -r "$T" ] && [ -r "${D#head:}" ] || { echo "$1: $T or ${D#head:} missing, skipped"; return; }
  echo "### Tokens per verify pass: $1 pair ($(basename "$T"), drafter $(basename "$D")), ${#PROMPTS[@]} prompts x $N tokens"
  echo
  echo "| mode | temperature | verify passes | tokens per pass | fed per pass | acceptance |"
  echo "|---|---|---|---|---|---|"
  for m in "${MODES[@]}"; do
    local name=${m%%|*} flags=${m#*|}
    for temp in $TEMPS; do
      local P=0 G=0 Dr=0 A=0 k=0
      for p in "${PROMPTS[@]}"; do
        k=$((k + 1))
        # shellcheck disable=SC2086
        read -r v g d a _ <<<"$(one "$T" "$D" "$temp" "$k" "$p" $flags)"
        P=$((P + v)) G=$((G + g)) Dr=$((Dr + d)) A=$((A + a))
      done
      awk -v n="$name" -v t="$temp" -v P=$P -v G=$G -v D=$Dr -v A=$A 'BEGIN {
        if (P == 0) { printf "| %s | %s | failed | | | |\n", n, t; exit }
        printf "| %s | %s | %d | %.2f | %.2f | %.1f %% |\n", n, t, P, G / P, (P + D) / P, D ? 100 * A / D : 0 }'
    done
  done
  echo
}

# Median of the wall seconds of REPS runs.
median_s() { # teacher drafter temp seed prompt flags...
  local xs=()
  for _ in $(seq "$REPS"); do
    read -r _ _ _ _ s <<<"$(one "$@")"
    xs+=("$s")
  done
  printf "%s\n" "${xs[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

wall() { # pair
  read -r T D W <<<"$(pair_files "$1")"
  [ -r "$T" ] && [ -r "${D#head:}" ] || { echo "$1: $T or ${D#head:} missing, skipped"; return; }
  # --mem holds the KV cache and the resident drafter too: both runs give the teacher's weights the same W bytes
  local info kv dr MEM MEMD
  # (a draft head counts its weights and its state, the same as the run's: its own flag)
  local dflag=(--draft "$D")
  [ "${D#head:}" != "$D" ] && dflag=(--draft-head "${D#head:}")
  info=$("$AEROLLM" run -m "$T" "${dflag[@]}" -p x -n 1 -c 512 --mem 1G --stats -t 1 2>&1 | grep "memory budget")
  kv=$(sed -n 's/.*KV cache \([0-9.]*\) MB.*/\1/p' <<<"$info")
  dr=$(sed -n 's/.*draft \(model\|head\) \([0-9.]*\) MB.*/\2/p' <<<"$info")
  MEM=$(awk -v w="$W" -v kv="${kv:-0}" 'BEGIN { printf "%d", w + (kv + 0.05) * 1e6 }')
  MEMD=$(awk -v m="$MEM" -v d="${dr:-0}" 'BEGIN { printf "%d", m + (d + 0.05) * 1e6 }')
  echo "### Wall clock: $1 pair, teacher streamed with $((W / 1024)) KiB for its weights (-c 512: --mem $MEM, $MEMD with the drafter), greedy, ${#PROMPTS[@]} prompts x $N tokens, -t $THREADS, drafter -t $DTHREADS (load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  local plain=0
  for p in "${PROMPTS[@]}"; do
    plain=$(awk -v a="$plain" -v b="$(median_s "$T" "" 0 1 "$p" -c 512 --mem "$MEM")" 'BEGIN { print a + b }')
  done
  echo "| mode | generation seconds (sum of prompts) | ms per token | speedup over plain |"
  echo "|---|---|---|---|"
  awk -v s="$plain" -v n=$((N * ${#PROMPTS[@]})) 'BEGIN { printf "| plain decoding | %.2f | %.2f | 1.00x |\n", s, 1e3 * s / n }'
  for m in "${MODES[@]}"; do
    local name=${m%%|*} flags=${m#*|} tot=0 failed=0 b
    for p in "${PROMPTS[@]}"; do
      # shellcheck disable=SC2086
      b=$(median_s "$T" "$D" 0 1 "$p" -c 512 --mem "$MEMD" $flags)
      awk -v b="$b" 'BEGIN { exit !(b > 0) }' || failed=1 # a run that failed prints no time
      tot=$(awk -v a="$tot" -v b="$b" 'BEGIN { print a + b }')
    done
    awk -v m="$name" -v s="$tot" -v p="$plain" -v f=$failed -v n=$((N * ${#PROMPTS[@]})) 'BEGIN {
      if (f) { printf "| %s | failed (a run printed no time: rerun it by hand) | | |\n", m; exit }
      printf "| %s | %.2f | %.2f | %.2fx |\n", m, s, 1e3 * s / n, p / s }'
  done
  echo
}

for part in $PARTS; do
  for pair in $PAIRS; do
    case $part in
    tpp) tpp "$pair" ;;
    wall) wall "$pair" ;;
    esac
  done
done
