#!/bin/sh
# Distil several drafter sizes for the bundled teacher at once on one GPU (issue 22 item 1; GPU machine, about
# 9 minutes): each size is its own train.py process (--teacher-gguf: no tokenizer or teacher stage) with
# sequence-level distillation mixed in, writing OUTDIR/<DIM,LAYERS,HEADS,KV,FFN>/ (the GGUF, results.json,
# train.log, log). Two processes share the GPU, so each gets about half the steps one alone would.
# Usage: train/train_drafters.sh CORPUS_TAR_XZ OUTDIR [DEADLINE_S] [SIZE ...]
#   default sizes: 192,4,6,6,512 (the current 3.3M shape) and 256,6,8,8,704 (about 6.9M); DEADLINE_S 470
# On the device: copy the corpus into .cache/corpus_tar (git-ignored) and carry it; see train/README.md.
set -u
[ $# -ge 2 ] || { echo "usage: $0 CORPUS_TAR_XZ OUTDIR [DEADLINE_S] [SIZE ...]" >&2; exit 2; }
CORPUS=$1 OUTDIR=$2
DEADLINE=${3:-470}
[ $# -ge 3 ] && shift 3 || shift $#
[ $# -gt 0 ] || set -- 192,4,6,6,512 256,6,8,8,704
[ -f "$CORPUS" ] || { echo "no corpus at $CORPUS" >&2; exit 2; }
HERE=$(dirname "$0")
pids=
for size in "$@"; do
    mkdir -p "$OUTDIR/$size"
    PYTHONUNBUFFERED=1 timeout $((DEADLINE + 50)) python3 "$HERE/train.py" --corpus "$CORPUS" --out "$OUTDIR/$size" \
        --teacher-gguf "$HERE/../models/aero-teacher-34M-Q8_0.gguf" --seqkd-frac 0.5 --seqkd-seconds 60 \
        --drafter "$size" --deadline "$DEADLINE" > "$OUTDIR/$size/log" 2>&1 &
    pids="$pids $!"
done
status=0
for p in $pids; do wait "$p" || status=1; done
for size in "$@"; do echo "== $size"; tail -3 "$OUTDIR/$size/log"; done
exit $status
