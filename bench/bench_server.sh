#!/usr/bin/env bash
# Server benchmark (continuous batching over a streamed model): see bench/server_bench.mjs.
set -u
exec node bench/server_bench.mjs
