#!/usr/bin/env bash
# Server benchmarks: see bench/server_bench.mjs.
#   bench/bench_server.sh         continuous batching over a streamed synthetic llama-1b shape (1, 4, 8 streams)
#   bench/bench_server.sh spec    issue 16: 1 and 8 streams, without and with --draft, on the bundled teacher
#                                 whose weights get 16 MiB (--mem 43M = 16 MiB weights + 20 MiB KV for 8 x 160
#                                 tokens + the 6.6 MiB drafter; the KV cache and drafter are counted inside --mem),
#                                 then, with MODEL_8B set, the 8B shape (Q4_K) at --mem 2.5G with n-gram drafts
set -u
if [ "${1:-}" = spec ]; then
    MODEL=models/aero-teacher-34M-Q8_0.gguf MEM=43M CTX=160 DRAFT=models/aero-drafter-3M-F16.gguf LEVELS=1,8 TOKENS=${TOKENS:-128} \
        node bench/server_bench.mjs || exit 1
    if [ -n "${MODEL_8B:-}" ]; then # a llama-8b-shape Q4_K GGUF (aerollm synth --preset llama-8b --type Q4_K ...)
        MODEL=$MODEL_8B MEM=2.5G CTX=160 DRAFT=ngram LEVELS=1,8 TOKENS=${TOKENS:-32} node bench/server_bench.mjs || exit 1
    fi
    exit 0
fi
exec node bench/server_bench.mjs
