#!/usr/bin/env python3
"""Train an EAGLE-style draft head for the bundled teacher and export it as GGUF (`aerollm --draft-head FILE`).

The head is one Llama decoder layer that drafts in the teacher's feature space (src/speculative/head.c is the
engine's side and documents the file format). At the token of position p its input is
fc([norm_h(f_{p-1}) ; norm_e(E(t_p))]), f the teacher's last hidden state (after its output norm: the row its
vocabulary projection reads) and E the teacher's own embedding; its output predicts f_p, and the teacher's own
output matrix turns that into the logits of t_{p+1}. While drafting, positions the teacher has not verified use
the head's own predictions as f, so training also runs a second step that feeds the first step's predictions
back (EAGLE-3's "training-time test", simplified: every position of the second step reads predicted features).

Stages, one process, fixed seed, ending before --deadline seconds:
  1. load the teacher GGUF (dequantized, frozen) and its tokenizer from the file's metadata
  2. read the corpus (the teacher's training split, train.py's split) for prompts and real-text windows
  3. teacher-generated text: batched KV-cached sampling from corpus prompts at temperatures 0 / 0.7 / 1.0
     (sequence-level data: what the teacher itself writes, which is what speculation has to predict)
  4. train the head: KL(teacher || head) on the next token + smooth-L1 on the predicted feature, two steps
  5. export models/aero-draft-head-*.gguf (F16 matrices, F32 norms) with the teacher's identity
  6. evaluate on held-out text: top-1 agreement at draft depth 1 and 2, and greedy chain speculation simulated
     in PyTorch (tokens per teacher pass), written to results_head.json

  train/train_head.sh [CORPUS_TAR_XZ] [OUTDIR]     # the one command; about 5 minutes on one H100/H200
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import gguf_writer as gw  # noqa: E402
import train as TR  # noqa: E402
from model import Block, Config, RMSNorm, apply_rope, rope_tables  # noqa: E402

ARCH = "aero-draft-head"
T0 = time.time()
LOG = None


def log(*a):
    s = "[%7.1fs] " % (time.time() - T0) + " ".join(str(x) for x in a)
    print(s, flush=True)
    if LOG:
        LOG.write(s + "\n")
        LOG.flush()


def vocab_hash(tokens):
    """FNV-1a 64 over every token string (UTF-8) followed by a zero byte: aero_spec_head_vocab_hash."""
    h = 1469598103934665603
    for t in tokens:
        for b in t.encode("utf-8") + b"\0":
            h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


# ----------------------------------------------------------------------------- teacher

def attend(q, k, v, mask=None):
    """SDPA, or its definition where torch predates it (the CPU smoke test's Debian torch 1.13)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf"))
    return att.softmax(-1) @ v


class Teacher:
    """The frozen teacher: features (after the output norm) and logits, and KV-cached sampling."""

    def __init__(self, model):
        self.m = model
        self.c = model.c
        self.W = model.out.weight if model.out is not None else model.tok_emb.weight

    @torch.no_grad()
    def feats(self, x):
        m = self.m
        h = m.tok_emb(x)
        for layer in m.layers:
            h = layer(h, m.cos, m.sin)
        f = m.norm(h)
        return f, F.linear(f, self.W)

    @torch.no_grad()
    def generate(self, prompts, n_new, temps, gen):
        """prompts (B, P) token ids; temps (B,) (0: greedy). Returns (B, P + n_new)."""
        m, c = self.m, self.c
        B, P = prompts.shape
        L = P + n_new
        hd, H, KV = c.head_dim, c.n_heads, c.n_kv_heads
        ks = [torch.zeros(B, KV, L, hd, device=prompts.device, dtype=torch.bfloat16) for _ in m.layers]
        vs = [torch.zeros_like(k) for k in ks]
        out = torch.empty(B, L, dtype=torch.long, device=prompts.device)
        out[:, :P] = prompts

        def step(x, pos0):
            T = x.shape[1]
            h = m.tok_emb(x)
            cos, sin = m.cos[pos0:pos0 + T], m.sin[pos0:pos0 + T]
            for li, blk in enumerate(m.layers):
                a = blk.attn_norm(h)
                q = apply_rope(blk.wq(a).view(B, T, H, hd), cos, sin).transpose(1, 2)
                k = apply_rope(blk.wk(a).view(B, T, KV, hd), cos, sin).transpose(1, 2)
                v = blk.wv(a).view(B, T, KV, hd).transpose(1, 2)
                ks[li][:, :, pos0:pos0 + T] = k.to(ks[li].dtype)
                vs[li][:, :, pos0:pos0 + T] = v.to(vs[li].dtype)
                kk, vv = ks[li][:, :, :pos0 + T].to(q.dtype), vs[li][:, :, :pos0 + T].to(q.dtype)
                if KV != H:
                    kk = kk.repeat_interleave(H // KV, dim=1)
                    vv = vv.repeat_interleave(H // KV, dim=1)
                if T > 1:
                    mask = torch.ones(T, pos0 + T, dtype=torch.bool, device=x.device).tril(pos0)
                    o = attend(q, kk, vv, mask)
                else:
                    o = attend(q, kk, vv)
                h = h + blk.wo(o.transpose(1, 2).reshape(B, T, -1))
                a = blk.ffn_norm(h)
                h = h + blk.w2(F.silu(blk.w1(a)) * blk.w3(a))
            return F.linear(m.norm(h[:, -1]), self.W).float()

        lg = step(prompts, 0)
        greedy = temps <= 0
        tt = torch.where(greedy, torch.ones_like(temps), temps)[:, None]
        for i in range(n_new):
            p = F.softmax(lg / tt, -1)
            nxt = torch.multinomial(p, 1, generator=gen)[:, 0]
            nxt = torch.where(greedy, lg.argmax(-1), nxt)
            out[:, P + i] = nxt
            if i + 1 < n_new:
                lg = step(nxt[:, None], P + i)
        return out


# ----------------------------------------------------------------------------- head

class Head(nn.Module):
    def __init__(self, tc, n_heads, n_kv_heads, ffn):
        super().__init__()
        d = tc.dim
        self.c = Config(vocab_size=tc.vocab_size, dim=d, n_layers=1, n_heads=n_heads, n_kv_heads=n_kv_heads,
                        ffn_dim=ffn, ctx=tc.ctx + 1, norm_eps=tc.norm_eps, rope_base=tc.rope_base)
        self.norm_h = RMSNorm(d, tc.norm_eps)
        self.norm_e = RMSNorm(d, tc.norm_eps)
        self.fc = nn.Linear(2 * d, d, bias=False)
        self.block = Block(self.c)
        cos, sin = rope_tables(self.c.head_dim, self.c.ctx, self.c.rope_base, None)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        nn.init.normal_(self.fc.weight, std=0.02)
        for mod in self.block.modules():
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=0.02)
        with torch.no_grad():
            # start from the identity on the feature half: the head begins as "the teacher's last feature"
            self.fc.weight[:, :d] += torch.eye(d)

    def forward(self, feat, emb, pos0=1):
        """feat (B, T, d): f at the position before each token; emb (B, T, d); the first token at pos0."""
        x = self.fc(torch.cat([self.norm_h(feat), self.norm_e(emb)], -1))
        T = x.shape[1]
        return self.block(x, self.cos[pos0:pos0 + T], self.sin[pos0:pos0 + T])

    def tensors(self):
        b = self.block
        return [("fc.weight", self.fc.weight, False),
                ("fc_norm_h.weight", self.norm_h.weight, True),
                ("fc_norm_e.weight", self.norm_e.weight, True),
                ("blk.0.attn_norm.weight", b.attn_norm.weight, True),
                ("blk.0.attn_q.weight", b.wq.weight, False),
                ("blk.0.attn_k.weight", b.wk.weight, False),
                ("blk.0.attn_v.weight", b.wv.weight, False),
                ("blk.0.attn_output.weight", b.wo.weight, False),
                ("blk.0.ffn_norm.weight", b.ffn_norm.weight, True),
                ("blk.0.ffn_gate.weight", b.w1.weight, False),
                ("blk.0.ffn_up.weight", b.w3.weight, False),
                ("blk.0.ffn_down.weight", b.w2.weight, False)]


def export_head(head, meta, path, qtype, name):
    c = head.c
    w = gw.GGUFWriter()
    w.add_string("general.architecture", ARCH)
    w.add_string("general.name", name)
    w.add_string("general.description", "EAGLE-style draft head for %s (train/train_head.py)" % meta["teacher_name"])
    w.add_string(ARCH + ".teacher.name", meta["teacher_name"])
    w.add(ARCH + ".teacher.n_embd", gw.T_UINT64, c.dim)
    w.add(ARCH + ".teacher.n_vocab", gw.T_UINT64, meta["n_vocab"])
    w.add(ARCH + ".teacher.vocab_hash", gw.T_UINT64, meta["vocab_hash"])
    w.add_u32(ARCH + ".head_count", c.n_heads)
    w.add_u32(ARCH + ".head_count_kv", c.n_kv_heads)
    w.add_u32(ARCH + ".feed_forward_length", c.ffn_dim)
    w.add_f32(ARCH + ".rope.freq_base", c.rope_base)
    w.add_f32(ARCH + ".attention.layer_norm_rms_epsilon", c.norm_eps)
    for tname, p, is_norm in head.tensors():
        w.add_tensor(tname, p.detach().float().cpu().numpy(), gw.GGML_F32 if is_norm else qtype)
    w.write(path)
    return os.path.getsize(path)


def head_losses(head, teacher, x, reg_w, unroll_w, noise):
    """x (B, T + 1) with BOS at 0. Returns (loss, dict of logged parts)."""
    f, lg = teacher.feats(x)
    emb = teacher.m.tok_emb(x[:, 1:]).detach()
    feat_in = f[:, :-1]
    if noise > 0:  # EAGLE-1's feature noise: the head's own predictions are never exact
        feat_in = feat_in + (torch.rand_like(feat_in) - 0.5) * noise * feat_in.abs().mean()
    tgt_f, tgt_p = f[:, 1:], F.log_softmax(lg[:, 1:].float(), -1)

    def parts(h):
        lq = F.log_softmax(F.linear(h, teacher.W).float(), -1)
        kl = F.kl_div(lq.reshape(-1, lq.shape[-1]), tgt_p.reshape(-1, tgt_p.shape[-1]), log_target=True,
                      reduction="batchmean")
        reg = F.smooth_l1_loss(h.float(), tgt_f.float())
        return kl, reg, lq

    h1 = head(feat_in, emb)
    kl1, reg1, _ = parts(h1)
    loss = kl1 + reg_w * reg1
    out = {"kl1": kl1.item(), "reg1": reg1.item()}
    if unroll_w > 0:
        # the second draft step: the feature before each token is the head's own prediction (the first position
        # keeps the teacher's, as drafting always starts from one)
        feat2 = torch.cat([f[:, :1], h1[:, :-1]], 1)
        h2 = head(feat2, emb)
        kl2, reg2, _ = parts(h2)
        loss = loss + unroll_w * (kl2 + reg_w * reg2)
        out.update({"kl2": kl2.item(), "reg2": reg2.item()})
    return loss, out


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def agreement(head, teacher, vx):
    """Top-1 agreement with the teacher at draft depth 1 (true features) and 2 (one predicted feature)."""
    a1 = a2 = n = 0
    for i in range(0, len(vx), 16):
        x = vx[i:i + 16]
        f, lg = teacher.feats(x)
        emb = teacher.m.tok_emb(x[:, 1:])
        want = lg[:, 1:].argmax(-1)
        h1 = head(f[:, :-1], emb)
        a1 += (F.linear(h1, teacher.W).argmax(-1) == want).sum().item()
        h2 = head(torch.cat([f[:, :1], h1[:, :-1]], 1), emb)
        a2 += (F.linear(h2, teacher.W).argmax(-1) == want).sum().item()
        n += want.numel()
    return a1 / n, a2 / n


@torch.no_grad()
def spec_sim(head, teacher, prompt, n_new, k, ctx):
    """Greedy chain speculation as the engine runs it: the head sees the teacher's features of every verified
    position and its own predictions beyond; returns tokens per teacher pass."""
    ids = list(prompt)
    dev = teacher.W.device
    passes = made = 0
    while made < n_new and len(ids) + k + 1 < ctx:
        x = torch.tensor([ids], device=dev)
        f, lg = teacher.feats(x)
        feats = [f[0, i] for i in range(len(ids) - 1)]  # the teacher's features of all but the last token
        toks = list(ids)
        draft = []
        for j in range(k):
            fin = torch.stack(feats)[None]
            emb = teacher.m.tok_emb(torch.tensor([toks[1:]], device=dev))
            h = head(fin, emb)[0, -1]
            t = int(F.linear(h, teacher.W).argmax())
            draft.append(t)
            feats.append(h)
            toks.append(t)
        x = torch.tensor([ids + draft], device=dev)
        _, lg = teacher.feats(x)
        tl = lg[0].argmax(-1).tolist()
        base, acc = len(ids) - 1, 0
        while acc < k and tl[base + acc] == draft[acc]:
            acc += 1
        new = draft[:acc] + [tl[base + acc]]
        ids += new
        made += len(new)
        passes += 1
    return made / max(1, passes)


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models",
                                                      "aero-teacher-34M-Q8_0.gguf"))
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--heads", default="8,8", help="head count, KV head count of the head's layer")
    ap.add_argument("--ffn", type=int, default=1408)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=0, help="training window (0: the teacher's context)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--reg", type=float, default=0.5, help="weight of the feature regression")
    ap.add_argument("--unroll", type=float, default=0.5, help="weight of the second (predicted-feature) step")
    ap.add_argument("--noise", type=float, default=0.2, help="uniform feature noise, relative to mean |f|")
    ap.add_argument("--gen-seconds", type=float, default=70, help="time spent generating teacher text")
    ap.add_argument("--gen-batch", type=int, default=512)
    ap.add_argument("--gen-frac", type=float, default=0.75, help="share of training rows from teacher text")
    ap.add_argument("--deadline", type=float, default=330, help="seconds from start by which training ends")
    ap.add_argument("--eval-reserve", type=float, default=25)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--steps", type=int, default=10 ** 9)
    ap.add_argument("--qtype", default="F16", choices=["F16", "F32"])
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run on a slice (local test)")
    ap.add_argument("--name", default="aero-draft-head")
    args = ap.parse_args()

    global LOG
    os.makedirs(args.out, exist_ok=True)
    LOG = open(os.path.join(args.out, "train_head.log"), "w")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        log("device", torch.cuda.get_device_name(0), "torch", torch.__version__)
    res = {"args": vars(args), "timing": {}}

    # 1. teacher
    t = time.time()
    tm, r = TR.load_gguf(args.teacher, dev)
    for p in tm.parameters():
        p.requires_grad_(False)
    teacher = Teacher(tm)
    tc = tm.c
    tokens, merges = r.meta["tokenizer.ggml.tokens"], r.meta["tokenizer.ggml.merges"]
    bos = r.meta["tokenizer.ggml.bos_token_id"]
    meta = {"teacher_name": r.meta.get("general.name", ""), "n_vocab": len(tokens), "vocab_hash": vocab_hash(tokens)}
    ctx = args.ctx or tc.ctx
    log("teacher %s: %s, vocab hash %016x (%.1fs)" % (meta["teacher_name"], tc.to_dict(), meta["vocab_hash"],
                                                      time.time() - t))

    # 2. corpus (train.py's split; the held-out slice is for evaluation only)
    t = time.time()
    files = TR.read_corpus(args.corpus)
    ts_docs, book_docs, heldout, heldout_small = TR.split_corpus(files)
    rng = np.random.default_rng(args.seed)
    n_ts, n_bk = (40, 2) if args.smoke else (6000, 40)
    ts_docs = [ts_docs[i] for i in rng.choice(len(ts_docs), min(n_ts, len(ts_docs)), replace=False)]
    book_slices = []
    for i in rng.choice(len(book_docs), min(n_bk, len(book_docs)), replace=False):
        b = book_docs[i]
        s = int(rng.integers(0, max(1, len(b) - 120000)))
        book_slices.append(b[s:s + (20000 if args.smoke else 120000)])
    try:
        from tokenizers import Tokenizer
        hf = Tokenizer.from_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models",
                                              "aero-tokenizer.json"))
        enc = lambda docs: [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)]  # noqa: E731
    except Exception as e:  # noqa: BLE001
        log("HF tokenizers unavailable (%s): pure-Python BPE" % e)
        py = bpe.BPE(tokens, merges)
        enc = lambda docs: [py.encode(d, parse_special=False) for d in docs]  # noqa: E731
    ts_ids, bk_ids = enc(ts_docs), enc(book_slices)
    ho_text = heldout_small if not args.smoke else heldout_small[:6000]
    ho_ids = enc([ho_text])[0]

    def stream(docs):
        out = []
        for d in docs:
            out.append(bos)
            out.extend(d)
        return np.asarray(out, dtype=np.int64)

    ts_t = torch.tensor(stream(ts_ids), device=dev)
    bk_t = torch.tensor(stream(bk_ids), device=dev)
    res["timing"]["corpus_s"] = time.time() - t
    log("corpus: %d TinyStories docs, %d book slices: %d + %d tokens; held-out small %d tokens (%.1fs)" % (
        len(ts_docs), len(book_slices), len(ts_t), len(bk_t), len(ho_ids), time.time() - t))

    # 3. teacher-generated text: prompts of 8..64 corpus tokens (half stories, half books), BOS first
    t = time.time()
    gen = torch.Generator(device=dev)
    gen.manual_seed(args.seed)
    rows = []
    gb = 8 if args.smoke else args.gen_batch
    glen = 64 if args.smoke else ctx  # the teacher's positions are 0 .. ctx - 1
    while time.time() - t < args.gen_seconds or not rows:
        P = int(rng.integers(8, 65)) if not args.smoke else 8
        half = gb // 2
        parts = []
        for data, n in ((ts_t, half), (bk_t, gb - half)):
            ix = torch.randint(len(data) - P - 1, (n,), generator=gen, device=dev)
            parts.append(data[ix[:, None] + torch.arange(P, device=dev)])
        pr = torch.cat(parts)
        pr[:, 0] = bos
        temps = torch.tensor([0.0, 0.7, 1.0], device=dev)[torch.arange(gb, device=dev) % 3]
        with TR.autocast(dev):
            rows.append(teacher.generate(pr, glen - P, temps, gen).cpu())
        if args.smoke and len(rows) >= 2:
            break
    gen_rows = torch.cat(rows)
    res["timing"]["generate_s"] = time.time() - t
    res["generated"] = {"rows": len(gen_rows), "tokens": gen_rows.numel()}
    log("teacher text: %d rows x %d tokens = %.2fM tokens (%.1fs)" % (gen_rows.shape[0], gen_rows.shape[1],
                                                                  gen_rows.numel() / 1e6, time.time() - t))
    gen_rows = gen_rows.to(dev)
    sample_txt = TR.Tok(tokens, merges).decode(gen_rows[0, :96].tolist())
    log("sample:", json.dumps(sample_txt[:300]))

    # 4. train
    hh, hkv = (int(v) for v in args.heads.split(","))
    torch.manual_seed(args.seed)
    head = Head(tc, hh, hkv, args.ffn).to(dev)
    n_params = sum(p.numel() for p in head.parameters())
    log("head: %d heads, %d KV heads, FFN %d: %.2fM parameters" % (hh, hkv, args.ffn, n_params / 1e6))
    res["head_params"] = n_params
    B = 4 if args.smoke else args.batch
    T = glen  # training rows: T tokens, BOS at 0 (corpus windows as train.py draws them, or teacher text)
    real = TR.Batches(ts_t, bk_t, B, T, 0.5, bos, dev, args.seed + 7)
    n_gen = int(round(B * args.gen_frac))

    def batch():
        x, _ = real.next()
        if n_gen:
            ix = torch.randint(len(gen_rows), (n_gen,), generator=gen, device=dev)
            x[:n_gen] = gen_rows[ix, :T]
        return x

    ws, v_ho = TR.val_chunks(ho_ids, (128 if args.smoke else ctx) - 1, 64, bos, dev)
    vx = torch.cat([ws, v_ho[:, -1:]], 1)
    if args.smoke:
        vx = vx[:4]
    opt = TR.make_opt(head, args.lr, args.wd, dev)
    t = time.time()
    budget = args.deadline - (time.time() - T0) - args.eval_reserve
    budget = max(5.0, budget)
    log("training budget %.0fs" % budget)
    step, hist, tokens_seen = 0, [], 0
    while step < args.steps:
        el = time.time() - t
        prog = el / budget
        if prog >= 1:
            break
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog)))
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch()
        with TR.autocast(dev):
            loss, parts = head_losses(head, teacher, x, args.reg, args.unroll, args.noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += x.numel()
        if step % args.eval_every == 0 or step == 1:
            with TR.autocast(dev):
                a1, a2 = agreement(head, teacher, vx)
            rec = dict(step=step, time_s=round(time.time() - t, 1), lr=lr, loss=loss.item(), agree1=a1, agree2=a2,
                       **parts)
            hist.append(rec)
            log("step %d %.0fs lr %.2e loss %.4f %s agree@1 %.4f agree@2 %.4f" % (
                step, rec["time_s"], lr, rec["loss"], " ".join("%s %.4f" % kv for kv in parts.items()), a1, a2))
    res["train"] = {"steps": step, "tokens": tokens_seen, "seconds": time.time() - t, "history": hist}
    log("trained %d steps, %.1fM tokens, %.0fs" % (step, tokens_seen / 1e6, time.time() - t))

    # 5. export
    head.eval()
    qtype = gw.GGML_F16 if args.qtype == "F16" else gw.GGML_F32
    fname = "%s-%.0fM-%s.gguf" % (args.name, n_params / 1e6, args.qtype)
    path = os.path.join(args.out, fname)
    size = export_head(head, meta, path, qtype, args.name)
    res["file"] = {"name": fname, "bytes": size}
    log("exported", fname, size, "bytes")

    # 6. evaluate the exported weights in fp32
    t = time.time()
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    hr = gw.GGUFReader(path)
    with torch.no_grad():
        for tname, p, _ in head.tensors():
            p.copy_(torch.from_numpy(hr.tensor(tname)).to(dev))
    a1, a2 = agreement(head, teacher, vx)
    prompts = ["Once upon a time", "One day, a little boy named Tim", "Lily and her mom went to the store",
               "The cat sat on the mat", "There was a big red ball"]
    pids = [[bos] + enc([p])[0] for p in (prompts[:1] if args.smoke else prompts)]
    n_new = 8 if args.smoke else 128
    sims = {k: float(np.mean([spec_sim(head, teacher, p, n_new, k, tc.ctx) for p in pids])) for k in (2, 4, 8)}
    res["eval"] = {"agree_depth1": a1, "agree_depth2": a2, "chain_tokens_per_pass": sims,
                   "seconds": time.time() - t}
    log("exported head, fp32: top-1 agreement depth 1 %.4f, depth 2 %.4f; greedy chain tokens per pass %s (%.1fs)"
        % (a1, a2, " ".join("k=%d: %.2f" % kv for kv in sims.items()), time.time() - t))
    # reference for the engine: the head's depth-1 argmax at each position of a fixed prompt
    x = torch.tensor([pids[0] + TR.generate(tm, pids[0], 24, dev)], device=dev)
    f, lg = teacher.feats(x)
    h1 = head(f[:, :-1], tm.tok_emb(x[:, 1:]))
    with open(os.path.join(args.out, "head_reference.txt"), "w") as fo:
        fo.write("ids %s\n" % " ".join(map(str, x[0].tolist())))
        fo.write("head_depth1_argmax %s\n" % " ".join(map(str, F.linear(h1, teacher.W)[0].argmax(-1).tolist())))
    res["timing"]["total_s"] = time.time() - T0
    with open(os.path.join(args.out, "results_head.json"), "w") as fo:
        json.dump(res, fo, indent=1)
    log("all done in %.1fs" % (time.time() - T0))


if __name__ == "__main__":
    main()
