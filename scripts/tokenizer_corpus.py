#!/usr/bin/env python3
"""Writes the differential-test corpus for the tokenizer: tests/fixtures/tokenizer/corpus.jsonl, one JSON
string per line. Deterministic (fixed seed). The strings cover many scripts, emoji, code, whitespace runs,
digits, contractions, NFC/NFD forms and special-token text mixed into ordinary text.

Only code points assigned in Unicode 14 (Python's unicodedata here, and PCRE2 10.42's tables) are drawn, so
that the regex engines on both sides (PCRE2 and V8's newer tables) agree on every character's category.
The ids are not stored: tests/node/tokenizer_diff.test.mjs computes them at test time with
@huggingface/transformers (the oracle) and with `aerollm tokenize --batch`.

Usage: python3 scripts/tokenizer_corpus.py [N] > tests/fixtures/tokenizer/corpus.jsonl
"""
import json
import random
import sys
import unicodedata as ud

assert ud.unidata_version == "14.0.0", "regenerate with Unicode 14 data (Python 3.11) to match PCRE2 10.42"

BLOCKS = {  # name: (lo, hi)
    "latin": (0x20, 0x7E), "latin1": (0xA0, 0xFF), "latin_ext": (0x100, 0x24F), "ipa": (0x250, 0x2AF),
    "combining": (0x300, 0x36F), "greek": (0x370, 0x3FF), "cyrillic": (0x400, 0x4FF), "armenian": (0x530, 0x58F),
    "hebrew": (0x590, 0x5FF), "arabic": (0x600, 0x6FF), "devanagari": (0x900, 0x97F), "bengali": (0x980, 0x9FF),
    "tamil": (0xB80, 0xBFF), "thai": (0xE00, 0xE7F), "georgian": (0x10A0, 0x10FF), "hangul_jamo": (0x1100, 0x11FF),
    "ethiopic": (0x1200, 0x137F), "latin_add": (0x1E00, 0x1EFF), "greek_ext": (0x1F00, 0x1FFF),
    "punct": (0x2000, 0x206F), "currency": (0x20A0, 0x20C0), "letterlike": (0x2100, 0x214F), "arrows": (0x2190, 0x21FF),
    "math": (0x2200, 0x22FF), "box": (0x2500, 0x257F), "misc_sym": (0x2600, 0x26FF), "dingbats": (0x2700, 0x27BF),
    "cjk_punct": (0x3000, 0x303F), "hiragana": (0x3040, 0x309F), "katakana": (0x30A0, 0x30FF),
    "cjk": (0x4E00, 0x9FFF), "hangul": (0xAC00, 0xD7A3), "fullwidth": (0xFF00, 0xFFEF),
    "emoji": (0x1F300, 0x1F64F), "emoji2": (0x1F900, 0x1F9FF), "math_alnum": (0x1D400, 0x1D7FF),
    "cjk_ext_b": (0x20000, 0x2A6DF),
}
WS = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n", "\u00a0", "\u3000", "\u2009", "\u2028", "\u0085",
      "\u000b", "\u000c", "\u180e", "\u200b", "\ufeff", " \t ", "\n \n", "    "]
WORDS = ["the", "The", "THE", "hello", "world", "Hello", "don't", "I'm", "we'll", "they've", "she'd", "it's", "IT'S",
         "You're", "l'homme", "naïve", "café", "Führer", "straße", "Ελλάδα", "Москва", "日本語", "中文", "한국어",
         "ไทย", "हिन्दी", "عربي", "עברית", "🦙", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "1234567", "3.14159", "1,000,000",
         "٣٤٥", "१२३", "１２３", "x²", "½", "Ⅻ", "ﬁ", "ǅ", "İstanbul", "ß", "ΣΑΣ", "µ", "e\u0301", "a\u0308",
         "\u1100\u1161\u11a8", "Å", "A\u030a", "\u212b", "ḱṷ", "q\u0307\u0323"]
