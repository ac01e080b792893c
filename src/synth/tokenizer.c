// The synthetic model's tokenizer section: a GPT-2 style byte-level BPE trained here on a small built-in text
// (so that a synthetic model tokenizes like a real one without shipping a vocabulary), or the tokenizer keys of
// another GGUF copied as they are.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../format/gguf.h"
#include "synth_internal.h"

static const char train_text[] =
    "Once upon a time, in a small town by the sea, there lived a girl who loved to read. Every morning she walked "
    "to the library with her little brother, and every evening they came home with a bag full of books. "
    "The library was an old stone house with a red door and a garden where the children played in the sun. "
    "\"What are you reading today?\" asked the old man who kept the books. \"A story about the stars,\" she said. "
    "He smiled and told her that the stars were very far away, farther than anyone could walk in a thousand years. "
    "She thought about that for a long time. Then she asked if light could walk, and he laughed and said that light "
    "does not walk, it runs, and it is the fastest thing in the world.\n"
    "The next day it rained, so they stayed at home. Their mother made bread and soup, and their father fixed the "
    "window that the wind had broken in the night. The children sat by the fire and read to each other. When the "
    "rain stopped, the sky was clean and blue, and the whole town smelled of wet grass and salt.\n"
    "In the summer the family went to the mountains. They walked for hours along a river, counted the birds, and "
    "learned the names of the trees: oak, pine, birch and beech. At night they looked at the sky, and the girl found "
    "the stars she had read about. There were more of them than she could count, 1, 2, 3, 10, 100, 1000, and she "
    "was happy that some things are too many to count.\n"
    "Years later she became a teacher. She told her students that a question is the beginning of every answer, that "
    "it is good to be curious, and that the world is bigger and older than any of us. The students listened, and "
    "some of them went to the library after school, where a new red door had been painted the same color as before.\n"
    "def main():\n    for i in range(10):\n        print(i, i * i)\n    return 0\n"
    "The quick brown fox jumps over the lazy dog. It's a beautiful day, isn't it? We'll see what they've done, "
    "and I'm sure you'd like it. Numbers like 3.14, 2024 and 42 appear in text; so do commas, colons: and (brackets).";

// GPT-2's reversible map from bytes to printable code points, and the vocabulary order of the 256 byte tokens.
static void byte_unicode(uint32_t cp[256], int order[256]) {
    int n = 0, k = 0;
    bool printable[256] = {0};
    for (int b = 33; b <= 126; b++) printable[b] = true;
    for (int b = 161; b <= 172; b++) printable[b] = true;
    for (int b = 174; b <= 255; b++) printable[b] = true;
    for (int b = 0; b < 256; b++)
        if (printable[b]) {
            cp[b] = (uint32_t)b;
            order[k++] = b;
        }
    for (int b = 0; b < 256; b++)
        if (!printable[b]) {
            cp[b] = 256u + (uint32_t)n++;
            order[k++] = b;
        }
}

static int utf8_put(uint32_t c, char *out) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 63));
        return 2;
    }
    out[0] = (char)(0xE0 | (c >> 12));
    out[1] = (char)(0x80 | ((c >> 6) & 63));
    out[2] = (char)(0x80 | (c & 63));
    return 3;
}

