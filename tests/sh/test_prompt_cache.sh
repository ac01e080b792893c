#!/usr/bin/env bash
# Saved prompts (--prompt-cache): a run saves its prompt's KV cache after prefill; a later run in a new process
# whose prompt starts with the saved tokens loads it, prefills only the rest, and prints exactly the greedy text
# of an uninterrupted run: the bundled teacher with several cache types (one under a streaming budget, --mem
# 16M) and stories260K. A file of another model, of other cache types, a context too small for it, a truncated
# file and a damaged one are refused with a message naming the reason and a non-zero exit; --prompt-cache-ro
# never writes; no temporary file is left behind.
set -u
A=${AEROLLM:-build/aerollm}
[ -x "$A" ] || { echo "skipped: $A not built"; exit 77; }
TEACHER=models/aero-teacher-34M-Q8_0.gguf
STORIES=../shared/data/models/stories260K.gguf
[ -f "$TEACHER" ] && [ -f "$STORIES" ] || { echo "skipped: models missing"; exit 77; }
T=$(mktemp -d /tmp/aero_test_prompt_cache.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }

P1="Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. One day, she found a shiny red ball under a big tree."
P2="$P1 She picked it up and ran to her mom."
ntok() { "$A" tokenize -m "$1" --ids -p "$2" | wc -w; }
# the number of prompt tokens the run reused from the cache, from its stderr
reused() { sed -n 's/^prompt cache: .*: \([0-9]*\) of \([0-9]*\) prompt tokens reused, \([0-9]*\) to prefill$/\1 \2 \3/p' "$1"; }

# case NAME MODEL FLAGS...: uninterrupted P2; P1 saved; P2 from the cache (only the rest prefilled); P2 again
# (the whole prompt but its last token from the cache): all the same text.
case_() {
    local name=$1 model=$2; shift 2
    local C="$T/$name.kv" n1 n2
    n1=$(ntok "$model" "$P1"); n2=$(ntok "$model" "$P2")
    "$A" run -m "$model" -p "$P2" -n 24 --temp 0 --ignore-eos "$@" >"$T/ref" 2>"$T/err" ||
        { fail "$name: uninterrupted run: $(tail -2 "$T/err")"; return; }
    "$A" run -m "$model" -p "$P1" -n 4 --temp 0 --prompt-cache "$C" "$@" >/dev/null 2>"$T/err" ||
        { fail "$name: saving run: $(tail -2 "$T/err")"; return; }
    [ -s "$C" ] || { fail "$name: no cache file written"; return; }
    [ "$(reused "$T/err")" = "0 $n1 $n1" ] || fail "$name: first run: '$(reused "$T/err")', want 0 of $n1 reused"
    "$A" run -m "$model" -p "$P2" -n 24 --temp 0 --ignore-eos --prompt-cache "$C" "$@" >"$T/out" 2>"$T/err" ||
        { fail "$name: loading run: $(tail -2 "$T/err")"; return; }
    cmp -s "$T/ref" "$T/out" || fail "$name: text after loading the cache differs from the uninterrupted run"
    [ "$(reused "$T/err")" = "$n1 $n2 $((n2 - n1))" ] ||
        fail "$name: '$(reused "$T/err")', want $n1 of $n2 reused and $((n2 - n1)) prefilled"
    # the file now holds P2: all but its last token come from it
    "$A" run -m "$model" -p "$P2" -n 24 --temp 0 --ignore-eos --prompt-cache "$C" "$@" >"$T/out" 2>"$T/err" ||
        { fail "$name: second loading run: $(tail -2 "$T/err")"; return; }
    cmp -s "$T/ref" "$T/out" || fail "$name: text from the re-saved cache differs from the uninterrupted run"
    [ "$(reused "$T/err")" = "$((n2 - 1)) $n2 1" ] || fail "$name: re-saved: '$(reused "$T/err")', want $((n2 - 1)) reused"
    ls "$T" | grep -q '\.tmp\.' && fail "$name: a temporary file was left: $(ls "$T" | grep '\.tmp\.')"
    echo "$name: $n1 of $n2 prompt tokens from the cache, greedy text identical"
}

case_ teacher_f16 "$TEACHER"
case_ teacher_q8_0 "$TEACHER" -ctk q8_0 -ctv q8_0
case_ teacher_q4_0_q5_1_mem16M "$TEACHER" -ctk q4_0 -ctv q5_1 --mem 16M -c 256
case_ teacher_f32 "$TEACHER" --kv-f32
case_ stories_f16 "$STORIES"
case_ stories_bf16 "$STORIES" -ctk bf16 -ctv f32

