#!/usr/bin/env python3
"""Train AeroLLM's own teacher and drafter from corpus.tar.xz, export both to GGUF, evaluate the export.

Stages (all in one process, fixed seed):
  1. read the corpus, split off the held-out slice (see HELDOUT_* below and train/heldout.sh)
  2. byte-level BPE tokenizer (Hugging Face `tokenizers`, GPT-2 regex pre-tokenizer, <|endoftext|>)
  3. teacher: Llama, cross-entropy on the training stream
  4. export the teacher to GGUF (Q8_0, norms F32); reload the dequantized weights
  5. drafter: Llama, distilled from the exported teacher (KL(teacher || drafter))
  6. export the drafter to GGUF (F16, norms F32)
  7. evaluate both GGUF files in fp32 PyTorch: llama.cpp-style perplexity, reference logits, samples
"""
import argparse
import io
import json
import math
import os
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import gguf_writer as gw  # noqa: E402
from model import Config, Llama, gguf_tensor_map  # noqa: E402

EOT = "<|endoftext|>"
# Held-out slice: these archive members, concatenated byte for byte in this order (train/heldout.sh).
HELDOUT_FILES = [
    "tinystories/ts_v1_valid_prefix.txt",
    "gutenberg/pg7256_The_Gift_of_the_Magi.txt",
    "gutenberg/pg1080_A_Modest_Proposal.txt",
    "gutenberg/pg1952_1952_0_txt.txt",
    "gutenberg/pg41_The_Legend_of_Sleepy_Hollow.txt",
]
HELDOUT_SMALL_BYTES = 65536  # heldout-small: first 64 KiB of ts_v1_valid_prefix.txt
TEACHER_DESC = ("AeroLLM's own Llama teacher, trained from scratch on TinyStories samples (CDLA-Sharing-1.0) and "
                "public-domain Project Gutenberg books; see models/*.md")
TS_TRAIN = ["tinystories/ts_v1_train_prefix.txt", "tinystories/ts_v2gpt4_train_prefix.txt"]

LOG = None
T0 = time.time()


def log(*a):
    s = "[%7.1fs] " % (time.time() - T0) + " ".join(str(x) for x in a)
    print(s, flush=True)
    if LOG:
        LOG.write(s + "\n")
        LOG.flush()


# ----------------------------------------------------------------------------- data

def read_corpus(path):
    files = {}
    with tarfile.open(path, "r:xz") as tf:
        for m in tf.getmembers():
            if m.isfile():
                files[m.name] = tf.extractfile(m).read()
    return files


def split_corpus(files):
    for f in HELDOUT_FILES:
        assert f in files, "corpus lacks " + f
    heldout = b"".join(files[f] for f in HELDOUT_FILES).decode("utf-8")
    heldout_small = files[HELDOUT_FILES[0]][:HELDOUT_SMALL_BYTES].decode("utf-8")
    ts_docs, book_docs = [], []
    for name in sorted(files):
        if name in HELDOUT_FILES:
            continue
        text = files[name].decode("utf-8")
        if name in TS_TRAIN:
            ts_docs += [s.strip() for s in text.split(EOT) if s.strip()]
        elif name.startswith("gutenberg/") or name.startswith("gutenberg_extra/"):
            assert EOT not in text
            book_docs.append(text)
        else:
            raise SystemExit("unexpected corpus member " + name)
    return ts_docs, book_docs, heldout, heldout_small


class Tok:
    """The tokenizer as the GGUF metadata describes it: tokens (id order), merges, EOT id."""

    def __init__(self, tokens, merges, hf=None):
        self.tokens, self.merges, self.hf = tokens, merges, hf
        self.eot = tokens.index(EOT)
        self.py = bpe.BPE(tokens, merges)

    def encode_many(self, docs):
        if self.hf is not None:
            return [e.ids for e in self.hf.encode_batch(docs, add_special_tokens=False)]
        return [self.py.encode(d, parse_special=False) for d in docs]

    def decode(self, ids):
        return self.py.decode(ids)


