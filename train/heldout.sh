#!/bin/sh
# Regenerate the held-out text that AeroLLM's bundled models never saw in training (train/README.md).
# Usage: train/heldout.sh [--small] OUTFILE [CORPUS_TAR_XZ]
#   full:    these members of corpus.tar.xz, byte for byte, concatenated in this order (927099 bytes):
#            tinystories/ts_v1_valid_prefix.txt, gutenberg/pg7256_The_Gift_of_the_Magi.txt,
#            gutenberg/pg1080_A_Modest_Proposal.txt, gutenberg/pg1952_1952_0_txt.txt,
#            gutenberg/pg41_The_Legend_of_Sleepy_Hollow.txt
#   --small: the first 65536 bytes of tinystories/ts_v1_valid_prefix.txt
# CORPUS_TAR_XZ defaults to ../shared/data/corpus/corpus.tar.xz beside the project root.
# Exits 2 if the corpus is missing, 1 if the result does not have the expected sha256.
set -eu
small=0
if [ "${1:-}" = "--small" ]; then small=1; shift; fi
out=${1:?usage: train/heldout.sh [--small] OUTFILE [CORPUS_TAR_XZ]}
root=$(cd "$(dirname "$0")/.." && pwd)
corpus=${2:-$root/../shared/data/corpus/corpus.tar.xz}
if [ ! -f "$corpus" ]; then echo "heldout.sh: corpus not found: $corpus" >&2; exit 2; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ts=tinystories/ts_v1_valid_prefix.txt
if [ $small = 1 ]; then
    tar -xJf "$corpus" -C "$tmp" "$ts"
    head -c 65536 "$tmp/$ts" > "$out"
    want=b43fab827af96eb643a8cb093cecc832a873dd53aa0e58002132683eca5ade11
else
    set -- "$ts" gutenberg/pg7256_The_Gift_of_the_Magi.txt gutenberg/pg1080_A_Modest_Proposal.txt \
        gutenberg/pg1952_1952_0_txt.txt gutenberg/pg41_The_Legend_of_Sleepy_Hollow.txt
    tar -xJf "$corpus" -C "$tmp" "$@"
    : > "$out"
    for f in "$@"; do cat "$tmp/$f" >> "$out"; done
    want=549aa2eb793a493b74ca1047999bb1e7201fd9f6925c1ce75c9c5f404d95369f
fi
got=$(sha256sum "$out" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then echo "heldout.sh: $out has sha256 $got, expected $want" >&2; exit 1; fi
