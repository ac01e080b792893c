#!/usr/bin/env bash
# The GPU forward pass (src/model/forward_cuda.c) without a GPU: `make CUDA=emu` links it with a CPU emulation of
# the CUDA backend (tests/cuda/cuda_emu.c), so its wiring is checked everywhere: greedy text equal to the CPU
# path, every unit streamed through the two VRAM slots (the smallest --gpu-mem) bitwise equal to all resident,
# long prompts in chunks, embedding rows on the device or the host, the AERO_CUDA_PROFILE report, speculative
# chain and tree (KV keep on the device) and the draft head (its layer and projection on the device, planned inside
# --gpu-mem; drafts as the host layer's) equal to plain greedy, all-token
# logits (perplexity), MoE layers (FFN on the host), and the refusal without a device. The kernels themselves are checked on a GPU (test_cuda).
set -u
cd "$(dirname "$0")/../.."
B=${EMU_BUILD:-build-emu}
# The C objects are those of `make CUDA=1` (the same files and flags), shared with test_cuda_build.sh in its
# folder: one library compile for both variants. The two tests may run at once: one builds while the other waits.
OB=${CUDA_BUILD_DIR:-build-cuda}
mkdir -p "$OB"
if command -v flock >/dev/null 2>&1; then exec 9>"$OB/.lock"; flock 9; fi
out=$(make CUDA=emu BUILD="$B" OBJ="$OB" -j2 2>&1) || { echo "$out" | tail -20; echo "FAIL: make CUDA=emu"; exit 1; }
exec 9>&-
A=$B/aerollm
S=../shared/data/models/stories260K.gguf
TM=models/aero-teacher-34M-Q8_0.gguf
DM=models/aero-drafter-3M-F16.gguf
[ -f "$S" ] || { echo "skipped: $S missing"; exit 77; }
T=$(mktemp -d /tmp/aero_test_cuda_emu.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
P="Once upon a time"
gen() { local out=$1; shift; "$A" run -p "$P" --temp 0 "$@" > "$T/$out" 2> "$T/$out.err" || fail "run $* : $(tail -2 "$T/$out.err")"; }
same() { cmp -s "$T/$1" "$T/$2" || fail "$3: '$(head -c 200 "$T/$1")' vs '$(head -c 200 "$T/$2")'"; }

gen s_cpu -m "$S" -n 48 -c 256 --device cpu
gen s_gpu -m "$S" -n 48 -c 256 --device cuda
same s_cpu s_gpu "stories260K greedy: emulated GPU path differs from the CPU path"
grep -q "6 of 6 units resident" "$T/s_gpu.err" || fail "stories260K not all resident: $(cat "$T/s_gpu.err")"
mg=$("$A" run -m "$S" -p "$P" -n 1 -c 256 --device cuda --gpu-mem 4K 2>&1 | grep -oE 'at least [0-9]+ bytes' | grep -oE '[0-9]+')
[ -n "$mg" ] || fail "--gpu-mem 4K: no minimum named"
gen s_str -m "$S" -n 48 -c 256 --device cuda --gpu-mem "${mg:-1}"
grep -q "0 of 6 units resident.*streamed through 2 slots" "$T/s_str.err" || fail "not streamed: $(cat "$T/s_str.err")"
same s_gpu s_str "streamed differs from resident"
# embedding rows: looked up on the device when the budget has room (the default makes it), on the host with
# AERO_CUDA_HOST_EMBD=1 (the A/B switch): the same text
grep -q "embedding rows looked up on the GPU" "$T/s_gpu.err" || fail "resident: embedding not on the device: $(cat "$T/s_gpu.err")"
AERO_CUDA_HOST_EMBD=1 "$A" run -m "$S" -p "$P" -n 48 --temp 0 -c 256 --device cuda > "$T/s_hemb" 2> "$T/s_hemb.err"
grep -q "embedding rows looked up" "$T/s_hemb.err" && fail "AERO_CUDA_HOST_EMBD=1: embedding still on the device"
same s_gpu s_hemb "embedding rows on the host differ from the device lookup"
# graphs are on by default: the emulation has none, so the capture fails once and the pass runs plainly (same
# text as AERO_CUDA_GRAPHS=0, which never tries)
AERO_CUDA_GRAPHS=0 "$A" run -m "$S" -p "$P" -n 48 --temp 0 -c 256 --device cuda > "$T/s_plain" 2> "$T/s_plain.err"
same s_gpu s_plain "graphs on (capture refused, plain launches) vs AERO_CUDA_GRAPHS=0"
[ "$(grep -c 'no graph' "$T/s_gpu.err")" = 1 ] || fail "graph fallback: $(grep -i graph "$T/s_gpu.err")"
[ "$(grep -c 'no graph' "$T/s_plain.err")" = 0 ] || fail "AERO_CUDA_GRAPHS=0 tried a graph: $(grep -i graph "$T/s_plain.err")"
# AERO_CUDA_PROFILE: the same text, and a host/GPU breakdown per kind of pass at context end
AERO_CUDA_PROFILE=1 "$A" run -m "$S" -p "$P" -n 48 --temp 0 -c 256 --device cuda > "$T/s_prof" 2> "$T/s_prof.err"
same s_gpu s_prof "AERO_CUDA_PROFILE=1 changes the text"
grep -q "cuda profile (context end, 1-token passes: 47" "$T/s_prof.err" && grep -qE "^  host [0-9.]+ ms/pass = embed" "$T/s_prof.err" &&
    grep -qE "^  GPU  [0-9.]+ ms/pass = matmul" "$T/s_prof.err" &&
    grep -qE "^  detail: matmul: q/k/v [0-9.]+ o [0-9.]+ gate/up [0-9.]+ down [0-9.]+ other [0-9.]+ \| norm/rope/act: norm [0-9.]+ rope/kv [0-9.]+ prep [0-9.]+ act" "$T/s_prof.err" ||
    fail "AERO_CUDA_PROFILE=1 report: $(grep -A3 'cuda profile' "$T/s_prof.err")"
LP="Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day"
"$A" run -m "$S" -p "$LP" -n 24 --temp 0 -c 256 -b 7 --device cuda > "$T/l_gpu" 2>/dev/null
"$A" run -m "$S" -p "$LP" -n 24 --temp 0 -c 256 --device cpu > "$T/l_cpu" 2>/dev/null
same l_cpu l_gpu "prompt in chunks of 7"
"$A" perplexity -m "$S" -f models/aero-teacher-34M-Q8_0.md -c 128 --chunks 3 --device cuda > "$T/p_gpu" 2>&1
"$A" perplexity -m "$S" -f models/aero-teacher-34M-Q8_0.md -c 128 --chunks 3 --device cuda --gpu-mem "${mg:-1}" > "$T/p_str" 2>&1
a=$(grep -E '^\[1\]' "$T/p_gpu"); b=$(grep -E '^\[1\]' "$T/p_str")
[ -n "$a" ] && [ "$a" = "$b" ] || fail "perplexity streamed '$b' vs resident '$a'"
if [ -f "$TM" ] && [ -f "$DM" ]; then
    gen t_gpu -m "$TM" -n 20 -c 128 --device cuda
    gen t_spec -m "$TM" -n 20 -c 128 --device cuda --draft "$DM"
    gen t_tree -m "$TM" -n 20 -c 128 --device cuda --draft "$DM" --draft-tree 8
    same t_gpu t_spec "teacher: speculative differs from plain greedy"
    same t_gpu t_tree "teacher: tree speculative differs from plain greedy"
    # the draft head on the GPU: hidden states copied back, its layer (fc, norms, q/k/v/o, RoPE, attention over its
    # own KV cells with the tree's visibility, FFN) and the projection through the device's output head, in VRAM
    # planned inside --gpu-mem (resident, or the model streamed through a slot at the smallest --gpu-mem); greedy
    # text == plain == the CPU's, chain and trees; the drafts those of the host's layer (AERO_DRAFT_HEAD_HOST=1)
    HD=models/aero-draft-head-4M-F16.gguf
    if [ -f "$HD" ]; then
        gen t_cpu -m "$TM" -n 40 -c 128 --device cpu
        gen t_gpu40 -m "$TM" -n 40 -c 128 --device cuda
        same t_cpu t_gpu40 "teacher: emulated GPU differs from the CPU"
        # tag and options of each drafting mode; the fixed ones draft the same whatever the timings
        modes=("chain8:--draft-fixed --draft-max 8" "tree16:--draft-tree 16 --draft-fixed" "tree32:--draft-tree 32"
               "cost:--draft-policy cost")
        for mt in "${modes[@]}"; do
            tag=${mt%%:*} opts=${mt#*:}
            gen h_$tag -m "$TM" -n 40 -c 128 --device cuda --draft-head "$HD" $opts --stats
            same t_gpu40 h_$tag "teacher: --draft-head ($opts) on the GPU differs from plain greedy"
            grep -q "speculative decoding: draft head (layer on the GPU)" "$T/h_$tag.err" ||
                fail "--draft-head ($opts): the head's layer is not on the GPU: $(grep -E 'speculative|draft head' "$T/h_$tag.err")"
            AERO_DRAFT_HEAD_HOST=1 "$A" run -m "$TM" -p "$P" -n 40 --temp 0 -c 128 --device cuda --draft-head "$HD" $opts \
                --stats > "$T/hh_$tag" 2> "$T/hh_$tag.err" || fail "AERO_DRAFT_HEAD_HOST=1 $opts"
            same t_gpu40 hh_$tag "teacher: --draft-head ($opts) with the layer on the host differs from plain greedy"
            grep -q "speculative decoding: draft head, " "$T/hh_$tag.err" ||
                fail "AERO_DRAFT_HEAD_HOST=1: $(grep -E 'speculative' "$T/hh_$tag.err")"
        done
        # the same drafts as the host's layer (to a tolerance: F16 cells): accepted tokens within 10% in the fixed modes
        for tag in chain8 tree16; do
            a=$(grep -oE 'drafted +[0-9]+, accepted [0-9]+' "$T/h_$tag.err" | grep -oE '[0-9]+$')
            b=$(grep -oE 'drafted +[0-9]+, accepted [0-9]+' "$T/hh_$tag.err" | grep -oE '[0-9]+$')
            [ -n "$a" ] && [ -n "$b" ] && [ $(( (a - b) * (a - b) * 100 )) -le $(( b * b )) ] ||
                fail "$tag: the GPU head accepted ${a:-?} drafted tokens, the host's layer ${b:-?}"
        done
        # chains drafted on the device (the head's argmax per call in device memory, one copy back a chain): the
        # same drafts and acceptances as the host ranking each call's logits (AERO_DRAFT_HEAD_DEVCHAIN=0), greedy
        # (with and without --draft-p-min's cut) and sampled (the same text for the same seed); trees rank on the host
        grep -q "chain of 8, drafted on the device" "$T/h_chain8.err" ||
            fail "chain 8: not drafted on the device: $(grep -E 'speculative' "$T/h_chain8.err")"
        grep -q "drafted on the device" "$T/h_tree16.err" && fail "tree 16 says it was drafted on the device"
        dc_modes=("g8:--temp 0 --draft-fixed --draft-max 8" "pmin:--temp 0 --draft-fixed --draft-max 16 --draft-p-min 0.4"
                  "t07:--temp 0.7 --seed 5 --draft-fixed --draft-max 8"
                  "t1:--temp 1.0 --seed 9 --top-k 40 --top-p 0.9 --draft-fixed --draft-max 6" "adapt:--temp 0")
        for mt in "${dc_modes[@]}"; do
            tag=${mt%%:*} opts=${mt#*:}
            for e in 1 0; do
                AERO_DRAFT_HEAD_DEVCHAIN=$e "$A" run -m "$TM" -p "$P" -n 60 -c 192 --device cuda --draft-head "$HD" $opts \
                    --stats > "$T/dc${e}_$tag" 2> "$T/dc${e}_$tag.err" || fail "AERO_DRAFT_HEAD_DEVCHAIN=$e $opts"
            done
            grep -q "drafted on the device" "$T/dc1_$tag.err" || fail "$opts: chain not drafted on the device"
            grep -q "drafted on the device" "$T/dc0_$tag.err" && fail "AERO_DRAFT_HEAD_DEVCHAIN=0 $opts: still on the device"
            same dc1_$tag dc0_$tag "chain drafted on the device vs ranked on the host ($opts)"
            [ "$tag" = adapt ] && continue # the adaptive length follows timings
            a=$(grep -oE 'drafted +[0-9]+, accepted [0-9]+' "$T/dc1_$tag.err") b=$(grep -oE 'drafted +[0-9]+, accepted [0-9]+' "$T/dc0_$tag.err")
            [ -n "$a" ] && [ "$a" = "$b" ] || fail "$opts: device chain '$a', host-ranked '$b'"
        done
        gen dcg -m "$TM" -n 60 -c 192 --device cuda
        same dcg dc1_g8 "chain drafted on the device differs from plain greedy"
        same dcg dc1_adapt "adaptive chain drafted on the device differs from plain greedy"
        # at T > 0 --draft-p-min cuts on the sampler's probabilities, which only the host has: ranked there
        "$A" run -m "$TM" -p "$P" -n 20 -c 192 --device cuda --draft-head "$HD" --temp 0.7 --draft-p-min 0.3 --stats \
            > "$T/dcp" 2> "$T/dcp.err" || fail "--temp 0.7 --draft-p-min 0.3"
        grep -q "draft head (layer on the GPU), chain" "$T/dcp.err" && ! grep -q "drafted on the device" "$T/dcp.err" ||
            fail "--temp 0.7 --draft-p-min: $(grep speculative "$T/dcp.err")"
        # chains of 8: most accepted (~80-90%, as on the CPU); without the device's hidden states ~10%
        da=$(grep -oE 'drafted +[0-9]+, accepted [0-9]+' "$T/h_chain8.err" | grep -oE '[0-9]+' | tr '\n' ' ')
        set -- $da
        [ -n "${2:-}" ] && [ $(( ${2:-0} * 2 )) -gt "${1:-0}" ] ||
            fail "--draft-head on the GPU: accepted ${2:-?} of ${1:-?} drafted tokens (hidden states or projection wrong)"
        # every head pass through the backend: its own profile, one pass per drafter call, ~20 backend calls each
        AERO_CUDA_PROFILE=1 "$A" run -m "$TM" -p "$P" -n 40 --temp 0 -c 128 --device cuda --draft-head "$HD" \
            --draft-tree 16 --draft-fixed --stats > "$T/h_prof" 2> "$T/h_prof.err"
        same t_gpu40 h_prof "AERO_CUDA_PROFILE=1 with a draft head changes the text"
        calls=$(grep -oE '[0-9]+ drafter passes' "$T/h_prof.err" | grep -oE '^[0-9]+')
        hp=$(grep -oE 'cuda draft head profile \(end, [a-z0-9-]+ passes: [0-9]+' "$T/h_prof.err" | grep -oE '[0-9]+$' | paste -sd+ | bc)
        [ -n "$calls" ] && [ "${hp:-0}" -ge "$calls" ] && [ "$calls" -gt 0 ] ||
            fail "draft head profile: ${hp:-no} device passes for ${calls:-?} head calls: $(grep -A1 'draft head profile' "$T/h_prof.err")"
        grep -E 'cuda draft head profile' "$T/h_prof.err" | grep -qE ' (1[5-9]|2[0-9]) backend calls/pass' ||
            fail "draft head profile: $(grep 'draft head profile' "$T/h_prof.err")"
        # the server: every request's decoder shares the head's weights in VRAM and takes KV cells of its own (given
        # back and reused by the next request); completions == the plain server's, two rounds of two at once
        if command -v curl > /dev/null; then
            for kind in plain head; do
                extra=(); [ $kind = head ] && extra=(--draft-head "$HD")
                "$A" serve -m "$TM" --port 0 --parallel 2 -c 256 --device cuda "${extra[@]}" > "$T/srv_$kind.log" 2>&1 &
                spid=$!
                port=
                for i in $(seq 150); do
                    port=$(grep -o 'http://[^ ]*:[0-9]*' "$T/srv_$kind.log" | head -1 | grep -o '[0-9]*$')
                    [ -n "$port" ] && curl -s "localhost:$port/health" | grep -q ok && break
                    port=; sleep 0.2
                done
                [ -n "$port" ] || fail "server ($kind) did not start: $(tail -3 "$T/srv_$kind.log")"
                for round in 1 2; do
                    cp=()
                    for q in 1 2; do
                        pr=$([ $q = 1 ] && echo "Once upon a time" || echo "Lily wanted to")
                        curl -s -m 120 "localhost:${port:-1}/v1/completions" -H 'content-type: application/json' \
                            -d "{\"prompt\":\"$pr\",\"max_tokens\":24,\"temperature\":0}" > "$T/srv_$kind.$round.$q" &
                        cp+=($!)
                    done
                    wait "${cp[@]}"
                done
                kill $spid; wait $spid 2> /dev/null
            done
            for f in 1.1 1.2 2.1 2.2; do
                a=$(grep -o '"text":"[^"]*"' "$T/srv_plain.$f") b=$(grep -o '"text":"[^"]*"' "$T/srv_head.$f")
                [ -n "$a" ] && [ "$a" = "$b" ] || fail "server completion $f: --draft-head $b, plain $a"
            done
            [ "$(grep -c 'draft=' "$T/srv_head.log")" = 4 ] || fail "server --draft-head: $(grep POST "$T/srv_head.log")"
            grep -q "layer runs on the host" "$T/srv_head.log" && fail "server: $(grep 'draft head' "$T/srv_head.log")"
        fi
        # AERO_CUDA_GRAPHS=1: a chain's head call as a graph; the emulation refuses the capture once, then plain calls
        AERO_CUDA_GRAPHS=1 "$A" run -m "$TM" -p "$P" -n 40 --temp 0 -c 128 --device cuda --draft-head "$HD" \
            --draft-fixed --draft-max 8 > "$T/h_graph" 2> "$T/h_graph.err"
        same t_gpu40 h_graph "AERO_CUDA_GRAPHS=1 with a draft head (capture refused, plain launches)"
        [ "$(grep -c 'no graph for the draft head' "$T/h_graph.err")" = 1 ] ||
            fail "AERO_CUDA_GRAPHS=1 draft head fallback: $(grep -i graph "$T/h_graph.err")"
        # the smallest --gpu-mem with the head: the model streamed through the slots, the head's layer in VRAM
        mgt=$("$A" run -m "$TM" -p x -n 1 -c 128 --device cuda --gpu-mem 4K --draft-head "$HD" 2>&1 | grep -oE 'at least [0-9]+ bytes' | grep -oE '[0-9]+')
        mg0=$("$A" run -m "$TM" -p x -n 1 -c 128 --device cuda --gpu-mem 4K 2>&1 | grep -oE 'at least [0-9]+ bytes' | grep -oE '[0-9]+')
        [ -n "$mgt" ] && [ -n "$mg0" ] && [ "$mgt" -gt $(( mg0 + 7000000 )) ] ||
            fail "--gpu-mem minimum with the draft head ${mgt:-?} vs ${mg0:-?} without: the head's layer is not planned"
        gen t_head_str -m "$TM" -n 40 -c 128 --device cuda --gpu-mem "${mgt:-1}" --draft-head "$HD" --stats
        same t_gpu40 t_head_str "teacher: --draft-head with the model streamed through the slots differs from plain greedy"
        grep -q "0 of 9 units resident" "$T/t_head_str.err" || fail "model not streamed: $(grep device: "$T/t_head_str.err")"
        grep -q "draft head (layer on the GPU)" "$T/t_head_str.err" || fail "smallest --gpu-mem: the head's layer left the GPU"
        # the embedding is planned beside the head's layer: drafted ids are looked up on the device, chains drafted there
        grep -q "embedding rows looked up on the GPU" "$T/t_head_str.err" && grep -q "drafted on the device" "$T/t_head_str.err" ||
            fail "smallest --gpu-mem: chains not drafted on the device: $(grep -E '^device:|speculative' "$T/t_head_str.err")"
        # one unit's room besides the slots: the output head, which the draft head reads every drafted token
        gen t_head_v -m "$TM" -n 40 -c 128 --device cuda --gpu-mem $(( ${mgt:-1} + 5000000 )) --draft-head "$HD" --stats
        same t_gpu40 t_head_v "teacher: --draft-head with the output head VRAM-resident differs from plain greedy"
        grep -qE "^stream: units [RsV]*[Rs]V " "$T/t_head_v.err" || fail "head not chosen first: $(grep -E '^stream: units' "$T/t_head_v.err")"
        grep -q "drafted on the device" "$T/t_head_v.err" || fail "minimum + 5 MB: chains not drafted on the device"
        # aerollm info --gpu-mem --draft-head: the same plan as the run's (the head's layer and its units)
        run_map=$(grep -oE '^stream: units [VRs]+' "$T/t_head_v.err" | awk '{print $3}' | tr Rs HD)
        info_map=$("$A" info "$TM" --no-tensors --gpu-mem $(( ${mgt:-1} + 5000000 )) -c 128 --draft-head "$HD" |
            grep -oE 'per unit: [VHD]+' | awk '{print $3}')
        [ -n "$run_map" ] && [ "$run_map" = "$info_map" ] || fail "info --gpu-mem --draft-head plan '$info_map' vs the run's '$run_map'"
        "$A" info "$TM" --no-tensors --gpu-mem 200M -c 128 --draft-head "$HD" | grep -q "a draft head's layer" ||
            fail "info --gpu-mem --draft-head does not show the head's layer"
    fi
    # three tiers: the first units in VRAM, the rest from host memory or disk; the VRAM-resident units are
    # neither held in host memory nor read per pass (V in the stream's unit map)
    gen t_tier -m "$TM" -n 20 -c 128 --device cuda --gpu-mem 112M --mem 16M --stats
    same t_gpu t_tier "teacher: VRAM + disk tiers differ from all resident"
    grep -qE "units V+s+ " "$T/t_tier.err" || fail "three tiers: $(grep -E '^stream: units' "$T/t_tier.err")"
    # aerollm info --gpu-mem prints the same plan without a device (V VRAM, H host memory, D disk)
    run_map=$(grep -oE '^stream: units [VRs]+' "$T/t_tier.err" | awk '{print $3}' | tr Rs HD)
    info_map=$("$A" info "$TM" --no-tensors --gpu-mem 112M --mem 16M -c 128 | grep -oE 'per unit: [VHD]+' | awk '{print $3}')
    [ -n "$run_map" ] && [ "$run_map" = "$info_map" ] || fail "info --gpu-mem plan '$info_map' vs the run's '$run_map'"
    gen t_host -m "$TM" -n 20 -c 128 --device cuda --gpu-mem 112M --mem 40M --stats
    same t_gpu t_host "teacher: VRAM + host tiers differ from all resident"
    grep -qE "units V+R+ .* 0.0 MB streamed per pass" "$T/t_host.err" || fail "host tier: $(grep -E '^stream: units' "$T/t_host.err")"
fi
# MoE layers: attention on the device, router and experts on the host (the expert cache under a small --mem);
# greedy text is the CPU's within a tolerance on these random models, so logits are compared through perplexity
for p in qwen2moe-tiny mixtral-tiny-split; do
    "$A" synth --preset $p --type Q8_0 -o "$T/$p.gguf" > /dev/null 2>&1 || { fail "synth $p"; continue; }
    M="$T/$p.gguf"
    gen ${p}_gpu -m "$M" -n 24 -c 128 --device cuda  # no --gpu-mem: the default budget leaves room for the slots
    mgm=$("$A" run -m "$M" -p x -n 1 -c 128 --device cuda --gpu-mem 4K 2>&1 | grep -oE 'at least [0-9]+ bytes' | grep -oE '[0-9]+')
    gen ${p}_str -m "$M" -n 24 -c 128 --device cuda --gpu-mem "${mgm:-1}" --mem 2M --stats
    same ${p}_gpu ${p}_str "$p: VRAM slots + expert cache differ from all resident"
    grep -q "experts" "$T/${p}_str.err" || fail "$p: no expert cache under --mem 2M: $(grep -i expert "$T/${p}_str.err")"
    gen ${p}_spec -m "$M" -n 24 -c 128 --device cuda --draft ngram
    same ${p}_gpu ${p}_spec "$p: speculative (ngram) differs from plain greedy"
    for dev in cpu cuda; do
        "$A" perplexity -m "$M" -f models/aero-teacher-34M-Q8_0.md -c 64 --chunks 2 --device $dev 2>&1 |
            grep -oE 'PPL = [0-9.]+' | awk '{print $3}' > "$T/${p}_ppl_$dev"
    done
    awk -v a="$(cat "$T/${p}_ppl_cpu")" -v b="$(cat "$T/${p}_ppl_cuda")" \
        'BEGIN { exit !(a > 0 && b > 0 && (a - b) / a < 0.01 && (b - a) / a < 0.01) }' ||
        fail "$p: perplexity on the device $(cat "$T/${p}_ppl_cuda") vs the CPU $(cat "$T/${p}_ppl_cpu")"
    "$A" info "$M" --no-tensors --gpu-mem 80M -c 128 | grep -q "MoE layers: attention on the GPU" ||
        fail "$p: info --gpu-mem says nothing of the MoE split"
done
# one MoE layer: the two slots outweigh every unit together, and the default VRAM budget still holds them
"$A" synth --preset qwen3moe-tiny --layers 1 --type Q8_0 -o "$T/moe1.gguf" > /dev/null 2>&1 || fail "synth moe1"
gen moe1 -m "$T/moe1.gguf" -n 8 -c 128 --device cuda
msg=$("$A" run -m "$S" -p x -n 1 --device cuda -ctk bf16 2>&1) && fail "-ctk bf16 on cuda: run succeeded"
echo "$msg" | grep -q "KV cache in F16" || fail "-ctk bf16 on cuda: '$msg'"
msg=$(AERO_CUDA_EMU_NODEV=1 "$A" run -m "$S" -p x -n 1 --device cuda 2>&1) && fail "no device: run succeeded"
echo "$msg" | grep -q "no CUDA device" || fail "no device: '$msg'"
[ $fails = 0 ] && echo "PASS: emulated GPU forward pass == CPU, streamed == resident, speculative == plain, MoE split"
exit $((fails > 0))