static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_space(int c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// Length of the next pre-token at s[i] (GPT-2's pattern, for ASCII): contractions, ` ?letters`, ` ?digits`,
// ` ?other`, and runs of whitespace that leave a last space to the word that follows.
static size_t pretoken(const char *s, size_t n, size_t i) {
    static const char *const contr[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    if (s[i] == '\'')
        for (int k = 0; k < 7; k++) {
            size_t l = strlen(contr[k]);
            if (i + l <= n && !strncmp(s + i, contr[k], l)) return l;
        }
    size_t j = i;
    if (s[j] == ' ' && j + 1 < n && !is_space(s[j + 1])) j++;
    if (!is_space(s[j])) {
        int c = (unsigned char)s[j];
        if (is_alpha(c))
            while (j < n && is_alpha((unsigned char)s[j])) j++;
        else if (is_digit(c))
            while (j < n && is_digit((unsigned char)s[j])) j++;
        else
            while (j < n && !is_space(s[j]) && !is_alpha((unsigned char)s[j]) && !is_digit((unsigned char)s[j])) j++;
        return j - i;
    }
    while (j < n && is_space(s[j])) j++;
    if (j < n && j - i > 1 && s[j - 1] == ' ') j--; // leave the space to the next word
    return j - i;
}

typedef struct {
    int *sym;
    int n, count;
} bpe_word;

typedef struct {
    char **tok;
    int n, cap;
    char **merges;
    int n_merges;
} vocab_build;

static bool vocab_add(vocab_build *v, char *s) {
    if (!s) return false;
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 1024;
        char **t = realloc(v->tok, (size_t)cap * sizeof *t);
        if (!t) {
            free(s);
            return false;
        }
        v->tok = t;
        v->cap = cap;
    }
    v->tok[v->n++] = s;
    return true;
}

typedef struct {
    uint64_t key; // first id << 32 | second id
    int count;
} pair_count;

static int cmp_pair(const void *a, const void *b) {
    uint64_t x = ((const pair_count *)a)->key, y = ((const pair_count *)b)->key;
    return x < y ? -1 : x > y;
}

static void vocab_free(vocab_build *v) {
    for (int i = 0; i < v->n; i++) free(v->tok[i]);
    for (int i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tok);
    free(v->merges);
}

// Trains up to max_merges merges on the built-in text: the most frequent adjacent pair each round (ties to the
// lowest ids), until no pair occurs twice. Tokens 0..255 are the bytes; each merge adds the merged token.
static aero_status train_bpe(vocab_build *v, int max_merges, aero_error *err) {
    uint32_t cp[256];
    int order[256], id_of_byte[256];
    byte_unicode(cp, order);
    for (int i = 0; i < 256; i++) {
        char buf[4];
        int l = utf8_put(cp[order[i]], buf);
        id_of_byte[order[i]] = i;
        if (!vocab_add(v, strndup(buf, (size_t)l))) return aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory");
    }
    size_t n = strlen(train_text);
    bpe_word *words = calloc(n, sizeof *words);
    v->merges = calloc((size_t)max_merges + 1, sizeof *v->merges);
    int n_words = 0;
    pair_count *pairs = NULL;
    aero_status status = AERO_OK;
    if (!words || !v->merges) {
        status = aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n;) {
        size_t l = pretoken(train_text, n, i);
        int w;
        for (w = 0; w < n_words; w++) // few hundred distinct words: a linear search is enough
            if (words[w].n == (int)l) {
                int k = 0;
                while (k < (int)l && words[w].sym[k] == id_of_byte[(unsigned char)train_text[i + k]]) k++;
                if (k == (int)l) break;
            }
        if (w == n_words) {
            words[w].sym = malloc(l * sizeof(int));
            if (!words[w].sym) {
                status = aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory");
                goto done;
            }
            for (size_t k = 0; k < l; k++) words[w].sym[k] = id_of_byte[(unsigned char)train_text[i + k]];
            words[w].n = (int)l;
            n_words++;
        }
        words[w].count++;
        i += l;
    }
    size_t n_sym = 0;
    for (int w = 0; w < n_words; w++) n_sym += (size_t)words[w].n;
    pairs = malloc((n_sym + 1) * sizeof *pairs);
    if (!pairs) {
        status = aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory");
        goto done;
    }
    while (v->n_merges < max_merges) {
        // Count adjacent pairs: list them (weighted by word count), sort, and add up equal neighbours.
        size_t np = 0;
        for (int w = 0; w < n_words; w++)
            for (int k = 0; k + 1 < words[w].n; k++) {
                pairs[np].key = (uint64_t)(uint32_t)words[w].sym[k] << 32 | (uint32_t)words[w].sym[k + 1];
                pairs[np++].count = words[w].count;
            }
        qsort(pairs, np, sizeof *pairs, cmp_pair);
        int best_a = -1, best_b = -1, best_c = 1;
        for (size_t i = 0; i < np;) {
            size_t j = i;
            int c = 0;
            while (j < np && pairs[j].key == pairs[i].key) c += pairs[j++].count;
            if (c > best_c) { // ties keep the first in key order: the lowest ids
                best_c = c;
                best_a = (int)(pairs[i].key >> 32);
                best_b = (int)(pairs[i].key & 0xFFFFFFFFu);
            }
            i = j;
        }
        if (best_a < 0) break; // no pair occurs twice
        size_t la = strlen(v->tok[best_a]), lb = strlen(v->tok[best_b]);
        char *merged = malloc(la + lb + 1), *rule = malloc(la + lb + 2);
        if (!merged || !rule) {
            free(merged);
            free(rule);
            status = aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory");
            goto done;
        }
        memcpy(merged, v->tok[best_a], la);
        memcpy(merged + la, v->tok[best_b], lb + 1);
        memcpy(rule, v->tok[best_a], la);
        rule[la] = ' ';
        memcpy(rule + la + 1, v->tok[best_b], lb + 1);
        v->merges[v->n_merges++] = rule;
        int id = -1;
        for (int t = 256; t < v->n && id < 0; t++)
            if (!strcmp(v->tok[t], merged)) id = t;
        if (id < 0) {
            id = v->n;
            if (!vocab_add(v, merged)) {
                status = aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory");
                goto done;
            }
        } else {
            free(merged);
        }
        for (int w = 0; w < n_words; w++) {
            int o = 0;
            for (int k = 0; k < words[w].n; k++) {
                if (k + 1 < words[w].n && words[w].sym[k] == best_a && words[w].sym[k + 1] == best_b) {
                    words[w].sym[o++] = id;
                    k++;
                } else {
                    words[w].sym[o++] = words[w].sym[k];
                }
            }
            words[w].n = o;
        }
    }
done:
    for (int w = 0; w < n_words && words; w++) free(words[w].sym);
    free(words);
    free(pairs);
    return status;
}

static const char *const llama_specials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                             "<|end_header_id|>", "<|eot_id|>"};
static const char *const qwen_specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
static const char *const gemma_specials[] = {"<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"};
// Phi-3's SentencePiece specials are there too: llama.cpp sets attributes on them by name for any "phi3" model
static const char *const phi3_specials[] = {"<s>",      "</s>",          "<unk>", "<|endoftext|>",
                                            "<|user|>", "<|assistant|>", "<|end|>"};