def train_tokenizer(docs, vocab_size, out_dir):
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    except ImportError:
        log("tokenizers not installed: naive pure-Python BPE trainer (smoke tests only)")
        tokens, merges = bpe.train_small(docs, vocab_size)
        return Tok(tokens, merges)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                             special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(docs, trainer=tr)
    tk.save(os.path.join(out_dir, "tokenizer.json"))
    j = json.loads(tk.to_str())
    vocab = j["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    for a in j.get("added_tokens", []):
        if a["id"] >= len(tokens):
            tokens += [None] * (a["id"] + 1 - len(tokens))
        tokens[a["id"]] = a["content"]
    assert all(t is not None for t in tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    return Tok(tokens, merges, hf=tk)


# ----------------------------------------------------------------------------- export

def export_gguf(model, tok, path, qtype, name, description):
    c = model.c
    w = gw.GGUFWriter()
    w.add_string("general.architecture", "llama")
    w.add_string("general.name", name)
    w.add_string("general.description", description)
    w.add_u32("general.file_type", gw.FTYPE_MOSTLY_Q8_0 if qtype == gw.GGML_Q8_0 else gw.FTYPE_MOSTLY_F16)
    w.add_u32("llama.vocab_size", c.vocab_size)
    w.add_u32("llama.context_length", c.ctx)
    w.add_u32("llama.embedding_length", c.dim)
    w.add_u32("llama.block_count", c.n_layers)
    w.add_u32("llama.feed_forward_length", c.ffn_dim)
    w.add_u32("llama.attention.head_count", c.n_heads)
    w.add_u32("llama.attention.head_count_kv", c.n_kv_heads)
    w.add_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps)
    w.add_f32("llama.rope.freq_base", c.rope_base)
    w.add_u32("llama.rope.dimension_count", c.head_dim)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "gpt-2")
    w.add_array("tokenizer.ggml.tokens", gw.T_STRING, tok.tokens)
    w.add_array("tokenizer.ggml.token_type", gw.T_INT32, [3 if t == EOT else 1 for t in tok.tokens])
    w.add_array("tokenizer.ggml.merges", gw.T_STRING, tok.merges)
    w.add_u32("tokenizer.ggml.bos_token_id", tok.eot)
    w.add_u32("tokenizer.ggml.eos_token_id", tok.eot)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_bool("tokenizer.ggml.add_eos_token", False)
    for tname, p, is_norm in gguf_tensor_map(model):
        w.add_tensor(tname, p.detach().float().cpu().numpy(), gw.GGML_F32 if is_norm else qtype)
    w.write(path)
    return os.path.getsize(path)


def load_gguf(path, device):
    r = gw.GGUFReader(path)
    m = r.meta
    c = Config(vocab_size=len(m["tokenizer.ggml.tokens"]), dim=m["llama.embedding_length"],
               n_layers=m["llama.block_count"], n_heads=m["llama.attention.head_count"],
               n_kv_heads=m["llama.attention.head_count_kv"], ffn_dim=m["llama.feed_forward_length"],
               ctx=m["llama.context_length"], norm_eps=m["llama.attention.layer_norm_rms_epsilon"],
               rope_base=m.get("llama.rope.freq_base", 10000.0), tied="output.weight" not in r.tensors)
    model = Llama(c)
    names = [n for n, _, _ in gguf_tensor_map(model)]
    assert sorted(names) == sorted(r.tensor_order), (names, r.tensor_order)
    with torch.no_grad():
        for n, p, _ in gguf_tensor_map(model):
            a = torch.from_numpy(r.tensor(n))
            assert tuple(a.shape) == tuple(p.shape), (n, a.shape, p.shape)
            p.copy_(a)
    return model.to(device).eval(), r


# ----------------------------------------------------------------------------- training

class Batches:
    def __init__(self, ts, books, B, ctx, ts_frac, bos, device, seed):
        self.ts, self.books, self.B, self.ctx, self.bos = ts, books, B, ctx, bos
        self.n_ts = int(round(B * ts_frac))
        self.g = torch.Generator(device=device)
        self.g.manual_seed(seed)
        self.ar = torch.arange(ctx + 1, device=device)

    def next(self):
        parts = []
        for data, n in ((self.ts, self.n_ts), (self.books, self.B - self.n_ts)):
            if n:
                ix = torch.randint(len(data) - self.ctx - 1, (n,), generator=self.g, device=data.device)
                parts.append(data[ix[:, None] + self.ar])
        w = torch.cat(parts)
        x = w[:, :-1].clone()
        x[:, 0] = self.bos  # position 0 is always BOS, as in the perplexity evaluation
        return x, w[:, 1:]


def lr_at(progress, step, warmup, lr, min_ratio=0.1):
    if step < warmup:
        return lr * (step + 1) / warmup
    p = min(1.0, progress)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def make_opt(model, lr, wd, device):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    nodecay = [p for n, p in model.named_parameters() if p.dim() < 2]
    kw = {}
    if device.type == "cuda":
        kw["fused"] = True
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                              {"params": nodecay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95), **kw)


def autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=False)


def val_chunks(tokens, ctx, n, bos, device):
    """n evenly spaced ctx-token chunks of the held-out stream, BOS at position 0."""
    total = len(tokens) // ctx
    pick = np.linspace(0, total - 1, num=min(n, total)).round().astype(int)
    w = torch.tensor(np.stack([tokens[i * ctx:(i + 1) * ctx + 1] for i in pick if (i + 1) * ctx + 1 <= len(tokens)]),
                     dtype=torch.long, device=device)
    x = w[:, :-1].clone()
    x[:, 0] = bos
    return x, w[:, 1:]


@torch.no_grad()
def eval_ce(model, vx, vy, device, bs=32, amp=True):
    was_training = model.training
    model.eval()
    tot, n = 0.0, 0
    for i in range(0, len(vx), bs):
        with autocast(device) if amp else torch.autocast(device.type, enabled=False):
            lg = model(vx[i:i + bs])
        tot += F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), vy[i:i + bs].reshape(-1), reduction="sum").item()
        n += vy[i:i + bs].numel()
    model.train(was_training)
    return tot / n


