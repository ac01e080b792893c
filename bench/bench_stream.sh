#!/usr/bin/env bash
# Layer streaming (issue 5). A synthetic llama-8B-shape Q4_K model (aerollm synth, ~4.5 GB, in a temporary
# folder deleted at the end) run with --mem 1G inside ../shared/tools/memlimit 1.5G (page cache counted):
#   - prefill of a 512-token prompt (one pass) and decode: pass time against the disk floor
#     (streamed bytes / disk bandwidth, the bandwidth measured by O_DIRECT reads of the same data in the same run,
#     just before and just after the decode), and against max(disk floor, compute);
#   - IO-only passes (acquire/release with no compute): the streamer alone against the disk floor;
#   - prefetch depth 1, 2, 4;
#   - the same model after `aerollm repack` (each layer one 4 KiB-aligned range);
#   - fully resident (no --mem, no memlimit) for comparison.
# Knobs: STREAM_BENCH_MODEL (use this GGUF instead of synthesizing), STREAM_BENCH_PROMPT (512),
# STREAM_BENCH_GEN (8), STREAM_BENCH_MEM (1G), STREAM_BENCH_LIMIT (1536M), STREAM_BENCH_RESIDENT (1: run it).
set -u
: "${AEROLLM:=./aerollm}"
MEMLIMIT=../shared/tools/memlimit
MODEL=${STREAM_BENCH_MODEL:-}
PROMPT=${STREAM_BENCH_PROMPT:-512}
GEN=${STREAM_BENCH_GEN:-8}
MEM=${STREAM_BENCH_MEM:-1G}
LIMIT=${STREAM_BENCH_LIMIT:-1536M}
RESIDENT=${STREAM_BENCH_RESIDENT:-1}
work=$(mktemp -d /tmp/aero_bench_stream.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ -z "$MODEL" ]; then
  free_kb=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
  if [ "${free_kb:-0}" -lt $((10 * 1024 * 1024)) ]; then
    echo "skipped: need 10 GB free in $work for the model and its repacked copy"; exit 0
  fi
  echo "synth: llama-8b Q4_K -> $work/llama8b-q4k.gguf"
  "$AEROLLM" synth --preset llama-8b --type Q4_K --quiet -o "$work/llama8b-q4k.gguf" || exit 1
  MODEL=$work/llama8b-q4k.gguf
fi

limit=("$MEMLIMIT" "$LIMIT")
if ! "$MEMLIMIT" 64M true 2>/dev/null; then
  echo "note: memlimit cannot make a memory cgroup here: streamed runs go without the $LIMIT limit"
  limit=()
fi

# Prints the figures of one `aerollm bench --json` line.
show() { # label json
  python3 - "$1" "$2" <<'EOF'
import json, sys
label, line = sys.argv[1], sys.argv[2]
try:
    j = json.loads(line)
except Exception:
    print(f"{label}: no result ({line[:200]})"); sys.exit(0)
gb = lambda b: b / 1e9
if j["streamed_bytes_per_pass"]:
    print(f"{label}: budget {gb(j['mem_budget']):.2f} GB: {j['pinned_units']} units pinned, {j['streamed_units']} streamed, "
          f"{gb(j['streamed_bytes_per_pass']):.2f} GB/pass through a {gb(j['window_bytes']):.2f} GB window, prefetch {j['prefetch']}, "
          f"{j['io_threads']} IO threads, {'O_DIRECT' if j['direct'] else 'buffered'}")
    print(f"  disk bw {j['disk_bw_gbs']:.2f} GB/s (before decode {j['disk_bw_before_gbs']:.2f}, after {j['disk_bw_after_gbs']:.2f}); "
          f"disk floor {j['decode_disk_floor_s']*1e3:.0f} ms/pass")
    if j.get("io_rate_passes"):
        print(f"  floor bw = best of probe {j['disk_bw_probe_gbs']:.2f} GB/s and the IO threads' rate over {j['io_rate_passes']} passes "
              f"(min {j['io_rate_min_gbs']:.2f}, median {j['io_rate_median_gbs']:.2f}, max {j['io_rate_max_gbs']:.2f} GB/s)")
    print(f"  prefill {j['prefill_tokens']} tokens: {j['prefill_s']:.1f} s = {j['prefill_tok_s']:.2f} tok/s in {j['prefill_passes']} pass(es), "
          f"disk floor {j['prefill_disk_floor_s']:.2f} s, waited for IO {j['prefill_io_wait_s']:.2f} s")
    print(f"  decode {j['decode_pass_s']*1e3:.0f} ms/pass = {j['decode_pass_over_disk_floor']:.2f} x disk floor; compute "
          f"{j['decode_compute_s']*1e3:.0f} ms/pass; pass / max(floor, compute) = {j['decode_pass_over_max_io_compute']:.2f}; "
          f"IO wait {j['decode_io_wait_s']*1e3:.0f} ms/token")
    print(f"  IO only {j['io_only_pass_s']*1e3:.0f} ms/pass = {j['io_only_over_disk_floor']:.2f} x disk floor; peak RSS {gb(j['peak_rss']):.2f} GB")
else:
    print(f"{label}: all resident ({gb(j['resident_bytes']):.2f} GB); memory bw {j['mem_bw_gbs']:.1f} GB/s, floor {j['decode_floor_s']*1e3:.0f} ms/token")
    print(f"  prefill {j['prefill_tokens']} tokens: {j['prefill_s']:.1f} s = {j['prefill_tok_s']:.2f} tok/s")
    print(f"  decode {j['decode_s_per_token']*1e3:.0f} ms/token = {j['decode_over_floor']:.2f} x floor; peak RSS {gb(j['peak_rss']):.2f} GB")
EOF
}

bench() { # label args...
  local label=$1; shift
  local out
  out=$("$@" 2> "$work/err.txt" | tail -1)
  show "$label" "$out"
  grep -h memlimit "$work/err.txt" | sed 's/^/  /'
}

echo "== streamed: --mem $MEM under memlimit $LIMIT, prompt $PROMPT, decode $GEN"
bench "streamed" "${limit[@]}" "$AEROLLM" bench -m "$MODEL" --mem "$MEM" -p "$PROMPT" -n "$GEN" --json

echo "== prefetch depth (decode only)"
for pf in 1 2 4; do
  bench "prefetch $pf" "${limit[@]}" "$AEROLLM" bench -m "$MODEL" --mem "$MEM" -p 1 -n 4 --prefetch "$pf" --json
done

echo "== repack"
if "$AEROLLM" repack "$MODEL" "$work/repacked.gguf" 2> "$work/repack.txt"; then
  tail -1 "$work/repack.txt"
  for rep in 1 2; do # alternate, the disk drifts
    bench "original #$rep" "${limit[@]}" "$AEROLLM" bench -m "$MODEL" --mem "$MEM" -p 1 -n 4 --json
    bench "repacked #$rep" "${limit[@]}" "$AEROLLM" bench -m "$work/repacked.gguf" --mem "$MEM" -p 1 -n 4 --json
  done
  rm -f "$work/repacked.gguf"
else
  echo "repack failed: $(tail -2 "$work/repack.txt")"
fi

if [ "$RESIDENT" = 1 ]; then
  echo "== resident (no --mem, no memlimit)"
  bench "resident" "$AEROLLM" bench -m "$MODEL" -p "$PROMPT" -n "$GEN" --json
fi
