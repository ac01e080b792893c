#!/usr/bin/env bash
# Pipeline parallelism over MPI (issue 20): `mpirun -np 2` and `-np 3 --oversubscribe` on this machine give the
# greedy text of one process, resident and streamed, with and without a drafter (chain and tree), for a dense, a
# mixture-of-experts and a latent-attention model; the logits of
# every row of multi-sequence passes (cut into micro-batches, with a rollback) are bitwise those of one process;
# a rank killed mid-generation ends the job with a non-zero exit within seconds, with mpirun's message by
# default and with rank 0's own message (the heartbeats) under --enable-recovery, where a rank 0 that dies is
# noticed by the workers, which end the job. Skipped without mpirun or when aerollm was built without MPI.
set -u
M=../shared/data/models
[ -d "$M" ] || { echo "skipped: ../shared/data not found"; exit 77; }
command -v mpirun >/dev/null || { echo "skipped: mpirun not installed (apt-get install openmpi-bin libopenmpi-dev)"; exit 77; }
A=${AEROLLM:-./aerollm}
B=${BUILD:-build}
# Open MPI refuses root unless told; CI runs as root, a developer as a user: both work
# under `make test SAN=1`: Open MPI's own allocations outlive MPI_Finalize, which LeakSanitizer would report
[ "${SAN:-0}" = 1 ] && export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 # 3 ranks on 2 cores
MPIRUN=(mpirun --oversubscribe)
work=$(mktemp -d /tmp/aero_mpi.XXXXXX); [ -n "${KEEP:-}" ] && echo "work: $work"
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

T=$M/stories260K.gguf
D=$M/stories260K-Q4_0.gguf
if ! "${MPIRUN[@]}" -np 2 "$A" info "$T" >"$work/probe.txt" 2>&1; then
  grep -q "built without MPI" "$work/probe.txt" && { echo "skipped: aerollm built without MPI (make MPI=1)"; exit 77; }
  echo "FAIL: mpirun -np 2 aerollm info: $(tail -3 "$work/probe.txt")"; exit 1
fi

# greedy text: one process against 2 and 3 ranks
run_cmp() { # name, flags...
  local name=$1; shift
  # shellcheck disable=SC2068
  "$A" run -m "$T" -p "Once upon a time" -n 48 --temp 0 -t 1 $@ >"$work/one.txt" 2>"$work/one.err" ||
    { bad "$name: one process: $(tail -2 "$work/one.err")"; return; }
  for np in 2 3; do
    # shellcheck disable=SC2068
    timeout 60 "${MPIRUN[@]}" -np $np "$A" run -m "$T" -p "Once upon a time" -n 48 --temp 0 -t 1 --stats $@ \
      >"$work/np.txt" 2>"$work/np.err" || { bad "$name: -np $np: $(tail -3 "$work/np.err")"; continue; }
    grep -q "^pipeline   $np ranks" "$work/np.err" || bad "$name: -np $np: no pipeline line in --stats"
    cmp -s "$work/one.txt" "$work/np.txt" || bad "$name: -np $np: text differs from one process"
  done
}
run_cmp resident
run_cmp streamed -c 128 --mem 470K
run_cmp "draft chain" --draft "$D"
run_cmp "draft tree" --draft "$D" --draft-tree 12
run_cmp "draft streamed" -c 128 --mem 1200K --draft "$D" --draft-tree 12
# other architectures through the same pass: a mixture of experts (resident, and under --mem with the expert
# cache) and deepseek2's latent attention, synthesized here
for pm in qwen3moe-tiny:3M deepseek2-tiny:5M; do
  preset=${pm%:*}
  "$A" synth --preset $preset --quiet -o "$work/$preset.gguf" >/dev/null 2>&1 || { bad "synth $preset"; continue; }
  for mem in "" "--mem ${pm#*:}"; do
    # shellcheck disable=SC2086
    "$A" run -m "$work/$preset.gguf" -p "Once upon a time" -n 24 --temp 0 -t 1 -c 256 $mem >"$work/one.txt" \
      2>"$work/one.err" || { bad "$preset $mem: one process: $(tail -2 "$work/one.err")"; continue; }
    # shellcheck disable=SC2086
    timeout 60 "${MPIRUN[@]}" -np 2 "$A" run -m "$work/$preset.gguf" -p "Once upon a time" -n 24 --temp 0 -t 1 \
      -c 256 $mem >"$work/np.txt" 2>"$work/np.err" || { bad "$preset $mem: -np 2: $(tail -3 "$work/np.err")"; continue; }
    cmp -s "$work/one.txt" "$work/np.txt" || bad "$preset $mem: -np 2 text differs from one process"
  done