@torch.no_grad()
def eval_distill(student, teacher, vx, device, bs=32):
    student.eval()
    kl, agree, n = 0.0, 0, 0
    for i in range(0, len(vx), bs):
        with autocast(device):
            t = teacher(vx[i:i + bs]).float()
            s = student(vx[i:i + bs]).float()
        tl, sl = F.log_softmax(t, -1), F.log_softmax(s, -1)
        kl += (tl.exp() * (tl - sl)).sum(-1).sum().item()
        agree += (t.argmax(-1) == s.argmax(-1)).sum().item()
        n += t.shape[0] * t.shape[1]
    student.train()
    return kl / n, agree / n


def train_loop(name, model, batches, steps, seconds, lr, warmup, wd, device, loss_fn, evaluate, eval_every,
               compile_model, clip=1.0, sched="cosine", decay_frac=0.2, patience=0, min_ratio=0.1):
    """AdamW training.

    sched "cosine": progress = max(step/steps, elapsed/seconds), cosine from lr to min_ratio*lr.
    sched "wsd" (warmup-stable-decay): constant lr until `steps` steps or `seconds` seconds or, with
    patience > 0, until the validation loss has not improved for `patience` evaluations; then a linear
    decay to min_ratio*lr over decay_frac * (steps so far) more steps.
    """
    model.train()
    opt = make_opt(model, lr, wd, device)
    step_fn = model
    if compile_model and hasattr(torch, "compile"):
        step_fn = torch.compile(model)
    hist = []
    best, since_best = None, 0
    t_start = time.time()
    t_first = None
    step = 0
    tokens = 0
    decay_start, decay_steps, stop_reason = None, 0, None
    while True:
        elapsed = time.time() - t_start
        if sched == "cosine":
            progress = max(step / steps, elapsed / seconds if seconds else 0.0)
            if progress >= 1.0:
                stop_reason = "steps" if step >= steps else "seconds"
                break
            cur = lr_at(progress, step, warmup, lr, min_ratio)
        else:
            if decay_start is None:
                why = ("steps" if step >= steps else "seconds" if (seconds and elapsed >= seconds) else
                       "plateau" if (patience and since_best >= patience) else None)
                if why:
                    decay_start, decay_steps, stop_reason = step, max(1, int(round(decay_frac * step))), why
                    log("%s: stable phase ends at step %d (%s); decaying over %d steps" % (
                        name, step, why, decay_steps))
            if decay_start is None:
                cur = lr * min(1.0, (step + 1) / warmup)
            else:
                k = step - decay_start
                if k >= decay_steps:
                    break
                cur = lr * (1.0 - (1.0 - min_ratio) * (k + 1) / decay_steps)
        for gparam in opt.param_groups:
            gparam["lr"] = cur
        x, y = batches.next()
        with autocast(device):
            loss = loss_fn(step_fn, x, y)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += x.numel()
        step += 1
        if step == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t_first = time.time() - t_start
            log("%s: first step (incl. compile) %.1fs" % (name, t_first))
        if step % eval_every == 0:
            lv = loss.item()
            ev = evaluate()
            el = time.time() - t_start
            if best is None or ev["val_loss"] < best - 1e-3:
                best, since_best = ev["val_loss"], 0
            else:
                since_best += 1
            rec = {"step": step, "tokens": tokens, "time_s": round(el, 1), "lr": cur, "train_loss": lv,
                   "grad_norm": float(gn)}
            rec.update(ev)
            hist.append(rec)
            log("%s step %d tok %.1fM %.0fs lr %.2e train %.4f %s  %.0f tok/s" % (
                name, step, tokens / 1e6, el, cur, lv, " ".join("%s %.4f" % kv for kv in ev.items()),
                tokens / max(1e-9, el - t_first)))
    if device.type == "cuda":
        torch.cuda.synchronize()
    el = time.time() - t_start
    ev = evaluate()
    hist.append(dict({"step": step, "tokens": tokens, "time_s": round(el, 1), "final": True}, **ev))
    log("%s done: %d steps, %.1fM tokens, %.1fs (%s); %s" % (name, step, tokens / 1e6, el, stop_reason, ev))
    return {"steps": step, "tokens": tokens, "seconds": el, "first_step_s": t_first, "history": hist,
            "final": ev, "schedule": sched, "stop_reason": stop_reason, "decay_start": decay_start,
            "decay_steps": decay_steps}


