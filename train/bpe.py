"""Pure-Python byte-level BPE (GPT-2 style): the encoder that the GGUF metadata describes.

Used to check that the exported `tokenizer.ggml.tokens` + `tokenizer.ggml.merges` reproduce the
Hugging Face tokenizer exactly, and as a slow stand-in trainer when `tokenizers` is not installed
(local smoke tests on a tiny slice only; the real tokenizer is trained with Hugging Face `tokenizers`).
"""
import collections

try:
    import regex as re  # needed for \p{L} / \p{N}
except ImportError:  # pragma: no cover
    re = None

# llama.cpp LLAMA_VOCAB_PRE_TYPE_GPT2 / HF ByteLevel(use_regex=True)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENC = bytes_to_unicode()
BYTE_DEC = {v: k for k, v in BYTE_ENC.items()}


def pretokenize(text):
    return [("".join(BYTE_ENC[b] for b in w.encode("utf-8"))) for w in re.findall(GPT2_PATTERN, text)]


class BPE:
    """Encoder from a token list (id order) and merges ("a b" strings, rank order)."""

    def __init__(self, tokens, merges, specials=(EOT,)):
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {}
        for r, m in enumerate(merges):
            a, b = m.split(" ")
            self.ranks[(a, b)] = r
        self.specials = [s for s in specials if s in self.ids]
        self.cache = {}

    def _word(self, w):
        if w in self.cache:
            return self.cache[w]
        parts = list(w)
        while len(parts) > 1:
            best, bi = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            parts = parts[:bi] + [parts[bi] + parts[bi + 1]] + parts[bi + 2:]
        out = [self.ids[p] for p in parts]
        self.cache[w] = out
        return out

    def encode(self, text, parse_special=True):
        ids = []
        if parse_special and self.specials:
            for k, piece in enumerate(text.split(EOT)):
                if k:
                    ids.append(self.ids[EOT])
                for w in pretokenize(piece):
                    ids.extend(self._word(w))
            return ids
        for w in pretokenize(text):
            ids.extend(self._word(w))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if t in self.specials:
                out += t.encode("utf-8")
            else:
                out += bytes(BYTE_DEC[c] for c in t)
        return out.decode("utf-8", errors="replace")


def train_small(texts, vocab_size):
    """Naive BPE trainer (O(merges * words)); only for tiny local smoke tests."""
    words = collections.Counter()
    for t in texts:
        for piece in t.split(EOT):
            words.update(pretokenize(piece))
    vocab = [EOT] + [BYTE_ENC[b] for b in range(256)]
    seqs = {w: list(w) for w in words}
    merges = []
    while len(vocab) < vocab_size:
        pairs = collections.Counter()
        for w, c in words.items():
            s = seqs[w]
            for i in range(len(s) - 1):
                pairs[(s[i], s[i + 1])] += c
        if not pairs:
            break
        (a, b), c = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if c < 2:
            break
        merges.append(a + " " + b)
        vocab.append(a + b)
        for w in words:
            s = seqs[w]
            i, out = 0, []
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return vocab, merges