// Phi-3's chat template (Phi-3 mini instruct).
static const char phi3_template[] =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif "
    "message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor "
    "%}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

// Gemma 3's chat template (Gemma 2's is the same for user/model turns; a system message becomes the first user
// turn's prefix).
static const char gemma_template[] =
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + "
    "'\n\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}{%- set "
    "loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}{%- if (message['role'] == 'user') "
    "!= (loop.index0 % 2 == 0) -%}{{ raise_exception(\"Conversation roles must alternate "
    "user/assistant/user/assistant/...\") }}{%- endif -%}{%- if (message['role'] == 'assistant') -%}{%- set role = "
    "\"model\" -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}{{ '<start_of_turn>' + role + '\n' + "
    "(first_user_prefix if loop.first else \"\") }}{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- "
    "endfor -%}{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}";

static const char llama3_template[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
static const char chatml_template[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// Writes the built-in tokenizer: bytes, merges, the architecture's special tokens, then unused padding tokens
// up to n_vocab (as Hugging Face vocabularies padded for the embedding's size are converted).
aero_status synth_write_tokenizer(aero_gguf_writer *w, const aero_synth_params *p, aero_synth_stats *stats, int *n_real,
                                  aero_error *err) {
    bool llama = !strcmp(p->arch, "llama") || !strcmp(p->arch, "granite") || !strcmp(p->arch, "mistral3"), gemma = !strncmp(p->arch, "gemma", 5),
         phi3 = !strcmp(p->arch, "phi3");
    const char *const *spec = llama ? llama_specials : gemma ? gemma_specials : phi3 ? phi3_specials : qwen_specials;
    int n_spec = llama ? 5 : phi3 ? 7 : gemma ? 4 : 3;
    int room = p->n_vocab - 256 - n_spec;
    vocab_build v = {0};
    int32_t *types = NULL;
    aero_status s = train_bpe(&v, room < 4000 ? room : 4000, err);
    if (s) goto done;
    int first_spec = v.n;
    for (int i = 0; i < n_spec && !s; i++)
        if (!vocab_add(&v, strdup(spec[i]))) s = aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory");
    for (int i = v.n; i < p->n_vocab && !s; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%d]", i);
        if (!vocab_add(&v, strdup(buf))) s = aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory");
    }
    if (s) goto done;
    types = malloc((size_t)v.n * sizeof *types);
    if (!types) {
        s = aero_fail(err, AERO_ERR_NOMEM, "synth: out of memory");
        goto done;
    }
    for (int i = 0; i < v.n; i++)
        types[i] = i < first_spec ? 1 : i < first_spec + n_spec ? 3 : 5; // normal, control, unused
    aero_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    aero_gguf_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    aero_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.tok, (uint64_t)v.n);
    aero_gguf_set_arr(w, "tokenizer.ggml.token_type", AERO_GGUF_INT32, types, (uint64_t)v.n);
    aero_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, (uint64_t)v.n_merges);
    aero_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)first_spec); // <|begin_of_text|> / <|endoftext|>
    int eos = phi3 ? 3 : llama || gemma ? 1 : 0; // <|end_of_text|>, <eos>, <|endoftext|>
    aero_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(first_spec + eos));
    aero_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)(first_spec + eos));
    if (gemma) aero_gguf_set_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)first_spec + 3); // <end_of_turn>
    if (phi3) aero_gguf_set_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)first_spec + 6);  // <|end|>
    aero_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", llama || gemma || phi3);
    aero_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    aero_gguf_set_str(w, "tokenizer.chat_template",
                      llama ? llama3_template : gemma ? gemma_template : phi3 ? phi3_template : chatml_template);
    if (stats) {
        stats->n_vocab = v.n;
        stats->n_merges = v.n_merges;
    }
    *n_real = first_spec + n_spec;
done:
    free(types);
    vocab_free(&v);
    return s;
}

// Copies every tokenizer.* key of another GGUF; the vocabulary size becomes that of its token list.
aero_status synth_copy_tokenizer(aero_gguf_writer *w, const char *path, int *n_vocab, aero_error *err) {
    aero_gguf g;
    if (aero_gguf_open(&g, path, err)) return aero_error_prefix(err, "--tokenizer-from: ");
    const aero_gguf_value *tokens = aero_gguf_get(&g, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != AERO_GGUF_ARRAY || tokens->arr.elem != AERO_GGUF_STRING || tokens->arr.n == 0 ||
        tokens->arr.n > (1u << 24)) {
        aero_gguf_free(&g);
        return aero_fail(err, AERO_ERR_FORMAT, "--tokenizer-from: %s has no tokenizer.ggml.tokens string array", path);
    }
    *n_vocab = (int)tokens->arr.n;
    for (uint64_t i = 0; i < g.n_kv; i++)
        if (!strncmp(g.kv[i].key.ptr, "tokenizer.", 10)) aero_gguf_set_value(w, g.kv[i].key.ptr, &g.kv[i].value);
    aero_gguf_free(&g);
    return AERO_OK;
}
