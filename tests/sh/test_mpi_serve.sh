#!/usr/bin/env bash
# `mpirun -np 2 aerollm serve` (issue 20): three concurrent greedy completions (one pass for the three sequences,
# cut into micro-batches) give the texts of a one-process server; once a rank is killed, a request is answered
# 503 naming the dead rank within seconds, and /health says 503 too, while the server itself keeps answering.
# Skipped without mpirun, curl, or an aerollm built with MPI.
set -u
M=../shared/data/models
[ -d "$M" ] || { echo "skipped: ../shared/data not found"; exit 77; }
command -v mpirun >/dev/null || { echo "skipped: mpirun not installed (apt-get install openmpi-bin libopenmpi-dev)"; exit 77; }
command -v curl >/dev/null || { echo "skipped: curl not installed"; exit 77; }
A=${AEROLLM:-./aerollm}
# under `make test SAN=1`: Open MPI's own allocations outlive MPI_Finalize, which LeakSanitizer would report
[ "${SAN:-0}" = 1 ] && export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
work=$(mktemp -d /tmp/aero_mpi_serve.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
T=$M/stories260K.gguf
if mpirun -np 2 "$A" info "$T" 2>&1 | grep -q "built without MPI"; then echo "skipped: aerollm built without MPI"; exit 77; fi

port_of() { grep -o 'http://[^ ]*:[0-9]*' "$1" | head -1 | grep -o '[0-9]*$'; }
wait_up() { # log file; prints the port once /health answers
  local i port
  for i in $(seq 100); do
    port=$(port_of "$1")
    if [ -n "$port" ] && curl -s "localhost:$port/health" | grep -q ok; then echo "$port"; return 0; fi
    sleep 0.1
  done
  return 1
}
complete3() { # port, out prefix: three requests at once
  local i=0 p cp=()
  for p in "Once upon a time" "Lily wanted to" "The cat"; do
    i=$((i + 1))
    curl -s -m 30 "localhost:$1/v1/completions" -H 'content-type: application/json' \
      -d "{\"prompt\":\"$p\",\"max_tokens\":32,\"temperature\":0}" >"$2.$i" &
    cp+=($!)
  done
  wait "${cp[@]}"
}

"$A" serve -m "$T" --port 0 --parallel 3 -t 1 >"$work/one.log" 2>&1 &
pids+=($!)
port1=$(wait_up "$work/one.log") || { echo "FAIL: the one-process server did not start: $(tail -3 "$work/one.log")"; exit 1; }
complete3 "$port1" "$work/one"

mpirun --enable-recovery -np 2 bash -c 'exec -a aerollm_mpi_serve_test "$0" "$@"' "$A" serve -m "$T" --port 0 \
  --parallel 3 -t 1 >"$work/np.log" 2>&1 &
pids+=($!)
port2=$(wait_up "$work/np.log") || { echo "FAIL: the 2-rank server did not start: $(tail -5 "$work/np.log")"; exit 1; }
complete3 "$port2" "$work/np"
for i in 1 2 3; do
  a=$(grep -o '"text":"[^"]*"' "$work/one.$i") b=$(grep -o '"text":"[^"]*"' "$work/np.$i")
  [ -n "$a" ] || bad "one-process completion $i: $(head -c 200 "$work/one.$i")"
  [ "$a" = "$b" ] || bad "completion $i differs: one process $a, 2 ranks $b"
done

# kill rank 1: the next request is a 503 naming it within seconds, /health says 503, the server still answers
for p in $(pgrep -f aerollm_mpi_serve_test); do
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && kill -9 "$p"
done
t0=$(date +%s.%N)
code=$(curl -s -m 20 -o "$work/dead.json" -w '%{http_code}' "localhost:$port2/v1/completions" \
  -H 'content-type: application/json' -d '{"prompt":"Once","max_tokens":8,"temperature":0}')
took=$(echo "$(date +%s.%N) - $t0" | bc)
[ "$code" = 503 ] || bad "request after a rank died: HTTP $code, not 503: $(head -c 300 "$work/dead.json")"
grep -q "rank 1" "$work/dead.json" || bad "the 503 does not name rank 1: $(head -c 300 "$work/dead.json")"
[ "$(echo "$took < 10" | bc)" = 1 ] || bad "the 503 took $took s"
code=$(curl -s -m 5 -o "$work/health.json" -w '%{http_code}' "localhost:$port2/health")
[ "$code" = 503 ] || bad "/health after a rank died: HTTP $code, not 503"
exit $fail
