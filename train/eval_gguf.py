#!/usr/bin/env python3
"""Evaluate an exported GGUF in fp32 PyTorch (CPU is fine), with the tokenizer from its own metadata.

  eval_gguf.py MODEL.gguf --ppl FILE      llama.cpp-style perplexity (see train.py perplexity())
  eval_gguf.py MODEL.gguf --prompt TEXT   last-position logits (first 32) and greedy 32-token ids
Independent of the GPU run: checks that a committed file reproduces train/reference_logits.txt.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import train as T  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ppl")
    ap.add_argument("--prompt")
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=0, help="only the first N chunks (as aerollm --chunks)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device("cpu")
    m, r = T.load_gguf(a.model, dev)
    tok = bpe.BPE(r.meta["tokenizer.ggml.tokens"], r.meta["tokenizer.ggml.merges"])
    bos = r.meta["tokenizer.ggml.bos_token_id"]
    with torch.no_grad():
        if a.prompt is not None:
            ids = [bos] + tok.encode(a.prompt, parse_special=False)
            print("prompt_ids", " ".join(map(str, ids)))
            last = m(torch.tensor([ids]))[0, -1].tolist()
            print("last_logits_first32", " ".join("%.6f" % v for v in last[:32]))
            g = T.generate(m, ids, a.n, dev)
            print("greedy%d_ids" % a.n, " ".join(map(str, g)))
            print("greedy_text", repr(tok.decode(g)))
        if a.ppl:
            text = open(a.ppl, encoding="utf-8").read()
            ids = tok.encode(text, parse_special=False)
            n_text = len(ids)
            if a.chunks:
                ids = ids[:a.chunks * m.c.ctx]
            res = T.perplexity(m, ids, m.c.ctx, bos, dev, bs=4)
            print("tokens %d chunks %d scored %d mean_nll %.6f ppl %.4f (llama.cpp exact: scored %d ppl %.4f)" % (
                n_text, res["n_chunks"], res["brief"]["scored_tokens"], res["brief"]["mean_nll"],
                res["brief"]["ppl"], res["llamacpp"]["scored_tokens"], res["llamacpp"]["ppl"]))


if __name__ == "__main__":
    main()