# refusals: NAME EXPECTED-MESSAGE-PART COMMAND...
refuse() {
    local name=$1 want=$2; shift 2
    if "$@" >/dev/null 2>"$T/err"; then fail "$name: accepted"; return; fi
    grep -q -- "$want" "$T/err" && echo "$name: refused ($(grep -m1 -- "$want" "$T/err" | cut -c1-150))" ||
        fail "$name: message '$(tail -1 "$T/err")' does not say '$want'"
}
TC="$T/teacher_f16.kv"
refuse "another model" "saved for another model" "$A" run -m "$STORIES" -p "$P2" -n 2 --prompt-cache "$TC"
refuse "other cache types" "cache types K F16, V F16; this context uses K Q8_0" \
    "$A" run -m "$TEACHER" -p "$P2" -n 2 -ctk q8_0 --prompt-cache "$TC"
refuse "context too small" "more than this context's 16" "$A" run -m "$TEACHER" -p "Once" -c 16 -n 2 --prompt-cache "$TC"
size=$(stat -c %s "$TC")
head -c $((size - 100)) "$TC" >"$T/trunc.kv"
refuse "truncated" "truncated" "$A" run -m "$TEACHER" -p "$P2" -n 2 --prompt-cache "$T/trunc.kv"
head -c 100 "$TC" >"$T/trunc2.kv"
refuse "truncated header" "truncated" "$A" run -m "$TEACHER" -p "$P2" -n 2 --prompt-cache "$T/trunc2.kv"
flip() { # flip one byte of $1 at offset $2 into $3
    cp "$1" "$3"
    local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $(( (b ^ 0x5a) & 255 )))" | dd of="$3" bs=1 seek="$2" conv=notrunc status=none
}
flip "$TC" $((size - 1000)) "$T/rows.kv"
refuse "corrupt rows" "corrupt: the cached K/V rows" "$A" run -m "$TEACHER" -p "$P2" -n 2 --prompt-cache "$T/rows.kv"
flip "$TC" 170 "$T/toks.kv"
refuse "corrupt tokens" "corrupt: the token ids" "$A" run -m "$TEACHER" -p "$P2" -n 2 --prompt-cache "$T/toks.kv"
flip "$TC" 90 "$T/head.kv"
refuse "corrupt header" "corrupt: the header" "$A" run -m "$TEACHER" -p "$P2" -n 2 --prompt-cache "$T/head.kv"
echo "not a cache file" >"$T/text.kv"
refuse "not a cache file" "not an AeroLLM KV cache file" "$A" run -m "$TEACHER" -p "$P2" -n 2 --prompt-cache "$T/text.kv"
[ -f "$T/rows.kv" ] || fail "a refused file was removed"

# --prompt-cache-ro: reads, never writes
cp "$TC" "$T/ro.kv"
"$A" run -m "$TEACHER" -p "Once upon a time" -n 2 --prompt-cache "$T/ro.kv" --prompt-cache-ro >/dev/null 2>"$T/err" ||
    fail "--prompt-cache-ro: $(tail -1 "$T/err")"
cmp -s "$TC" "$T/ro.kv" || fail "--prompt-cache-ro changed the file"
"$A" run -m "$TEACHER" -p "Once upon a time" -n 2 --prompt-cache "$T/none.kv" --prompt-cache-ro >/dev/null 2>&1 ||
    fail "--prompt-cache-ro with no file should run"
[ -e "$T/none.kv" ] && fail "--prompt-cache-ro wrote a file"

# the GPU path keeps its own cache: refused up front (checked with the CPU emulation of the CUDA backend when
# tests/sh/test_cuda_emu.sh has built it)
EMU=${EMU_BUILD:-build-emu}/aerollm
if [ -x "$EMU" ]; then
    refuse "--device cuda" "not supported with --device cuda" \
        "$EMU" run -m "$TEACHER" --device cuda -p "$P1" -n 2 --prompt-cache "$T/gpu.kv"
    [ -e "$T/gpu.kv" ] && fail "--device cuda wrote a cache file"
fi

# chat: the first turn's prompt (system message and first message) is saved and reused
for i in 1 2; do
    echo "Tell me a story." | "$A" chat -m "$TEACHER" --system "You tell stories." -n 16 --temp 0 \
        --prompt-cache "$T/chat.kv" >"$T/chat$i" 2>"$T/cerr$i" || fail "chat run $i: $(tail -1 "$T/cerr$i")"
done
cmp -s "$T/chat1" "$T/chat2" || fail "chat: the answer from the cache differs"
grep -q 'prompt cache: .*: 0 of' "$T/cerr1" && grep -Eq 'prompt cache: .*: [1-9][0-9]* of [0-9]* prompt tokens reused, 1 prefilled' "$T/cerr2" ||
    fail "chat: reuse lines: $(grep -h 'prompt cache' "$T/cerr1" "$T/cerr2" | tr '\n' ' ')"

[ $fails -eq 0 ] && echo "PASS test_prompt_cache" || { echo "$fails failure(s)"; exit 1; }