done
timeout 60 "${MPIRUN[@]}" -np 3 "$A" run -m "$work/qwen3moe-tiny.gguf" -p "Hi" -n 4 >/dev/null 2>"$work/few.err" &&
  bad "3 ranks for a 2-layer model succeeded"
grep -q "3 ranks for a model of 2 layers" "$work/few.err" || bad "3 ranks, 2 layers: $(tail -2 "$work/few.err")"

# --split: 2 shares for 2 ranks give the same text; 2 shares for 3 ranks are refused, naming the problem
"$A" run -m "$T" -p "Once upon a time" -n 24 --temp 0 -t 1 >"$work/one.txt" 2>/dev/null
timeout 60 "${MPIRUN[@]}" -np 2 "$A" run -m "$T" -p "Once upon a time" -n 24 --temp 0 -t 1 --split 0.3,0.7 --stats \
  >"$work/np.txt" 2>"$work/np.err" || bad "--split 0.3,0.7: $(tail -3 "$work/np.err")"
grep -q "layers \[0, 1) of 5" "$work/np.err" || bad "--split 0.3,0.7: rank 0 does not hold layer 0 alone"
cmp -s "$work/one.txt" "$work/np.txt" || bad "--split 0.3,0.7: text differs from one process"
timeout 60 "${MPIRUN[@]}" -np 3 "$A" run -m "$T" -p "Hi" -n 4 --split 0.3,0.7 >/dev/null 2>"$work/split.err" &&
  bad "--split with 2 shares for 3 ranks succeeded"
grep -q "3 positive shares" "$work/split.err" || bad "--split refusal lacks its reason: $(tail -2 "$work/split.err")"