CODE = [
    "int main(void) {\n    return 0;\n}\n",
    "def f(x):\n\treturn x ** 2  # square\n",
    "for (size_t i = 0; i < n; i++) a[i] += b[i] * 3.5f;",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "<div class=\"x\">&amp; &lt;tag&gt;</div>",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%o''neil%';",
    "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n",
    "$ ls -la | grep '\\.c$' && echo \"done\" >> /tmp/log 2>&1",
    "fn main() { let v: Vec<u8> = vec![0xFF; 16]; println!(\"{:?}\", v); }",
    "    if x == y:\n        pass\n    elif x != z:\n        raise ValueError('bad')\n",
    "const re = /^[a-z0-9_-]{3,16}$/i; // username",
    "a=b+c-d*e/f%g^h|i&j~k!l?m:n;o,p.q<r>s[t]u{v}w(x)y@z#$`'\"\\",
]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|reserved_special_token_5|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|fim_prefix|>",
            "<tool_call>", "</tool_call>", "<think>", "</think>", "<|vision_start|>", "<s>", "</s>", "<unk>", "<|"]


def assigned(cp):
    c = ud.category(chr(cp))
    return c not in ("Cn", "Cs", "Co")


def rand_char(rng, block):
    lo, hi = BLOCKS[block]
    for _ in range(100):
        cp = rng.randint(lo, hi)
        if assigned(cp):
            return chr(cp)
    return "a"


def rand_script_text(rng):
    blocks = rng.sample(sorted(BLOCKS), rng.randint(1, 3))
    out = []
    for _ in range(rng.randint(1, 12)):
        b = rng.choice(blocks)
        out.append("".join(rand_char(rng, b) for _ in range(rng.randint(1, 8))))
        out.append(rng.choice([" ", " ", "", rng.choice(WS), ", ", ". "]))
    return "".join(out)


def rand_words(rng):
    return "".join(rng.choice(WORDS) + rng.choice([" ", " ", "", rng.choice(WS), "'s ", "'LL ", "'T", "-", "..."])
                   for _ in range(rng.randint(1, 10)))


def rand_ws(rng):
    return "".join(rng.choice(WS + ["a", "b", "1", ".", "é"]) for _ in range(rng.randint(1, 20)))


def rand_digits(rng):
    parts = []
    for _ in range(rng.randint(1, 6)):
        k = rng.randint(1, 14)
        d = rng.choice(["0123456789", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "０１２３４５６７８９", "0123456789"])
        parts.append("".join(rng.choice(d) for _ in range(k)))
        parts.append(rng.choice([" ", "", ".", ",", "x", " + ", "abc", "\n"]))
    return "".join(parts)


def rand_code(rng):
    s = rng.choice(CODE)
    if rng.random() < 0.5:
        s = s.replace("    ", rng.choice(["\t", "  ", "        "]))
    ident = "".join(rng.choice("abcxyz_XYZ019") for _ in range(rng.randint(1, 12)))
    s = s.replace("x", ident, 1).replace("42", str(rng.randint(0, 10**rng.randint(1, 12))))
    return s + (rng.choice(CODE) if rng.random() < 0.3 else "")


def rand_special(rng):
    out = []
    for _ in range(rng.randint(1, 6)):
        out.append(rng.choice([rng.choice(SPECIALS), rand_words(rng), rng.choice(WS), rand_script_text(rng)[:20]]))
    return "".join(out)


def rand_any(rng):
    # a random mix, including raw random code points from anywhere assigned
    out = []
    for _ in range(rng.randint(1, 30)):
        r = rng.random()
        if r < 0.5:
            cp = rng.randint(0x20, 0x2FFFF)
            if assigned(cp) and not (0xD800 <= cp <= 0xDFFF):
                out.append(chr(cp))
        elif r < 0.7:
            out.append(rng.choice(WS))
        else:
            out.append(rng.choice(WORDS))
    return "".join(out)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    rng = random.Random(20240531)
    gens = [rand_script_text, rand_words, rand_ws, rand_digits, rand_code, rand_special, rand_any]
    seen = set()
    out = []
    attempt = 0
    while len(out) < n:
        g = gens[attempt % len(gens)]
        attempt += 1
        s = g(rng)
        if rng.random() < 0.1:
            s = ud.normalize(rng.choice(["NFD", "NFC", "NFKD"]), s)
        if s in seen:
            continue
        seen.add(s)
        out.append(s)
    for s in out:
        sys.stdout.write(json.dumps(s, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