def bench(name, model, batches, loss_fn, device, n=8):
    """Time n steps eager and n steps compiled (after compile), forward+backward only."""
    out = {}
    for mode in ("eager", "compiled"):
        fn = model if mode == "eager" else torch.compile(model)
        t0 = time.time()
        for i in range(n + 2):
            if i == 2:
                torch.cuda.synchronize()
                t1 = time.time()
            x, y = batches.next()
            with autocast(device):
                loss = loss_fn(fn, x, y)
            loss.backward()
            model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        out[mode] = {"warm_s": round(t1 - t0, 2), "step_ms": round((time.time() - t1) / n * 1000, 1)}
    log("bench", name, out)
    return out


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def perplexity(model, tokens, ctx, bos, device, bs=16):
    """llama.cpp-style: consecutive ctx chunks, first token -> BOS, score the second half.

    Returns the brief's definition (targets at positions ctx/2 .. ctx-1, 256 per chunk) and llama.cpp's
    exact one (targets at ctx/2+1 .. ctx-1, 255 per chunk), with per-chunk mean NLLs.
    """
    n_chunks = len(tokens) // ctx
    t = torch.tensor(np.asarray(tokens[:n_chunks * ctx]), dtype=torch.long, device=device).view(n_chunks, ctx)
    half = ctx // 2
    nll_a, nll_b = [], []
    for i in range(0, n_chunks, bs):
        y = t[i:i + bs]
        x = y.clone()
        x[:, 0] = bos
        lp = F.log_softmax(model(x).float(), -1)  # (b, ctx, V)
        # logits at position p predict token p+1
        tgt = y[:, 1:]
        nll = -lp[:, :-1].gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # (b, ctx-1): nll[p] predicts token p+1
        nll_a.append(nll[:, half - 1:].double())   # tokens half .. ctx-1
        nll_b.append(nll[:, half:].double())       # tokens half+1 .. ctx-1
    a = torch.cat(nll_a)
    b = torch.cat(nll_b)
    return {
        "n_tokens_text": len(tokens), "n_chunks": n_chunks, "n_ctx": ctx,
        "brief": {"scored_tokens": a.numel(), "mean_nll": a.mean().item(), "ppl": math.exp(a.mean().item()),
                  "per_chunk_mean_nll": [round(v, 6) for v in a.mean(1).tolist()]},
        "llamacpp": {"scored_tokens": b.numel(), "mean_nll": b.mean().item(), "ppl": math.exp(b.mean().item())},
    }


