#!/usr/bin/env bash
# Installs what AeroLLM builds and tests with on Debian 12 (run as root or with sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends build-essential ca-certificates \
  libjansson-dev libmicrohttpd-dev libpcre2-dev clang libclang-rt-14-dev curl
# Node.js (>= 18) and npm run the oracle tests (tokenizers, templates, OpenAI client); use the system's if present.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends nodejs npm
fi
# Chromium drives the web page's test (tests/node/web.test.mjs) headless through playwright-core from npm, which
# uses this browser and downloads none.
apt-get install -y -qq --no-install-recommends chromium
