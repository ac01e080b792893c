"""Llama-architecture decoder as the C engine runs it from a GGUF `llama` file.

RMSNorm (eps 1e-5), SwiGLU FFN, no biases, RoPE on ADJACENT pairs (x[2i], x[2i+1]) as in Meta's
original llama and llama2.c (ggml rope mode 0), so Q/K weights export to GGUF without permutation.
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab_size: int = 8192
    dim: int = 512
    n_layers: int = 8
    n_heads: int = 8
    n_kv_heads: int = 8
    ffn_dim: int = 1408
    ctx: int = 512
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    tied: bool = False
    dropout: float = 0.0  # residual dropout, training only (not part of the exported model)

    @property
    def head_dim(self):
        return self.dim // self.n_heads

    def to_dict(self):
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).type_as(x)


def rope_tables(head_dim, ctx, base, device):
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)
    ang = torch.arange(ctx, dtype=torch.float64, device=device)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()  # (ctx, head_dim/2)


def apply_rope(x, cos, sin):
    """x: (B, T, H, D); rotates adjacent pairs (x[2i], x[2i+1]) by angle pos * base^(-2i/D)."""
    B, T, H, D = x.shape
    xf = x.float().view(B, T, H, D // 2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    c = cos[:T].view(1, T, 1, D // 2)
    s = sin[:T].view(1, T, 1, D // 2)
    out = torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1)
    return out.view(B, T, H, D).type_as(x)


def causal_attention(q, k, v):
    """q, k, v: (B, H, T, D)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = att.masked_fill(~mask, float("-inf")).softmax(-1)
    return att @ v


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        hd = c.head_dim
        self.attn_norm = RMSNorm(c.dim, c.norm_eps)
        self.wq = nn.Linear(c.dim, c.n_heads * hd, bias=False)
        self.wk = nn.Linear(c.dim, c.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(c.dim, c.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(c.n_heads * hd, c.dim, bias=False)
        self.ffn_norm = RMSNorm(c.dim, c.norm_eps)
        self.w1 = nn.Linear(c.dim, c.ffn_dim, bias=False)  # gate
        self.w3 = nn.Linear(c.dim, c.ffn_dim, bias=False)  # up
        self.w2 = nn.Linear(c.ffn_dim, c.dim, bias=False)  # down
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, cos, sin):
        c = self.c
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = apply_rope(self.wq(h).view(B, T, c.n_heads, c.head_dim), cos, sin)
        k = apply_rope(self.wk(h).view(B, T, c.n_kv_heads, c.head_dim), cos, sin)
        v = self.wv(h).view(B, T, c.n_kv_heads, c.head_dim)
        if c.n_kv_heads != c.n_heads:
            rep = c.n_heads // c.n_kv_heads
            k = k.repeat_interleave(rep, dim=2)
            v = v.repeat_interleave(rep, dim=2)
        o = causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x + self.drop(self.wo(o.transpose(1, 2).reshape(B, T, -1)))
        h = self.ffn_norm(x)
        return x + self.drop(self.w2(F.silu(self.w1(h)) * self.w3(h)))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.tok_emb = nn.Embedding(c.vocab_size, c.dim)
        self.layers = nn.ModuleList([Block(c) for _ in range(c.n_layers)])
        self.norm = RMSNorm(c.dim, c.norm_eps)
        self.out = None if c.tied else nn.Linear(c.dim, c.vocab_size, bias=False)
        cos, sin = rope_tables(c.head_dim, c.ctx, c.rope_base, None)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("wo.weight") or name.endswith("w2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, idx):
        x = self.tok_emb(idx)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin)
        x = self.norm(x)
        if self.out is None:
            return F.linear(x, self.tok_emb.weight)
        return self.out(x)

    def n_params(self):
        return sum(p.numel() for p in self.parameters())


def gguf_tensor_map(model):
    """(gguf name, parameter tensor, is_norm) in llama.cpp order and naming."""
    out = [("token_embd.weight", model.tok_emb.weight, False)]
    for i, L in enumerate(model.layers):
        p = "blk.%d." % i
        out += [(p + "attn_norm.weight", L.attn_norm.weight, True),
                (p + "attn_q.weight", L.wq.weight, False),
                (p + "attn_k.weight", L.wk.weight, False),
                (p + "attn_v.weight", L.wv.weight, False),
                (p + "attn_output.weight", L.wo.weight, False),
                (p + "ffn_norm.weight", L.ffn_norm.weight, True),
                (p + "ffn_gate.weight", L.w1.weight, False),
                (p + "ffn_up.weight", L.w3.weight, False),
                (p + "ffn_down.weight", L.w2.weight, False)]
    out.append(("output_norm.weight", model.norm.weight, True))
    if model.out is not None:
        out.append(("output.weight", model.out.weight, False))
    return out
