// Synthetic llama / qwen2 / qwen3 models written with the GGUF writer, checked against a plain double-precision
// forward pass written here from the architecture definitions (no engine kernels): logits to 1e-4 relative.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modules.h" // the module headers: a white-box test

#include "check.h"
#include "helpers.h"

enum { DIM = 48, HEADS = 4, KV_HEADS = 2, HD = 12, FF = 80, LAYERS = 2, NPROMPT = 9 };

typedef struct {
    const char *arch;
    bool bias, qk_norm, neox, llama3_scaling;
    double eps, base;
} variant;

static uint64_t rng = 88172645463325252ull;
static double urand(void) { return test_xorshift_sym(&rng); }

typedef struct {
    char name[64];
    int rows, cols; // cols = ne[0]
    float *w;
} tensor;

static tensor T[128];
static int nT;

static float *add(aero_gguf_writer *wr, const char *name, int rows, int cols, double scale, double offset) {
    tensor *t = &T[nT++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows;
    t->cols = cols;
    t->w = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++) t->w[i] = (float)(offset + scale * urand());
    test_add_tensor(wr, name, AERO_DT_F32, rows, cols, t->w);
    return t->w;
}

static const float *get(const char *fmt, int l) {
    char name[64];
    snprintf(name, sizeof name, fmt, l);
    for (int i = 0; i < nT; i++)
        if (!strcmp(T[i].name, name)) return T[i].w;
    return NULL;
}

