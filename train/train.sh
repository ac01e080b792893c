#!/bin/sh
# Reproduce AeroLLM's teacher + drafter from the corpus (GPU machine; about 8 minutes on one H100).
# Usage: train/train.sh [CORPUS_TAR_XZ] [OUTDIR]
# Writes OUTDIR/{tokenizer.json, aero-teacher-34M-Q8_0.gguf, aero-drafter-3M-F16.gguf, results.json,
# reference_logits.txt, samples.txt, train.log}. All settings are train.py's defaults (fixed seed 1337).
set -eu
CORPUS=${1:-../shared/data/corpus/corpus.tar.xz}
OUTDIR=${2:-train-out}
PYTHONUNBUFFERED=1 exec python3 "$(dirname "$0")/train.py" --corpus "$CORPUS" --out "$OUTDIR"