# logits of every row, bitwise: three sequences per pass, micro-batches, a rollback, a -b 4 tile
cat >"$work/logits.c" <<'EOF'
#include <aerollm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
// One process or rank 0 of a pipeline: prints the greedy tokens of 3 sequences and a hash of all logits.
int main(int argc, char **argv) {
    aero_error err = {0};
    if (aero_pipeline_init(&argc, &argv, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    if (aero_pipeline_rank() > 0) return aero_pipeline_worker();
    aero_model_params mp;
    aero_model_params_default(&mp);
    mp.path = argv[1];
    mp.mem_budget = argc > 2 ? strtoull(argv[2], NULL, 10) : 0;
    mp.pipe_micro = argc > 3 ? atoi(argv[3]) : 0;
    mp.n_threads = 1;
    mp.pipeline = true;
    aero_model *m;
    aero_ctx *c;
    aero_ctx_params cp = {.n_ctx = 96, .n_seq = 3, .n_batch = 4};
    if (aero_model_load(&m, &mp, &err) || aero_ctx_new(&c, m, &cp, &err))
        return fprintf(stderr, "%s\n", err.msg), aero_pipeline_finish(1);
    int nv = aero_model_n_vocab(m), pos[3] = {0, 0, 0}, rows[3];
    int32_t last[3];
    aero_batch_buf *bb = aero_batch_buf_new(64);
    float *lg = malloc(sizeof(float) * nv * 64);
    uint64_t h = 1469598103934665603ull;
    for (int step = 0; step < 14; step++) {
        aero_batch_buf_clear(bb);
        for (int s = 0; s < 3; s++) {
            int n = step == 0 ? 3 + 4 * s : 1; // prompts of 3, 7 and 11 tokens, then one token each
            for (int i = 0; i < n; i++) {
                int32_t tok = step == 0 ? 1 + (s * 7 + i * 13) % (nv - 1) : last[s];
                rows[s] = aero_batch_buf_add(bb, tok, pos[s]++, s, step == 0 || i == n - 1);
            }
        }
        int n_rows = step == 0 ? 3 + 7 + 11 : 3;
        if (aero_decode(c, aero_batch_buf_get(bb), lg, &err))
            return fprintf(stderr, "%s\n", err.msg), aero_pipeline_finish(1);
        const unsigned char *p = (const unsigned char *)lg;
        for (size_t i = 0; i < sizeof(float) * (size_t)nv * n_rows; i++) h = (h ^ p[i]) * 1099511628211ull;
        for (int s = 0; s < 3; s++) {
            const float *l = lg + (size_t)rows[s] * nv;
            int best = 0;
            for (int j = 1; j < nv; j++) best = l[j] > l[best] ? j : best;
            last[s] = best;
            printf("%d%c", best, s == 2 ? '\n' : ' ');
        }
        if (step == 6) { // a rejected draft's rollback: sequence 1 forgets its last two tokens
            aero_kv_truncate(c, 1, pos[1] - 2);
            pos[1] -= 2;
        }
    }
    printf("hash %016llx\n", (unsigned long long)h);
    free(lg);
    aero_batch_buf_free(bb);
    aero_ctx_free(c);
    aero_model_free(m);
    return aero_pipeline_finish(0);
}
EOF
# shellcheck disable=SC2046
san=()
[ "${SAN:-0}" = 1 ] && san=(-fsanitize=address,undefined) # the library of `make test SAN=1` is instrumented
if ! cc -std=c11 -D_GNU_SOURCE -Iinclude "${san[@]}" -o "$work/logits" "$work/logits.c" "$B/libaero.a" -pthread -lm \
  -ljansson -lmicrohttpd -lpcre2-8 $(mpicc --showme:link 2>/dev/null) 2>"$work/cc.err"; then
  bad "the logits program does not build: $(head -5 "$work/cc.err")"
else
  for mem in 0 420000; do
    "$work/logits" "$T" $mem >"$work/l1.txt" 2>"$work/l1.err" || bad "logits, one process: $(cat "$work/l1.err")"
    for np in 2 3; do
      for micro in 0 1 3; do
        timeout 60 "${MPIRUN[@]}" -np $np "$work/logits" "$T" $mem $micro >"$work/ln.txt" 2>"$work/ln.err" ||
          { bad "logits -np $np mem $mem micro $micro: $(tail -3 "$work/ln.err")"; continue; }
        cmp -s "$work/l1.txt" "$work/ln.txt" || bad "logits -np $np --mem $mem micro $micro differ from one process"
      done
    done
  done
fi

# a rank killed mid-generation: the job ends within seconds, non-zero, saying which rank
kill_rank() { # rank to kill; the pids of the ranks are found by the rank in their environment
  local r=$1 p
  for p in $(pgrep -f "aerollm_mpi_kill_test"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$r"; then kill -9 "$p"; fi
  done
}
long=(run -m "$T" -p "Once upon a time" -n 1900 -c 2048 --ignore-eos --temp 0 -t 1)
for mode in default recovery rank0; do
  extra=() victim=2
  [ $mode != default ] && extra=(--enable-recovery)
  [ $mode = rank0 ] && victim=0
  # the rank's command line carries a marker so that only this test's processes are killed
  timeout 60 "${MPIRUN[@]}" "${extra[@]}" -np 3 bash -c \
    'exec -a aerollm_mpi_kill_test "$0" "$@"; ' "$A" "${long[@]}" >"$work/k.txt" 2>"$work/k.err" &
  job=$!
  sleep 1.5
  kill_rank $victim
  t0=$(date +%s.%N)
  wait $job
  rc=$?
  took=$(echo "$(date +%s.%N) - $t0" | bc)
  if [ $mode = default ]; then
    [ $rc -ne 0 ] || bad "killed rank ($mode): mpirun exited 0"
    grep -q "rank 2" "$work/k.err" || bad "killed rank ($mode): no message naming rank 2: $(tail -5 "$work/k.err")"
  elif [ $mode = recovery ]; then # Open MPI with --enable-recovery exits 0 whatever the ranks do: rank 0's own
    grep -q "rank 2 sent no heartbeat" "$work/k.err" || #       message and abort count
      bad "killed rank ($mode): rank 0 did not report it: $(tail -5 "$work/k.err")"
    grep -q "ending the job" "$work/k.err" || bad "killed rank ($mode): rank 0 did not end the job: $(tail -5 "$work/k.err")"
  else # rank 0 gone: the workers notice its silence and end the job instead of waiting for ever
    grep -q "rank 0 sent no heartbeat" "$work/k.err" ||
      bad "killed rank 0: no worker reported it: $(tail -5 "$work/k.err")"
  fi
  [ "$(echo "$took < 10" | bc)" = 1 ] || bad "killed rank ($mode): the job took $took s to end"
  pgrep -f aerollm_mpi_kill_test >/dev/null && bad "killed rank ($mode): ranks left running"
done

exit $fail
