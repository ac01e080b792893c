#!/usr/bin/env bash
# A prompt costs one read of the streamed weights, whatever its length against -b (the compute tile): aerollm
# run --stats on a synthetic model whose every layer is streamed, with a prompt of 3 tiles, reports ONE pass
# and the bytes of one pass (plus the prompt's embedding rows), the same as with one tile of the prompt's
# length; the speculative decoder prefills in one pass too. Greedy text does not depend on -b.
set -u
A=${AEROLLM:-build/aerollm}
[ -x "$A" ] || { echo "skipped: $A not built"; exit 77; }
T=$(mktemp -d /tmp/aero_test_prompt_pass.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
ok() { "$@" >"$T/out" 2>"$T/err" || { fail "$* (exit $?): $(tail -3 "$T/err")"; return 1; }; }

"$A" synth --arch llama --dim 256 --layers 4 --heads 4 --kv-heads 2 --ffn 512 --vocab 512 --type Q8_0 -q \
    -o "$T/m.gguf" || { echo "FAIL: synth"; exit 1; }
P="the$(printf ' the%.0s' $(seq 93))" # BOS + 95 words: 96 tokens, 3 tiles of 32
ok "$A" tokenize -m "$T/m.gguf" --ids -p "$P"
n=$(wc -w <"$T/out")
[ "$n" = 96 ] || fail "the prompt has $n tokens, want 96"

RUN=(run -m "$T/m.gguf" -p "$P" --mem 2304K -c 128 -n 1 --ignore-eos --temp 0 --stats)
# passes, MB read and MB streamed per pass from --stats
stats() {
    passes=$(sed -n 's/^stream: \([0-9]*\) passes, \([0-9.]*\) MB read.*/\1/p' "$T/err")
    read_mb=$(sed -n 's/^stream: \([0-9]*\) passes, \([0-9.]*\) MB read.*/\2/p' "$T/err")
    pass_mb=$(sed -n 's/.*), \([0-9.]*\) MB streamed per pass.*/\1/p' "$T/err")
}

ok "$A" "${RUN[@]}" -b 32 && stats
echo "prompt 96 tokens, -b 32, --mem 2304K (KV 256K): $passes passes, $read_mb MB read, $pass_mb MB streamed per pass"
cp "$T/out" "$T/text32"
[ "$passes" = 1 ] || fail "-b 32: $passes passes for a 96-token prompt, want 1"
grep -q '^stream: units ssssR' "$T/err" || fail "every layer should be streamed: $(grep '^stream: units' "$T/err")"
# one pass of the units plus 96 embedding rows (one 4 KiB read each), far below two passes
awk -v r="$read_mb" -v p="$pass_mb" 'BEGIN { exit !(p > 0 && r >= p && r < p + 0.5) }' ||
    fail "-b 32: read $read_mb MB, want one pass of $pass_mb MB plus the embedding rows"
b32=$read_mb

ok "$A" "${RUN[@]}" -b 96 && stats
[ "$passes" = 1 ] && [ "$read_mb" = "$b32" ] || fail "-b 96: $passes passes, $read_mb MB; -b 32 read $b32 MB"
cmp -s "$T/out" "$T/text32" || fail "-b 96 text differs from -b 32"
ok "$A" "${RUN[@]}" -b 7 && cmp -s "$T/out" "$T/text32" || fail "-b 7 text differs from -b 32"

# speculative decoding: the prompt but its last chunk (1..-b tokens) in one pass, the chunk with the first draft
ok "$A" run -m "$T/m.gguf" -p "$P" --mem 2304K -c 128 -n 1 --ignore-eos --temp 0 --stats -b 32 --draft ngram
grep -q 'target passes *1 prefill + 1 verify' "$T/err" ||
    fail "--draft ngram: $(grep 'target passes' "$T/err"), want 1 prefill + 1 verify"
stats
[ "$passes" = 2 ] || fail "--draft ngram: $passes passes, want 2 (prefill, first verify)"

[ $fails -eq 0 ] && echo "PASS test_prompt_pass" || { echo "$fails failure(s)"; exit 1; }
