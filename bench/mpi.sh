#!/usr/bin/env bash
# Pipeline parallelism over MPI (issue 20, docs/perf/mpi.md).
#   bash bench/mpi.sh           measure: one process with the whole --mem against two ranks on this machine with
#                               half of it each (and both fully resident): decode tok/s, prefill tok/s, bytes on the
#                               wire per token and rank 0's seconds in MPI per token (`aerollm bench --json`), then a
#                               batch of 8 requests with and without micro-batches (--pipe-micro 1 / 2);
#   bash bench/mpi.sh paper     the on-paper table: tokens/s of a 405B dense and a 671B MoE model on 2, 4 and 8
#                               machines of 64 GB with 10, 25 and 100 GbE, resident or streamed, with and without
#                               speculation and pipelining, from per-layer times measured here (or given) and the
#                               bytes each pass sends; says where the network is the floor.
# Knobs (measure): MPI_BENCH_MODEL (a GGUF; default: a synthetic llama-1b-shape Q4_K of 16 layers, ~0.6 GB, in a
# temporary folder), MPI_BENCH_MEM (the one process's --mem in bytes, default 80% of the model), MPI_BENCH_PROMPT (64),
# MPI_BENCH_GEN (32), MPI_BENCH_THREADS (1: each rank one thread, two ranks on two cores).
# Knobs (paper): MEM_BW (GB/s of one machine, default 50), DISK_BW (GB/s, default 3), PEAK_GFLOPS (default 1000:
# 16 cores at the ~65 GFLOPS per core our prefill reaches here, docs/perf/cpu.md), EFF (decode time / memory floor as
# `aerollm bench` measures it, default 1.25), LAT_US (per message, default 50), ACCEPT (tokens per verify pass with a
# drafter, default 3), DRAFT_S (drafter seconds per pass, default 0.02).
set -u
: "${AEROLLM:=./aerollm}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
work=$(mktemp -d /tmp/aero_bench_mpi.XXXXXX)
trap 'rm -rf "$work"' EXIT

