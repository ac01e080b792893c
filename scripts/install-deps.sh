#!/usr/bin/env bash
# Installs what AeroLLM builds and tests with on Debian 12 (run as root or with sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends build-essential ca-certificates \
  libjansson-dev libmicrohttpd-dev libpcre2-dev clang libclang-rt-14-dev curl
# Open MPI: pipeline parallelism across machines (`mpirun -np N aerollm ...`, tests/sh/test_mpi*.sh); the build
# finds mpicc and links it (make MPI=0 builds without)
apt-get install -y -qq --no-install-recommends openmpi-bin libopenmpi-dev
# Node.js (>= 18) and npm run the oracle tests (tokenizers, templates, OpenAI client); use the system's if present.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends nodejs npm
fi
# Chromium drives the web page's test (tests/node/web.test.mjs) headless through playwright-core from npm, which
# uses this browser and downloads none.
apt-get install -y -qq --no-install-recommends chromium