def unigram_ppl(train_counts, tokens, ctx):
    """Unigram model fit on training tokens (add-one), scored on the same tokens as perplexity()."""
    p = (train_counts + 1.0) / (train_counts.sum() + len(train_counts))
    n_chunks = len(tokens) // ctx
    t = np.asarray(tokens[:n_chunks * ctx]).reshape(n_chunks, ctx)[:, ctx // 2:].reshape(-1)
    nll = -np.log(p[t]).mean()
    own = np.bincount(t, minlength=len(train_counts)).astype(np.float64)
    q = own / own.sum()
    own_nll = -(q[q > 0] * np.log(q[q > 0])).sum()
    return {"train_unigram_ppl": math.exp(nll), "heldout_self_unigram_ppl": math.exp(own_nll)}


@torch.no_grad()
def generate(model, ids, n, device, temp=0.0, seed=0, stop=None):
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    ids = list(ids)
    out = []
    for _ in range(n):
        x = torch.tensor([ids[-model.c.ctx:]], dtype=torch.long, device=device)
        lg = model(x)[0, -1].float()
        if temp == 0.0:
            nxt = int(lg.argmax())
        else:
            nxt = int(torch.multinomial(F.softmax(lg / temp, -1), 1, generator=g))
        ids.append(nxt)
        out.append(nxt)
        if stop is not None and nxt == stop:
            break
    return out


@torch.no_grad()
def spec_sim(teacher, drafter, prompt_ids, n_new, k, device):
    """Greedy chain speculation in PyTorch: mean tokens per teacher pass with k drafted tokens."""
    ids = list(prompt_ids)
    passes, made = 0, 0
    while made < n_new and len(ids) + k < teacher.c.ctx:
        d = generate(drafter, ids, k, device)
        x = torch.tensor([ids + d], dtype=torch.long, device=device)
        tl = teacher(x)[0].float().argmax(-1).tolist()
        base = len(ids) - 1
        acc = 0
        while acc < k and tl[base + acc] == d[acc]:
            acc += 1
        new = d[:acc] + [tl[base + acc]]
        ids += new
        made += len(new)
        passes += 1
    return made / max(1, passes)


# ----------------------------------------------------------------------------- sequence-level distillation

class MixedBatches:
    """Rows of teacher-generated text (a share of every batch) mixed into corpus batches."""

    def __init__(self, base, rows, n_gen, seed, device):
        self.base, self.rows, self.n_gen = base, rows, n_gen
        self.g = torch.Generator(device=device)
        self.g.manual_seed(seed)

    def next(self):
        x, y = self.base.next()
        if self.n_gen:
            ix = torch.randint(len(self.rows), (self.n_gen,), generator=self.g, device=self.rows.device)
            w = self.rows[ix]
            x[:self.n_gen], y[:self.n_gen] = w[:, :-1], w[:, 1:]
            x[:self.n_gen, 0] = self.base.bos
        return x, y


def seqkd_batches(args, res, teacher, base, ts_t, bk_t, bos, device):
    """Text the teacher writes itself from corpus prompts (8-64 tokens, half stories, half books), sampled at
    temperatures 0 / 0.7 / 1.0 with a KV cache (train_head.Teacher), for --seqkd-seconds."""
    import train_head  # noqa: E402 (it imports this file)
    t = time.time()
    T = train_head.Teacher(teacher)
    g = torch.Generator(device=device)
    g.manual_seed(args.seed + 3)
    rows, L, B = [], args.ctx + 1, 4 if args.smoke else 512
    L = min(L, teacher.c.ctx)  # the teacher's positions end at its context
    while time.time() - t < args.seqkd_seconds or not rows:
        P = int(torch.randint(8, 65, (1,), generator=g, device=device))
        parts = []
        for data, n in ((ts_t, B // 2), (bk_t, B - B // 2)):
            ix = torch.randint(len(data) - P - 1, (n,), generator=g, device=device)
            parts.append(data[ix[:, None] + torch.arange(P, device=device)])
        pr = torch.cat(parts)
        pr[:, 0] = bos
        temps = torch.tensor([0.0, 0.7, 1.0], device=device)[torch.arange(B, device=device) % 3]
        with autocast(device):
            rows.append(T.generate(pr, L - P, temps, g))
        if args.smoke:
            break
    rows = torch.cat(rows)
    if rows.shape[1] < args.ctx + 1:  # pad to the window with the corpus' own BOS-separated continuation
        rows = torch.cat([rows, torch.full((len(rows), args.ctx + 1 - rows.shape[1]), bos, device=device)], 1)
    n_gen = int(round(args.batch * args.seqkd_frac))
    res["seqkd"] = {"rows": len(rows), "tokens": rows.numel(), "seconds": time.time() - t, "rows_per_batch": n_gen}
    log("sequence-level distillation: %d teacher rows (%.2fM tokens, %.0fs), %d of %d rows per batch" % (
        len(rows), rows.numel() / 1e6, time.time() - t, n_gen, args.batch))
    return MixedBatches(base, rows, n_gen, args.seed + 5, device)


# ----------------------------------------------------------------------------- main

def train_teacher(args, res, tcfg, batches, vx, vy, tok, ts_t, bk_t, ts_stream, book_stream, ce_loss, device):
    """Stages 3 and 4: train the teacher, export it to Q8_0, reload the dequantized weights."""
    torch.manual_seed(args.seed)
    teacher = Llama(tcfg).to(device)
    tp = teacher.n_params()
    log("teacher config", tcfg.to_dict(), "params %.2fM" % (tp / 1e6))
    res["teacher_config"] = tcfg.to_dict()
    res["teacher_params"] = tp
    if args.bench and device.type == "cuda":
        res["bench_teacher"] = bench("teacher", teacher, batches, ce_loss, device)
        torch.manual_seed(args.seed)
        teacher = Llama(tcfg).to(device)
        batches = Batches(ts_t, bk_t, args.batch, args.ctx, args.ts_frac, tok.eot, device, args.seed)
    tr = train_loop("teacher", teacher, batches, args.teacher_steps, args.teacher_seconds, args.teacher_lr,
                    args.warmup, args.wd, device, ce_loss,
                    lambda: {"val_loss": eval_ce(teacher, vx, vy, device)}, args.eval_every, args.compile,
                    sched="wsd", decay_frac=args.decay_frac, patience=args.teacher_patience)
    res["teacher_train"] = tr
    epochs_ts = tr["tokens"] * args.ts_frac / len(ts_stream)
    epochs_bk = tr["tokens"] * (1 - args.ts_frac) / len(book_stream)
    res["teacher_train"]["epochs"] = {"tinystories": epochs_ts, "books": epochs_bk}
    log("teacher epochs: TinyStories %.1f, books %.1f" % (epochs_ts, epochs_bk))

    # 4. export teacher (Q8_0), reload the dequantized weights
    t = time.time()
    teacher.eval()
    tname = "%s-%.0fM-Q8_0.gguf" % (args.teacher_name, tp / 1e6)
    tpath = os.path.join(args.out, tname)
    sz = export_gguf(teacher, tok, tpath, gw.GGML_Q8_0, args.teacher_name, TEACHER_DESC)
    del teacher
    if device.type == "cuda":
        torch.cuda.empty_cache()
    teacher_q, _ = load_gguf(tpath, device)
    res["teacher_file"] = {"name": tname, "bytes": sz}
    res["timing"]["teacher_export_s"] = time.time() - t
    log("exported", tname, sz, "bytes")
    return teacher_q, tname, tpath, tp



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--ts-frac", type=float, default=0.05)
    ap.add_argument("--teacher", default="512,8,8,8,1408")
    ap.add_argument("--drafter", default="192,4,6,6,512")
    ap.add_argument("--teacher-steps", type=int, default=100000)
    ap.add_argument("--teacher-seconds", type=float, default=150, help="stable phase ends after this time")
    ap.add_argument("--teacher-lr", type=float, default=1e-3)
    ap.add_argument("--teacher-dropout", type=float, default=0.1)
    ap.add_argument("--drafter-steps", type=int, default=100000)
    ap.add_argument("--drafter-seconds", type=float, default=0)
    ap.add_argument("--drafter-lr", type=float, default=3e-3)
    ap.add_argument("--teacher-patience", type=int, default=4,
                    help="evaluations without val improvement that end the teacher's stable phase (0: off)")
    ap.add_argument("--decay-frac", type=float, default=0.25)
    ap.add_argument("--deadline", type=float, default=440,
                    help="seconds from start by which training must end (drafter time is cut to fit)")
    ap.add_argument("--eval-reserve", type=float, default=30)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--compile", type=int, default=1)
    ap.add_argument("--bench", action="store_true", help="time eager vs compiled steps first")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run on a slice (local test)")
    ap.add_argument("--teacher-name", default="aero-teacher")
    ap.add_argument("--drafter-name", default="aero-drafter")
    ap.add_argument("--teacher-gguf", default="",
                    help="distil the drafter from this existing teacher (its tokenizer too): no tokenizer or "
                         "teacher training (issue 22: a new drafter for the bundled teacher)")
    ap.add_argument("--seqkd-frac", type=float, default=0.0,
                    help="share of the drafter's rows taken from text the teacher generates itself "
                         "(sequence-level distillation; the loss stays the full-distribution KL)")
    ap.add_argument("--seqkd-seconds", type=float, default=60, help="time spent generating that text")
    args = ap.parse_args()

    global LOG
    os.makedirs(args.out, exist_ok=True)
    LOG = open(os.path.join(args.out, "train.log"), "w")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        log("device", torch.cuda.get_device_name(0), "torch", torch.__version__)
    res = {"args": vars(args), "timing": {}}

    # 1. corpus
    t = time.time()
    files = read_corpus(args.corpus)
    ts_docs, book_docs, heldout, heldout_small = split_corpus(files)
    if args.smoke:
        ts_docs = ts_docs[:60]
        book_docs = [b[:40000] for b in book_docs[:3]]
        heldout = heldout[:30000]
    log("corpus: %d TinyStories docs (%.1f MB), %d books (%.1f MB); heldout %d bytes, small %d bytes" % (
        len(ts_docs), sum(map(len, ts_docs)) / 1e6, len(book_docs), sum(map(len, book_docs)) / 1e6,
        len(heldout.encode()), len(heldout_small.encode())))
    res["timing"]["corpus_s"] = time.time() - t

    # 2. tokenizer
    t = time.time()
    if args.teacher_gguf:
        tr_ = gw.GGUFReader(args.teacher_gguf)
        hf = None
        try:
            from tokenizers import Tokenizer
            hf = Tokenizer.from_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models",
                                                  "aero-tokenizer.json"))
        except Exception as e:  # noqa: BLE001
            log("HF tokenizers unavailable (%s): pure-Python BPE" % e)
        tok = Tok(tr_.meta["tokenizer.ggml.tokens"], tr_.meta["tokenizer.ggml.merges"], hf=hf)
        del tr_
    else:
        tok = train_tokenizer(ts_docs + book_docs, args.vocab, args.out)
    res["timing"]["tokenizer_train_s"] = time.time() - t
    V = len(tok.tokens)
    log("tokenizer: %d tokens, %d merges, eot id %d (%.1fs)" % (V, len(tok.merges), tok.eot, time.time() - t))
    t = time.time()
    ts_ids = tok.encode_many(ts_docs)
    book_ids = tok.encode_many(book_docs)
    ho_ids = tok.encode_many([heldout])[0]
    hos_ids = tok.encode_many([heldout_small])[0]

    def stream(docs):
        out = []
        for d in docs:
            out.append(tok.eot)
            out.extend(d)
        return np.asarray(out, dtype=np.int64)

    ts_stream, book_stream = stream(ts_ids), stream(book_ids)
    res["timing"]["tokenize_s"] = time.time() - t
    res["data"] = {"ts_train_tokens": len(ts_stream), "book_train_tokens": len(book_stream),
                   "heldout_bytes": len(heldout.encode()), "heldout_tokens": len(ho_ids),
                   "heldout_small_bytes": len(heldout_small.encode()), "heldout_small_tokens": len(hos_ids),
                   "bytes_per_token_heldout": len(heldout.encode()) / len(ho_ids)}
    log("tokens: TinyStories %d, books %d, heldout %d, heldout-small %d (%.1fs)" % (
        len(ts_stream), len(book_stream), len(ho_ids), len(hos_ids), time.time() - t))
    # the GGUF tokens+merges must reproduce the trained tokenizer exactly
    t = time.time()
    chk_texts = [heldout_small, heldout[-20000:], book_docs[0][:20000], "Hello  world!\n\n  It's 2024 -- “quotes” ünïcödé 日本語 🙂\t\tx"]
    mism = 0
    for s, e in zip(chk_texts, tok.encode_many(chk_texts)):
        mine = tok.py.encode(s, parse_special=False)
        if mine != e:
            mism += 1
            k = next((i for i, (a, b) in enumerate(zip(mine, e)) if a != b), min(len(mine), len(e)))
            log("tokenizer MISMATCH at token %d: py %s hf %s" % (k, mine[max(0, k - 3):k + 5], e[max(0, k - 3):k + 5]))
    assert tok.decode(hos_ids) == heldout_small
    res["tokenizer_check"] = {"texts": len(chk_texts), "mismatches": mism}
    log("GGUF-metadata BPE vs trained tokenizer: %d/%d texts differ (%.1fs)" % (mism, len(chk_texts), time.time() - t))

    ts_t = torch.tensor(ts_stream, device=device)
    bk_t = torch.tensor(book_stream, device=device)
    counts = np.bincount(np.concatenate([ts_stream, book_stream]), minlength=V).astype(np.float64)

    def cfg_from(spec, tied, dropout=0.0):
        dim, nl, nh, nkv, ffn = (int(v) for v in spec.split(","))
        return Config(vocab_size=V, dim=dim, n_layers=nl, n_heads=nh, n_kv_heads=nkv, ffn_dim=ffn, ctx=args.ctx,
                      tied=tied, dropout=dropout)

    tcfg = cfg_from(args.teacher, tied=False, dropout=args.teacher_dropout)
    dcfg = cfg_from(args.drafter, tied=True)
    vx, vy = val_chunks(ho_ids, args.ctx, 96, tok.eot, device)
    batches = Batches(ts_t, bk_t, args.batch, args.ctx, args.ts_frac, tok.eot, device, args.seed)

    def ce_loss(m, x, y):
        lg = m(x)
        return F.cross_entropy(lg.float().view(-1, lg.shape[-1]), y.reshape(-1))

    # 3. teacher (or, with --teacher-gguf, the existing one: stages 3 and 4 are skipped)
    if args.teacher_gguf:
        teacher_q, _ = load_gguf(args.teacher_gguf, device)
        tp = teacher_q.n_params()
        tname, tpath = os.path.basename(args.teacher_gguf), args.teacher_gguf
        res["teacher_file"] = {"name": tname, "bytes": os.path.getsize(tpath), "given": True}
        res["teacher_params"] = tp
        log("teacher given: %s (%.2fM parameters)" % (tpath, tp / 1e6))
    else:
        teacher_q, tname, tpath, tp = train_teacher(args, res, tcfg, batches, vx, vy, tok, ts_t, bk_t, ts_stream,
                                                    book_stream, ce_loss, device)
    for p in teacher_q.parameters():
        p.requires_grad_(False)
    # 5. drafter, distilled from the exported teacher
    torch.manual_seed(args.seed + 1)
    drafter = Llama(dcfg).to(device)
    dp = drafter.n_params()
    log("drafter config", dcfg.to_dict(), "params %.2fM" % (dp / 1e6))
    res["drafter_config"] = dcfg.to_dict()
    res["drafter_params"] = dp
    teacher_fwd = torch.compile(teacher_q) if (args.compile and hasattr(torch, "compile")) else teacher_q

    def kd_loss(m, x, y):
        with torch.no_grad():
            tl = F.log_softmax(teacher_fwd(x).float(), -1)
        sl = F.log_softmax(m(x).float(), -1)
        return F.kl_div(sl.view(-1, sl.shape[-1]), tl.view(-1, tl.shape[-1]), log_target=True,
                        reduction="batchmean")

    dbatches = Batches(ts_t, bk_t, args.batch, args.ctx, args.ts_frac, tok.eot, device, args.seed + 1)
    if args.seqkd_frac > 0:
        dbatches = seqkd_batches(args, res, teacher_q, dbatches, ts_t, bk_t, tok.eot, device)
    if args.bench and device.type == "cuda":
        res["bench_drafter"] = bench("drafter", drafter, dbatches, kd_loss, device)

    def deval():
        kl, ag = eval_distill(drafter, teacher_q, vx, device)
        return {"val_kl": kl, "val_top1_agree": ag, "val_loss": eval_ce(drafter, vx, vy, device)}

    dsec = args.drafter_seconds
    if args.deadline:
        left = args.deadline - (time.time() - T0) - args.eval_reserve
        dsec = max(5.0, min(dsec, left) if dsec else left)
        log("drafter time budget %.0fs" % dsec)
    dr = train_loop("drafter", drafter, dbatches, args.drafter_steps, dsec, args.drafter_lr,
                    args.warmup, args.wd, device, kd_loss, deval, args.eval_every, args.compile)
    res["drafter_train"] = dr

    # 6. export drafter (F16)
    t = time.time()
    drafter.eval()
    dname = "%s-%.0fM-F16.gguf" % (args.drafter_name, dp / 1e6)
    dpath = os.path.join(args.out, dname)
    sz = export_gguf(drafter, tok, dpath, gw.GGML_F16, args.drafter_name,
                     TEACHER_DESC.replace("teacher", "drafter (distilled from aero-teacher)"))
    del drafter, teacher_fwd
    res["drafter_file"] = {"name": dname, "bytes": sz}
    res["timing"]["drafter_export_s"] = time.time() - t
    log("exported", dname, sz, "bytes")

    # 7. evaluate the exported files in fp32
    t = time.time()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    T, _ = load_gguf(tpath, device)
    D, _ = load_gguf(dpath, device)
    res["eval"] = {}
    for label, m in (("teacher", T), ("drafter", D)):
        r = {"heldout": perplexity(m, ho_ids, args.ctx, tok.eot, device),
             "heldout_small": perplexity(m, hos_ids, args.ctx, tok.eot, device)}
        vx2, vy2 = val_chunks(ho_ids, args.ctx, 10 ** 9, tok.eot, device)
        r["heldout_all_positions_mean_ce"] = eval_ce(m, vx2, vy2, device, amp=False)
        res["eval"][label] = r
        log("%s PPL heldout %.4f (llama.cpp exact %.4f; %d chunks), heldout-small %.4f (%d chunks), all-pos CE %.4f" % (
            label, r["heldout"]["brief"]["ppl"], r["heldout"]["llamacpp"]["ppl"], r["heldout"]["n_chunks"],
            r["heldout_small"]["brief"]["ppl"], r["heldout_small"]["n_chunks"], r["heldout_all_positions_mean_ce"]))
    res["eval"]["unigram"] = {"heldout": unigram_ppl(counts, ho_ids, args.ctx),
                              "heldout_small": unigram_ppl(counts, hos_ids, args.ctx)}
    log("unigram", res["eval"]["unigram"])
    vx2, _ = val_chunks(ho_ids, args.ctx, 10 ** 9, tok.eot, device)
    kl, ag = eval_distill(D, T, vx2, device)
    res["eval"]["drafter_vs_teacher"] = {"kl": kl, "top1_agree": ag,
                                         "expected_tokens_per_pass": {k: (1 - ag ** (k + 1)) / (1 - ag)
                                                                      for k in (1, 2, 3, 4, 6, 8)}}
    log("drafter vs teacher on heldout (fp32 exported): KL %.4f top-1 agreement %.4f" % (kl, ag))

    # reference logits and samples
    prompt = "Once upon a time"
    pids = [tok.eot] + tok.encode_many([prompt])[0]
    lines = ["# AeroLLM reference: PyTorch fp32 forward of the exported GGUF weights (Q8_0/F16 dequantized to f32)",
             "# prompt ids include BOS (tokenizer.ggml.add_bos_token = true; BOS = EOS = <|endoftext|> id %d)" % tok.eot,
             "prompt %s" % prompt,
             "prompt_ids %s" % " ".join(map(str, pids))]
    samples = []
    for label, m, fname in (("teacher", T, tname), ("drafter", D, dname)):
        x = torch.tensor([pids], dtype=torch.long, device=device)
        last = m(x)[0, -1].float().cpu().tolist()
        g = generate(m, pids, 32, device)
        lines += ["", "[%s] model %s" % (label, fname),
                  "last_logits_first32 %s" % " ".join("%.6f" % v for v in last[:32]),
                  "last_logits_argmax %d" % int(np.argmax(last)),
                  "greedy32_ids %s" % " ".join(map(str, g)),
                  "greedy32_text %s" % json.dumps(tok.decode(g))]
    with open(os.path.join(args.out, "reference_logits.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for p in ["Once upon a time", "Lily and Ben went to the park.", "It was a dark and stormy night",
              "The old man looked at the sea and"]:
        ids = [tok.eot] + tok.encode_many([p])[0]
        for label, m in (("teacher", T), ("drafter", D)):
            gg = generate(m, ids, 120, device, stop=tok.eot)
            gs = generate(m, ids, 120, device, temp=0.8, seed=args.seed, stop=tok.eot)
            samples.append({"model": label, "prompt": p, "greedy": tok.decode(gg), "t0.8": tok.decode(gs)})
    with open(os.path.join(args.out, "samples.txt"), "w") as f:
        for s in samples:
            f.write("=== %s | %s\n--- greedy:\n%s%s\n--- temp 0.8 seed %d:\n%s%s\n\n" % (
                s["model"], s["prompt"], s["prompt"], s["greedy"], args.seed, s["prompt"], s["t0.8"]))
    res["spec_sim"] = {}
    for k in (2, 4):
        res["spec_sim"]["greedy_k%d" % k] = float(np.mean([spec_sim(T, D, [tok.eot] + tok.encode_many([p])[0], 64, k,
                                                              device) for p in ["Once upon a time", "Tom had a red ball",
                                                                                "It was a dark and stormy night"]]))
    log("spec sim (tokens per teacher pass)", res["spec_sim"])
    res["timing"]["eval_s"] = time.time() - t
    res["timing"]["total_s"] = time.time() - T0
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    log("all done in %.1fs" % (time.time() - T0))


if __name__ == "__main__":
    main()