paper() {
  python3 - <<'EOF'
import os
mem_bw = float(os.environ.get("MEM_BW", "50")) * 1e9
disk_bw = float(os.environ.get("DISK_BW", "3")) * 1e9
peak = float(os.environ.get("PEAK_GFLOPS", "1000")) * 1e9
eff = float(os.environ.get("EFF", "1.25"))
lat = float(os.environ.get("LAT_US", "50")) * 1e-6
accept = float(os.environ.get("ACCEPT", "3"))
draft_s = float(os.environ.get("DRAFT_S", "0.02"))
usable = 56e9  # of a 64 GB machine: the OS, the KV cache and the activations take the rest
bpw = 0.606    # bytes per weight of Q4_K_M (4.85 bits)
# params: all weights; dense = read by every token; routed = the routed experts' params a token reads (k of n per
# MoE layer), n_exp / k_exp their counts
models = {
    "405B dense (Llama 3.1 shape)": dict(d=16384, V=128256, params=405e9, dense=405e9, routed=0, n_exp=1, k_exp=1),
    "671B MoE (DeepSeek V3 shape)": dict(d=7168, V=129280, params=671e9, dense=16.6e9, routed=20.4e9, n_exp=256, k_exp=8),
}
links = {"10 GbE": 1.25e9, "25 GbE": 3.125e9, "100 GbE": 12.5e9}

def read_bytes(m, tokens):  # weight bytes one pass of `tokens` tokens reads (MoE: the union of routed experts)
    if not m["routed"]:
        return m["dense"] * bpw
    used = m["n_exp"] * (1 - (1 - 1 / m["n_exp"]) ** (m["k_exp"] * tokens))
    return (m["dense"] + m["routed"] / m["k_exp"] * used) * bpw

def stage(m, n, tokens):  # seconds one rank takes for a pass of `tokens` tokens over its 1/n of the layers
    per_rank = m["params"] * bpw / n
    held = min(1.0, usable / per_rank)
    b = read_bytes(m, tokens) / n
    t_mem = b * held * eff / mem_bw + b * (1 - held) / disk_bw
    t_cpu = tokens * 2 * (m["dense"] + m["routed"]) / n / peak
    return max(t_mem, t_cpu), held, t_mem >= t_cpu

def wire(m, rows, bw):  # one hop of `rows` hidden states, and the logits of `rows` rows back to rank 0
    return rows * (m["d"] * 4 + 16) / bw + lat, rows * m["V"] * 4 / bw + lat

print(f"assumed per machine: memory {mem_bw/1e9:.0f} GB/s, disk {disk_bw/1e9:.1f} GB/s, {peak/1e9:.0f} GFLOPS; "
      f"decode {eff:.2f} x the memory floor; {lat*1e6:.0f} us per message; {usable/1e9:.0f} GB of each 64 GB for "
      f"weights; Q4_K_M ({bpw*8:.2f} bits/weight); speculation {accept:.1f} tokens per verify pass of 9 rows, drafter "
      f"{draft_s*1e3:.0f} ms per pass; 8 streams = 8 server sequences decoding at once")
print()
for name, m in models.items():
    print(f"## {name}: {m['params']*bpw/1e9:.0f} GB of weights, {read_bytes(m, 1)/1e9:.1f} GB read per token")
    print()
    print("| machines | weights | link | 1 stream tok/s | + speculation | 8 streams, one batch | 8 streams, pipelined | wire per token | floor (pipelined) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (2, 4, 8):
        t1, held, mem_bound = stage(m, n, 1)
        kind = "resident" if held >= 1 else f"streamed ({(1-held)*100:.0f}% from disk)"
        for lname, bw in links.items():
            h1, l1 = wire(m, 1, bw)
            one = 1 / (n * t1 + (n - 1) * h1 + l1)
            tv, _, _ = stage(m, n, 9)
            h9, l9 = wire(m, 9, bw)
            spec = accept / (n * tv + (n - 1) * h9 + l9 + draft_s)
            t8, _, _ = stage(m, n, 8)
            h8, l8 = wire(m, 8, bw)
            batch = 8 / (n * t8 + (n - 1) * h8 + l8)
            mb = 8 / n  # n micro-batches in flight: one leaves every max(stage, link) seconds
            tm, _, mbound = stage(m, n, mb)
            hm, lm = wire(m, mb, bw)
            slowest = max(tm, hm, lm)
            piped = mb / slowest
            floor = "network" if slowest > tm else ("memory" if held >= 1 else "disk") if mbound else "compute"
            print(f"| {n} | {kind} | {lname} | {one:.3f} | {spec:.3f} | {batch:.3f} | {piped:.3f} | "
                  f"{((n-1)*h1 + l1)*1e3:.2f} ms | {floor} |")
    print()
    for lname, bw in links.items():
        _, l8 = wire(m, 8, bw)
        print(f"- {lname}: a pass whose rank stage is shorter than {l8*1e3:.1f} ms for 8 rows (their f32 logits, "
              f"{8*m['V']*4/1e6:.1f} MB) or {wire(m, 1, bw)[1]*1e3:.2f} ms for one row is network bound")
    print()
EOF
}

if [ "${1:-}" = paper ]; then
  paper
  exit 0
fi

MODEL=${MPI_BENCH_MODEL:-}
PROMPT=${MPI_BENCH_PROMPT:-64}
GEN=${MPI_BENCH_GEN:-32}
THREADS=${MPI_BENCH_THREADS:-1}
command -v mpirun >/dev/null || { echo "skipped: mpirun not installed (apt-get install openmpi-bin libopenmpi-dev)"; exit 0; }
if [ -z "$MODEL" ]; then
  echo "synth: llama-1b Q4_K, 16 layers -> $work/llama1b.gguf"
  "$AEROLLM" synth --preset llama-1b --type Q4_K --quiet -o "$work/llama1b.gguf" || exit 1
  MODEL=$work/llama1b.gguf
fi
bytes=$(stat -c %s "$MODEL")
MEM=${MPI_BENCH_MEM:-$((bytes * 8 / 10))}
HALF=$((MEM / 2))

# Prints the figures of one `aerollm bench --json` line.
show() { # label json
  python3 - "$1" "$2" <<'EOF'
import json, sys
label, line = sys.argv[1], sys.argv[2]
try:
    j = json.loads(line)
except Exception:
    print(f"{label}: no result ({line[:300]})"); sys.exit(0)
s = f"{label}: decode {j['decode_tok_s']:.2f} tok/s ({j['decode_s_per_token']*1e3:.1f} ms/token), prefill {j['prefill_tok_s']:.1f} tok/s"
s += f"; rank 0 streams {j['streamed_bytes_per_pass']/1e6:.0f} MB/pass, memory bw {j['mem_bw_gbs']:.1f} GB/s, floor {j['decode_floor_s']*1e3:.1f} ms"
if "pipe_ranks" in j:
    s += (f"\n    {j['pipe_ranks']} ranks, rank 0 has {j['pipe_rank0_layers']} of {j['n_layer']} layers; on the wire "
          f"{j['pipe_sent_bytes_per_token']/1e3:.1f} KB/token out, {j['pipe_recv_bytes_per_token']/1e3:.1f} KB/token back, "
          f"{j['pipe_messages_per_token']:.2f} messages/token; rank 0 in MPI {j['pipe_mpi_wait_s_per_token']*1e3:.2f} ms/token "
          f"(= the other ranks' compute + the wire)")
print(s)
EOF
}
bench() { # label, threads, launcher ("" or "mpirun -np 2"), extra flags
  local label=$1 t=$2 launcher=$3 extra=$4 out
  # shellcheck disable=SC2086
  out=$($launcher "$AEROLLM" bench -m "$MODEL" -p "$PROMPT" -n "$GEN" -t "$t" --json $extra 2>"$work/err.txt" | tail -1)
  show "$label" "$out"
  [ -n "$out" ] || sed 's/^/    /' "$work/err.txt" | grep -v '^ *$' | tail -3
}

echo "model $MODEL ($((bytes / 1000000)) MB), --mem $((MEM / 1000000)) MB for one process, $((HALF / 1000000)) MB per rank"
# the one process gets the threads of both ranks: the same cores either way
bench "one process, --mem $((MEM / 1000000))M, $((2 * THREADS)) threads" $((2 * THREADS)) "" "--mem $MEM"
bench "2 ranks, --mem $((HALF / 1000000))M each, $THREADS thread(s) each" "$THREADS" "mpirun -np 2" "--mem $HALF"
bench "one process, resident, $((2 * THREADS)) threads" $((2 * THREADS)) "" ""
bench "2 ranks, resident, $THREADS thread(s) each" "$THREADS" "mpirun -np 2" ""

# micro-batches: 8 requests in one batch job, the pass cut in 2 (rank 1 computes one half while rank 0 the other)
name=$(basename "$MODEL")
for i in $(seq 8); do
  echo "{\"custom_id\":\"r$i\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"$name\",\"prompt\":\"Once upon a time $i\",\"max_tokens\":32,\"temperature\":0}}"
done >"$work/in.jsonl"
for micro in 1 2; do
  rm -f "$work/out.jsonl"
  line=$(mpirun -np 2 "$AEROLLM" batch -m "$MODEL" "$work/in.jsonl" -o "$work/out.jsonl" -t "$THREADS" --parallel 8 \
    --pipe-micro $micro 2>&1 | grep "answered" | tail -1)
  echo "batch of 8, 2 ranks, --pipe-micro $micro: $line"
done