// y = W x for W stored row-major as (rows, cols).
static void mv(double *y, const float *w, const double *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)w[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

static void rms(double *o, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double k = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * k * w[i];
}

// Rotation speed of pair i, with Meta's Llama 3.1 scaling when asked (factor 8, low 1, high 4, original ctx 32).
static double freq(const variant *v, int i) {
    double f = pow(v->base, -2.0 * i / HD);
    if (!v->llama3_scaling) return f;
    double wavelen = 2 * M_PI / f, low_wl = 32 / 1.0, high_wl = 32 / 4.0;
    if (wavelen < high_wl) return f;
    if (wavelen > low_wl) return f / 8;
    double smooth = (32 / wavelen - 1) / (4 - 1);
    return (1 - smooth) * f / 8 + smooth * f;
}

static void rot(const variant *v, double *x, int pos) {
    for (int i = 0; i < HD / 2; i++) {
        double th = pos * freq(v, i), c = cos(th), s = sin(th);
        int a = v->neox ? i : 2 * i, b = v->neox ? i + HD / 2 : 2 * i + 1;
        double x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

// The whole model in doubles for a causal prompt; writes logits (NPROMPT x vocab).
static void reference(const variant *v, const int32_t *tok, int vocab, double *logits) {
    static double x[NPROMPT][DIM], k[LAYERS][NPROMPT][KV_HEADS * HD], vv[LAYERS][NPROMPT][KV_HEADS * HD];
    const float *emb = get("token_embd.weight", 0);
    for (int i = 0; i < NPROMPT; i++)
        for (int d = 0; d < DIM; d++) x[i][d] = emb[(size_t)tok[i] * DIM + d];
    for (int l = 0; l < LAYERS; l++) {
        for (int i = 0; i < NPROMPT; i++) {
            double xb[DIM], q[HEADS * HD], att[HEADS * HD], o[DIM];
            rms(xb, x[i], get("blk.%d.attn_norm.weight", l), DIM, v->eps);
            mv(q, get("blk.%d.attn_q.weight", l), xb, HEADS * HD, DIM);
            mv(k[l][i], get("blk.%d.attn_k.weight", l), xb, KV_HEADS * HD, DIM);
            mv(vv[l][i], get("blk.%d.attn_v.weight", l), xb, KV_HEADS * HD, DIM);
            if (v->bias) {
                for (int j = 0; j < HEADS * HD; j++) q[j] += get("blk.%d.attn_q.bias", l)[j];
                for (int j = 0; j < KV_HEADS * HD; j++) {
                    k[l][i][j] += get("blk.%d.attn_k.bias", l)[j];
                    vv[l][i][j] += get("blk.%d.attn_v.bias", l)[j];
                }
            }
            for (int h = 0; h < HEADS; h++) {
                if (v->qk_norm) rms(q + h * HD, q + h * HD, get("blk.%d.attn_q_norm.weight", l), HD, v->eps);
                rot(v, q + h * HD, i);
            }
            for (int h = 0; h < KV_HEADS; h++) {
                if (v->qk_norm)
                    rms(k[l][i] + h * HD, k[l][i] + h * HD, get("blk.%d.attn_k_norm.weight", l), HD, v->eps);
                rot(v, k[l][i] + h * HD, i);
            }
            for (int h = 0; h < HEADS; h++) {
                int kh = h / (HEADS / KV_HEADS);
                double s[NPROMPT], mx = -1e300, z = 0;
                for (int j = 0; j <= i; j++) {
                    s[j] = 0;
                    for (int d = 0; d < HD; d++) s[j] += q[h * HD + d] * k[l][j][kh * HD + d];
                    s[j] /= sqrt(HD);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j <= i; j++) z += (s[j] = exp(s[j] - mx));
                for (int d = 0; d < HD; d++) {
                    att[h * HD + d] = 0;
                    for (int j = 0; j <= i; j++) att[h * HD + d] += s[j] / z * vv[l][j][kh * HD + d];
                }
            }
            mv(o, get("blk.%d.attn_output.weight", l), att, DIM, HEADS * HD);
            for (int d = 0; d < DIM; d++) x[i][d] += o[d];
            double g[FF], u[FF];
            rms(xb, x[i], get("blk.%d.ffn_norm.weight", l), DIM, v->eps);
            mv(g, get("blk.%d.ffn_gate.weight", l), xb, FF, DIM);
            mv(u, get("blk.%d.ffn_up.weight", l), xb, FF, DIM);
            for (int j = 0; j < FF; j++) g[j] = g[j] / (1 + exp(-g[j])) * u[j];
            mv(o, get("blk.%d.ffn_down.weight", l), g, DIM, FF);
            for (int d = 0; d < DIM; d++) x[i][d] += o[d];
        }
    }
    for (int i = 0; i < NPROMPT; i++) {
        double xb[DIM];
        rms(xb, x[i], get("output_norm.weight", 0), DIM, v->eps);
        mv(logits + (size_t)i * vocab, get("output.weight", 0), xb, vocab, DIM);
    }
}

// Writes the synthetic model with the tokenizer metadata of stories260K.
static void write_model(const variant *v, const char *path, int vocab) {
    aero_gguf tok;
    aero_error err = {0};
    CHECK(!aero_gguf_open(&tok, SHARED_DATA "/models/stories260K.gguf", &err));
    aero_gguf_writer *wr = aero_gguf_writer_new(0);
    aero_gguf_set_str(wr, "general.architecture", v->arch);
    char key[96];
#define SETU(suffix, val) (snprintf(key, sizeof key, "%s." suffix, v->arch), aero_gguf_set_u32(wr, key, val))
#define SETF(suffix, val) (snprintf(key, sizeof key, "%s." suffix, v->arch), aero_gguf_set_f32(wr, key, val))
    SETU("block_count", LAYERS);
    SETU("embedding_length", DIM);
    SETU("feed_forward_length", FF);
    SETU("attention.head_count", HEADS);
    SETU("attention.head_count_kv", KV_HEADS);
    SETU("attention.key_length", HD);
    SETU("context_length", 256);
    SETF("attention.layer_norm_rms_epsilon", (float)v->eps);
    SETF("rope.freq_base", (float)v->base);
    if (v->llama3_scaling) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", v->arch);
        aero_gguf_set_str(wr, key, "llama3");
        SETF("rope.scaling.factor", 8);
        SETF("rope.scaling.low_freq_factor", 1);
        SETF("rope.scaling.high_freq_factor", 4);
        SETU("rope.scaling.original_context_length", 32);
    }
    for (uint64_t i = 0; i < tok.n_kv; i++)
        if (!strncmp(tok.kv[i].key.ptr, "tokenizer.", 10)) aero_gguf_set_value(wr, tok.kv[i].key.ptr, &tok.kv[i].value);
    aero_gguf_free(&tok);
    nT = 0;
    double ws = 0.25;
    add(wr, "token_embd.weight", vocab, DIM, 1.0, 0);
    add(wr, "output_norm.weight", 1, DIM, 0.2, 1.0);
    add(wr, "output.weight", vocab, DIM, ws, 0);
    for (int l = 0; l < LAYERS; l++) {
        char n[64];
#define ADD(suffix, r, c, s, off) (snprintf(n, sizeof n, "blk.%d." suffix, l), add(wr, n, r, c, s, off))
        ADD("attn_norm.weight", 1, DIM, 0.2, 1.0);
        ADD("attn_q.weight", HEADS * HD, DIM, ws, 0);
        ADD("attn_k.weight", KV_HEADS * HD, DIM, ws, 0);
        ADD("attn_v.weight", KV_HEADS * HD, DIM, ws, 0);
        ADD("attn_output.weight", DIM, HEADS * HD, ws, 0);
        if (v->bias) {
            ADD("attn_q.bias", 1, HEADS * HD, 0.5, 0);
            ADD("attn_k.bias", 1, KV_HEADS * HD, 0.5, 0);
            ADD("attn_v.bias", 1, KV_HEADS * HD, 0.5, 0);
        }
        if (v->qk_norm) {
            ADD("attn_q_norm.weight", 1, HD, 0.2, 1.0);
            ADD("attn_k_norm.weight", 1, HD, 0.2, 1.0);
        }
        ADD("ffn_norm.weight", 1, DIM, 0.2, 1.0);
        ADD("ffn_gate.weight", FF, DIM, ws, 0);
        ADD("ffn_up.weight", FF, DIM, ws, 0);
        ADD("ffn_down.weight", DIM, FF, ws, 0);
    }
    CHECKF(!aero_gguf_write(wr, path, &err), "%s", err.msg);
    aero_gguf_writer_free(wr);
}

static void run_variant(const variant *v) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/aero_test_ref_%s_%d.gguf", v->arch, (int)getpid());
    const int vocab = 512;
    write_model(v, path, vocab);
    aero_model_params p;
    aero_model_params_default(&p);
    p.path = path;
    p.n_threads = 2;
    aero_model *m;
    aero_error err = {0};
    if (aero_model_load(&m, &p, &err)) {
        CHECKF(0, "%s: load: %s", v->arch, err.msg);
        unlink(path);
        return;
    }
    aero_ctx *c;
    aero_ctx_params cp = {.n_ctx = 64, .kv_f32 = true};
    CHECK(!aero_ctx_new(&c, m, &cp, &err));
    int32_t tok[NPROMPT], pos[NPROMPT];
    for (int i = 0; i < NPROMPT; i++) tok[i] = (int32_t)(3 + i * 37 % (vocab - 3)), pos[i] = i;
    float *got = malloc(sizeof(float) * NPROMPT * vocab);
    double *want = malloc(sizeof(double) * NPROMPT * vocab);
    aero_batch b = {.n = NPROMPT, .tokens = tok, .pos = pos};
    CHECKF(!aero_decode(c, &b, got, &err), "%s", err.msg);
    reference(v, tok, vocab, want);
    double worst = 0, scale = 0;
    for (int i = 0; i < NPROMPT * vocab; i++) scale = fmax(scale, fabs(want[i]));
    for (int i = 0; i < NPROMPT * vocab; i++) worst = fmax(worst, fabs(got[i] - want[i]) / scale);
    printf("%s%s: max |logit error| / max |logit| = %.2e\n", v->arch, v->llama3_scaling ? " (llama3 rope scaling)" : "",
           worst);
    CHECKF(worst < 1e-4, "%s logits within 1e-4 relative of the double reference (%.2e)", v->arch, worst);
    free(got);
    free(want);
    aero_ctx_free(c);
    aero_model_free(m);
    for (int i = 0; i < nT; i++) free(T[i].w);
    unlink(path);
}

int main(void) {
    require_shared_data();
    const variant variants[] = {
        {"llama", false, false, false, false, 1e-5, 10000},
        {"llama", false, false, false, true, 1e-5, 500000},
        {"qwen2", true, false, true, false, 1e-6, 1000000},
        {"qwen3", false, true, true, false, 1e-6, 1000000},
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) run_variant(&variants[i]);
    return check_done("test_model_ref");
}
