#!/bin/sh
# Train the EAGLE-style draft head for the bundled teacher (GPU machine; about 5.5 minutes on one H100/H200,
# bounded by train_head.py --deadline).
# Usage: train/train_head.sh [CORPUS_TAR_XZ] [OUTDIR] [extra train_head.py options]
# Writes OUTDIR/{aero-draft-head-*.gguf, results_head.json, head_reference.txt, train_head.log}.
set -eu
CORPUS=${1:-../shared/data/corpus/corpus.tar.xz}
OUTDIR=${2:-train-head-out}
[ $# -ge 2 ] && shift 2 || shift $#
PYTHONUNBUFFERED=1 exec python3 "$(dirname "$0")/train_head.py" --corpus "$CORPUS" --out "$OUTDIR" "$@"
