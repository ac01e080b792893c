// Saved prompts: the KV cache of a sequence's first tokens written to a file and read back into a context, so
// that a long prompt is prefilled once and reused by later runs (--prompt-cache, the server's slot files).
//
// A file is one header, the token ids, then per layer the K rows and the V rows of those tokens, byte for byte
// as the cache holds them (so a load converts nothing and reproduces the cache exactly):
//
//   header (KVF_HEADER bytes, little-endian): magic, version, the model's identity (a hash of every model
//   file's metadata and tensor table, and the hyperparameters the cache layout depends on), the cache types,
//   the token count, the row sizes, a hash of the tokens, a hash of the rows, a hash of the header itself
//   tokens  n_tokens x int32
//   rows    for each layer: n_tokens K rows (row_k bytes each), then n_tokens V rows (row_v bytes each)
//
// The model's identity hashes the metadata and tensor table, not the weights: two files that declare the same
// tensors at the same offsets with the same metadata are taken to be one model (reading gigabytes of weights
// to check would cost more than the prefill the file saves).
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "model_internal.h"

#define KVF_MAGIC "AEROKVC\x1a"
#define KVF_VERSION 1u
#define KVF_HEADER 160u
#define KVF_MAX_LAYERS 65536u
#define KVF_MAX_TOKENS (1u << 24)

// The header's fields, as decoded (the on-disk layout is written out field by field in kvf_header_encode).
typedef struct {
    uint64_t model_hash;
    char model_name[64]; // the model file's name, for messages
    uint32_t n_layer, n_head_kv, head_dim, n_vocab;
    uint32_t type_k, type_v; // aero_dtype of the rows
    uint32_t n_tokens, n_ctx;
    uint64_t row_k, row_v;
    uint64_t tokens_hash, rows_hash;
} kvf_header;

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

// A fast 64-bit hash of a byte range (xxHash64's structure: four lanes of 8-byte words), for checksums of
// cache rows that can be gigabytes: a byte-at-a-time hash would cost more than reading them.
static uint64_t kvf_hash(const void *data, size_t n, uint64_t seed) {
    const uint8_t *b = data;
    uint64_t h[4] = {seed + P1 + P2, seed + P2, seed, seed - P1}, w;
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int l = 0; l < 4; l++) {
            memcpy(&w, b + i + 8 * l, 8);
            h[l] = rotl64(h[l] + w * P2, 31) * P1;
        }
    uint64_t r = rotl64(h[0], 1) + rotl64(h[1], 7) + rotl64(h[2], 12) + rotl64(h[3], 18) + (uint64_t)n;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, b + i, 8);
        r = rotl64(r ^ (rotl64(w * P2, 31) * P1), 27) * P1 + P4;
    }
    for (; i < n; i++) r = rotl64(r ^ (b[i] * P5), 11) * P1;
    return aero_hash_u64(r ^ P3);
}

// Chains the hashes of the row blocks in file order, so one number covers every byte of every layer.
static uint64_t kvf_chain(uint64_t h, uint64_t block) { return aero_hash_u64(h ^ block) + P4; }

static void put32(uint8_t **p, uint32_t v) {
    for (int i = 0; i < 4; i++) *(*p)++ = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t **p, uint64_t v) {
    for (int i = 0; i < 8; i++) *(*p)++ = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t **p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)(*p)[i] << (8 * i);
    *p += 4;
    return v;
}
static uint64_t get64(const uint8_t **p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)(*p)[i] << (8 * i);
    *p += 8;
    return v;
}

// The fixed little-endian layout of the header, whatever the host's byte order.
static void kvf_header_encode(const kvf_header *h, uint8_t out[KVF_HEADER]) {
    uint8_t *p = out;
    memset(out, 0, KVF_HEADER);
    memcpy(p, KVF_MAGIC, 8), p += 8;
    put32(&p, KVF_VERSION);
    put32(&p, KVF_HEADER);
    put64(&p, h->model_hash);
    memcpy(p, h->model_name, sizeof h->model_name), p += sizeof h->model_name;
    put32(&p, h->n_layer), put32(&p, h->n_head_kv), put32(&p, h->head_dim), put32(&p, h->n_vocab);
    put32(&p, h->type_k), put32(&p, h->type_v);
    put32(&p, h->n_tokens), put32(&p, h->n_ctx);
    put64(&p, h->row_k), put64(&p, h->row_v);
    put64(&p, h->tokens_hash), put64(&p, h->rows_hash);
    put64(&p, kvf_hash(out, KVF_HEADER - 8, 0));
}

// Bytes of the whole file a header describes; false when it overflows (a hostile header).
static bool kvf_file_size(const kvf_header *h, uint64_t *out) {
    uint64_t row = h->row_k + h->row_v, cells = (uint64_t)h->n_layer * h->n_tokens;
    if (h->row_k > (1ull << 32) || h->row_v > (1ull << 32)) return false;
    if (cells && row > (UINT64_MAX - KVF_HEADER - 4ull * h->n_tokens) / cells) return false;
    *out = KVF_HEADER + 4ull * h->n_tokens + cells * row;
    return true;
}

// Decodes and checks a header on its own: magic, version, its checksum, and fields that describe a cache
// layout this build can hold (known types, row sizes that match them, sizes that do not overflow).
static aero_status kvf_header_decode(const uint8_t *buf, size_t len, const char *name, kvf_header *h,
                                     aero_error *err) {
    memset(h, 0, sizeof *h);
    if (len < 8 || memcmp(buf, KVF_MAGIC, 8))
        return aero_fail(err, AERO_ERR_FORMAT, "%s: not an AeroLLM KV cache file (no AEROKVC magic)", name);
    if (len < KVF_HEADER)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: truncated: %zu bytes, shorter than the %u-byte header", name, len,
                         KVF_HEADER);
    const uint8_t *p = buf + 8;
    uint32_t version = get32(&p), hsize = get32(&p);
    if (version != KVF_VERSION)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "%s: KV cache file version %u; this build reads version %u",
                         name, version, KVF_VERSION);
    if (hsize != KVF_HEADER)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: header size %u, want %u", name, hsize, KVF_HEADER);
    const uint8_t *end = buf + KVF_HEADER - 8;
    uint64_t stored = get64(&end);
    if (stored != kvf_hash(buf, KVF_HEADER - 8, 0))
        return aero_fail(err, AERO_ERR_FORMAT, "%s: corrupt: the header does not match its checksum", name);
    h->model_hash = get64(&p);
    memcpy(h->model_name, p, sizeof h->model_name), p += sizeof h->model_name;
    h->model_name[sizeof h->model_name - 1] = 0;
    for (size_t i = 0; h->model_name[i]; i++) // a name for messages only: printable or not at all
        if ((unsigned char)h->model_name[i] < 0x20 || h->model_name[i] == 0x7f) h->model_name[i] = '?';
    h->n_layer = get32(&p), h->n_head_kv = get32(&p), h->head_dim = get32(&p), h->n_vocab = get32(&p);
    h->type_k = get32(&p), h->type_v = get32(&p);
    h->n_tokens = get32(&p), h->n_ctx = get32(&p);
    h->row_k = get64(&p), h->row_v = get64(&p);
    h->tokens_hash = get64(&p), h->rows_hash = get64(&p);
    if (h->n_layer == 0 || h->n_layer > KVF_MAX_LAYERS || h->n_tokens > KVF_MAX_TOKENS || h->n_head_kv == 0 ||
        h->head_dim == 0 || h->n_head_kv > 65536 || h->head_dim > 65536)
        return aero_fail(err, AERO_ERR_FORMAT,
                         "%s: implausible cache shape (%u layers, %u KV heads of %u, %u tokens)", name, h->n_layer,
                         h->n_head_kv, h->head_dim, h->n_tokens);
    uint64_t kv_dim = (uint64_t)h->n_head_kv * h->head_dim;
    if (h->type_k >= AERO_DT_COUNT || h->type_v >= AERO_DT_COUNT ||
        aero_dtype_row_bytes(h->type_k, kv_dim) != h->row_k || aero_dtype_row_bytes(h->type_v, kv_dim) != h->row_v ||
        h->row_k == 0 || h->row_v == 0)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: cache types %u/%u with rows of %llu/%llu bytes do not fit %llu "
                         "values per row", name, h->type_k, h->type_v, (unsigned long long)h->row_k,
                         (unsigned long long)h->row_v, (unsigned long long)kv_dim);
    uint64_t size;
    if (!kvf_file_size(h, &size))
        return aero_fail(err, AERO_ERR_FORMAT, "%s: the header's sizes overflow", name);
    return AERO_OK;
}

// Checks the token ids: their checksum and that each is in the vocabulary the file names.
static aero_status kvf_tokens_check(const kvf_header *h, const int32_t *toks, const char *name, aero_error *err) {
    if (kvf_hash(toks, 4ull * h->n_tokens, 1) != h->tokens_hash)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: corrupt: the token ids do not match their checksum", name);
    for (uint32_t i = 0; i < h->n_tokens; i++)
        if (toks[i] < 0 || (uint32_t)toks[i] >= h->n_vocab)
            return aero_fail(err, AERO_ERR_FORMAT, "%s: token %u is id %d, outside the vocabulary of %u", name, i,
                             (int)toks[i], h->n_vocab);
    return AERO_OK;
}

aero_status aero_kv_file_check(const void *buf, size_t len, int *n_tokens, aero_error *err) {
    kvf_header h;
    const char *name = "KV cache image";
    aero_status st = kvf_header_decode(buf, len, name, &h, err);
    if (st) return st;
    uint64_t size;
    kvf_file_size(&h, &size);
    if ((uint64_t)len < size)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: truncated: %zu bytes, the header says %llu", name, len,
                         (unsigned long long)size);
    if ((uint64_t)len > size)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: %zu bytes, more than the %llu the header says", name, len,
                         (unsigned long long)size);
    const uint8_t *p = (const uint8_t *)buf + KVF_HEADER;
    int32_t *toks = malloc(4ull * h.n_tokens + 1); // a copy: the image need not be aligned
    if (!toks) return aero_fail(err, AERO_ERR_NOMEM, "out of memory");
    memcpy(toks, p, 4ull * h.n_tokens);
    st = kvf_tokens_check(&h, toks, name, err);
    free(toks);
    if (st) return st;
    p += 4ull * h.n_tokens;
    uint64_t rh = 0;
    for (uint32_t l = 0; l < h.n_layer; l++) {
        rh = kvf_chain(rh, kvf_hash(p, h.n_tokens * h.row_k, 2)), p += h.n_tokens * h.row_k;
        rh = kvf_chain(rh, kvf_hash(p, h.n_tokens * h.row_v, 3)), p += h.n_tokens * h.row_v;
    }
    if (rh != h.rows_hash)
        return aero_fail(err, AERO_ERR_FORMAT, "%s: corrupt: the cached K/V rows do not match their checksum", name);
    if (n_tokens) *n_tokens = (int)h.n_tokens;
    return AERO_OK;
}

void aero_kv_file_seal(void *buf, size_t len) {
    uint8_t *b = buf;
    if (len < KVF_HEADER || memcmp(b, KVF_MAGIC, 8)) return;
    kvf_header h = {0};
    const uint8_t *p = b + 24 + sizeof h.model_name;
    h.n_layer = get32(&p), h.n_head_kv = get32(&p), h.head_dim = get32(&p), h.n_vocab = get32(&p);
    h.type_k = get32(&p), h.type_v = get32(&p), h.n_tokens = get32(&p), h.n_ctx = get32(&p);
    h.row_k = get64(&p), h.row_v = get64(&p);
    uint64_t size;
    uint8_t *q = b + KVF_HEADER - 24;
    if (h.n_layer <= KVF_MAX_LAYERS && h.n_tokens <= KVF_MAX_TOKENS && kvf_file_size(&h, &size) && size == len) {
        const uint8_t *r = b + KVF_HEADER;
        put64(&q, kvf_hash(r, 4ull * h.n_tokens, 1));
        r += 4ull * h.n_tokens;
        uint64_t rh = 0;
        for (uint32_t l = 0; l < h.n_layer; l++) {
            rh = kvf_chain(rh, kvf_hash(r, h.n_tokens * h.row_k, 2)), r += h.n_tokens * h.row_k;
            rh = kvf_chain(rh, kvf_hash(r, h.n_tokens * h.row_v, 3)), r += h.n_tokens * h.row_v;
        }
        put64(&q, rh);
    } else {
        q += 16;
    }
    put64(&q, kvf_hash(b, KVF_HEADER - 8, 0));
}

// Reads exactly n bytes at off, naming a short read as truncation (the usual way a file is damaged).
static aero_status kvf_pread(int fd, void *dst, size_t n, uint64_t off, const char *path, aero_error *err) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)dst + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return aero_fail(err, AERO_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (r == 0)
            return aero_fail(err, AERO_ERR_FORMAT, "%s: truncated at byte %llu", path,
                             (unsigned long long)(off + done));
        done += (size_t)r;
    }
    return AERO_OK;
}

// The model's identity: a hash of each model file's bytes before its tensor data (the GGUF header, every
// metadata value, the tensor table), which changes with any re-quantization, repack or other model.
static aero_status kvf_model_hash(const aero_model *m, uint64_t *out, aero_error *err) {
    uint64_t h = aero_hash_u64(m->gguf.n_files);
    char *buf = NULL;
    aero_status st = AERO_OK;
    for (uint32_t f = 0; f < m->gguf.n_files; f++) {
        const aero_gguf_file *gf = &m->gguf.files[f];
        int fd = open(gf->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return aero_fail(err, AERO_ERR_IO, "%s: cannot open: %s", gf->path, strerror(errno));
        char *nb = realloc(buf, gf->data_offset ? gf->data_offset : 1);
        if (!nb) {
            close(fd);
            st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
            goto fail;
        }
        buf = nb;
        st = kvf_pread(fd, buf, gf->data_offset, 0, gf->path, err);
        close(fd);
        if (st) goto fail;
        h = kvf_chain(h, kvf_hash(buf, gf->data_offset, 4));
    }
    const aero_hparams *hp = &m->hp;
    uint32_t shape[] = {(uint32_t)hp->n_layer, (uint32_t)hp->n_embd,    (uint32_t)hp->n_head,
                        (uint32_t)hp->n_head_kv, (uint32_t)hp->head_dim, (uint32_t)hp->n_vocab};
    *out = kvf_chain(h, kvf_hash(shape, sizeof shape, 5));
fail:
    free(buf);
    return st;
}

// The header a context's sequence would be saved with (tokens and rows hashes left to the caller).
static aero_status kvf_header_of(const aero_ctx *c, int n_tokens, kvf_header *h, aero_error *err) {
    memset(h, 0, sizeof *h);
    aero_status st = kvf_model_hash(c->m, &h->model_hash, err);
    if (st) return st;
    const char *path = c->m->gguf.n_files ? c->m->gguf.files[0].path : "";
    const char *base = strrchr(path, '/');
    snprintf(h->model_name, sizeof h->model_name, "%s", base ? base + 1 : path);
    h->n_layer = (uint32_t)c->kv.n_layer;
    h->n_head_kv = (uint32_t)(c->kv.kv_dim / c->kv.head_dim);
    h->head_dim = (uint32_t)c->kv.head_dim;
    h->n_vocab = (uint32_t)c->m->hp.n_vocab;
    h->type_k = (uint32_t)c->kv.type_k;
    h->type_v = (uint32_t)c->kv.type_v;
    h->n_tokens = (uint32_t)n_tokens;
    h->n_ctx = (uint32_t)c->kv.n_ctx;
    h->row_k = c->kv.row_k;
    h->row_v = c->kv.row_v;
    return AERO_OK;
}

// What both directions refuse: a cache that is not in host memory, or one whose F16 copies a file cannot hold.
static aero_status kvf_ctx_check(const aero_ctx *c, int seq, const char *path, aero_error *err) {
    if (!c || !path) return aero_fail(err, AERO_ERR_INVALID, "KV cache file: no context or path");
    if (c->gpu)
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "%s: KV cache files are not supported with --device cuda yet (the cache lives on the GPU); "
                         "use --device cpu", path);
    if (c->m->pipe)
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "%s: KV cache files are not supported under mpirun (each rank caches its own layers)", path);
    if (c->kv.rk || c->kv.rv)
        return aero_fail(err, AERO_ERR_UNSUPPORTED,
                         "%s: KV cache files do not hold the F16 copies of --kv-recent; run without --kv-recent", path);
    if (seq < 0 || seq >= c->kv.n_seq)
        return aero_fail(err, AERO_ERR_INVALID, "%s: sequence %d is not one of the context's %d", path, seq,
                         c->kv.n_seq);
    return AERO_OK;
}

// Writes all of n bytes (write may take less at a time).
static bool write_all(int fd, const void *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return true;
}

aero_status aero_kv_save(aero_ctx *c, int seq, const int32_t *tokens, int n_tokens, const char *path,
                         aero_error *err) {
    aero_status st = kvf_ctx_check(c, seq, path, err);
    if (st) return st;
    if (n_tokens < 0 || n_tokens > c->kv.len[seq] || (n_tokens > 0 && !tokens))
        return aero_fail(err, AERO_ERR_INVALID, "%s: %d tokens asked for, the sequence caches %d", path, n_tokens,
                         c->kv.len[seq]);
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->hp.n_vocab)
            return aero_fail(err, AERO_ERR_INVALID, "%s: token %d is id %d, outside the vocabulary", path, i,
                             (int)tokens[i]);
    kvf_header h;
    if ((st = kvf_header_of(c, n_tokens, &h, err))) return st;
    const aero_kv_cache *kv = &c->kv;
    size_t nk = (size_t)n_tokens * kv->row_k, nv = (size_t)n_tokens * kv->row_v;
    h.tokens_hash = kvf_hash(tokens, 4ull * n_tokens, 1);
    // a sequence's cells are contiguous in each layer's block: one hash and one write per layer and side
    for (int l = 0; l < kv->n_layer; l++) {
        h.rows_hash = kvf_chain(h.rows_hash, kvf_hash(aero_kv_cell(kv, false, l, seq, 0), nk, 2));
        h.rows_hash = kvf_chain(h.rows_hash, kvf_hash(aero_kv_cell(kv, true, l, seq, 0), nv, 3));
    }
    uint8_t hb[KVF_HEADER];
    kvf_header_encode(&h, hb);

    // a temporary name in the same directory, renamed into place only once complete and on disk
    char tmp[PATH_MAX + 32];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return aero_fail(err, AERO_ERR_INVALID, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return aero_fail(err, AERO_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    bool ok = write_all(fd, hb, sizeof hb) && write_all(fd, tokens, 4ull * n_tokens);
    for (int l = 0; ok && l < kv->n_layer; l++)
        ok = write_all(fd, aero_kv_cell(kv, false, l, seq, 0), nk) && write_all(fd, aero_kv_cell(kv, true, l, seq, 0), nv);
    int e = ok ? 0 : errno;
    if (ok && fsync(fd) != 0) ok = false, e = errno;
    if (close(fd) != 0 && ok) ok = false, e = errno;
    if (!ok) {
        unlink(tmp);
        return aero_fail(err, AERO_ERR_IO, "%s: write failed: %s", tmp, strerror(e ? e : EIO));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return aero_fail(err, AERO_ERR_IO, "%s: cannot rename into place: %s", path, strerror(e));
    }
    // the rename itself is durable once the directory is synced
    char dir[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return AERO_OK;
}

aero_status aero_kv_load(aero_ctx *c, int seq, const char *path, int32_t **tokens, int *n_tokens, aero_error *err) {
    if (tokens) *tokens = NULL;
    if (n_tokens) *n_tokens = 0;
    aero_status st = kvf_ctx_check(c, seq, path, err);
    if (st) return st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return aero_fail(err, AERO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int32_t *toks = NULL;
    struct stat sb;
    uint8_t hb[KVF_HEADER];
    kvf_header h, mine;
    if (fstat(fd, &sb) != 0) {
        st = aero_fail(err, AERO_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    size_t got = (uint64_t)sb.st_size < KVF_HEADER ? (size_t)sb.st_size : KVF_HEADER;
    if ((st = kvf_pread(fd, hb, got, 0, path, err)) || (st = kvf_header_decode(hb, got, path, &h, err))) goto fail;
    if ((st = kvf_header_of(c, (int)h.n_tokens, &mine, err))) goto fail;
    if (h.model_hash != mine.model_hash || h.n_layer != mine.n_layer || h.n_head_kv != mine.n_head_kv ||
        h.head_dim != mine.head_dim || h.n_vocab != mine.n_vocab) {
        st = aero_fail(err, AERO_ERR_INVALID,
                       "%s: saved for another model (%s: %u layers, %u KV heads of %u, model id %016llx); this model "
                       "is %s (%u layers, %u KV heads of %u, model id %016llx)",
                       path, h.model_name[0] ? h.model_name : "unnamed", h.n_layer, h.n_head_kv, h.head_dim,
                       (unsigned long long)h.model_hash, mine.model_name, mine.n_layer, mine.n_head_kv, mine.head_dim,
                       (unsigned long long)mine.model_hash);
        goto fail;
    }
    if (h.type_k != mine.type_k || h.type_v != mine.type_v) {
        st = aero_fail(err, AERO_ERR_INVALID,
                       "%s: saved with cache types K %s, V %s; this context uses K %s, V %s (-ctk/-ctv must match)",
                       path, aero_dtype_name(h.type_k), aero_dtype_name(h.type_v), aero_dtype_name(mine.type_k),
                       aero_dtype_name(mine.type_v));
        goto fail;
    }
    if (h.n_tokens > (uint32_t)c->kv.n_ctx) {
        st = aero_fail(err, AERO_ERR_RANGE, "%s: holds %u tokens, more than this context's %d (raise -c)", path,
                       h.n_tokens, c->kv.n_ctx);
        goto fail;
    }
    uint64_t size;
    kvf_file_size(&h, &size);
    if ((uint64_t)sb.st_size != size) {
        st = aero_fail(err, AERO_ERR_FORMAT, "%s: %s: %llu bytes, the header says %llu", path,
                       (uint64_t)sb.st_size < size ? "truncated" : "trailing bytes", (unsigned long long)sb.st_size,
                       (unsigned long long)size);
        goto fail;
    }
    if (!(toks = malloc(4ull * h.n_tokens + 4))) {
        st = aero_fail(err, AERO_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = kvf_pread(fd, toks, 4ull * h.n_tokens, KVF_HEADER, path, err)) ||
        (st = kvf_tokens_check(&h, toks, path, err)))
        goto fail;
    // straight into the sequence's cells; the sequence is emptied first so a failure leaves it empty, not mixed
    aero_kv_cache *kv = &c->kv;
    kv->len[seq] = 0;
    size_t nk = (size_t)h.n_tokens * kv->row_k, nv = (size_t)h.n_tokens * kv->row_v;
    uint64_t off = KVF_HEADER + 4ull * h.n_tokens, rh = 0;
    for (int l = 0; l < kv->n_layer; l++) {
        void *dk = aero_kv_cell(kv, false, l, seq, 0), *dv = aero_kv_cell(kv, true, l, seq, 0);
        if ((st = kvf_pread(fd, dk, nk, off, path, err)) || (st = kvf_pread(fd, dv, nv, off + nk, path, err)))
            goto fail;
        off += nk + nv;
        rh = kvf_chain(rh, kvf_hash(dk, nk, 2));
        rh = kvf_chain(rh, kvf_hash(dv, nv, 3));
    }
    if (rh != h.rows_hash) {
        st = aero_fail(err, AERO_ERR_FORMAT, "%s: corrupt: the cached K/V rows do not match their checksum", path);
        goto fail;
    }
    kv->len[seq] = (int)h.n_tokens;
    close(fd);
    if (n_tokens) *n_tokens = (int)h.n_tokens;
    if (tokens) *tokens = toks;
    else free(toks);
    return AERO_OK;
fail:
    close(fd);
    free(toks);
    return st;
}

aero_status aero_kv_slot_path(const char *dir, const char *filename, char *out, size_t cap, aero_error *err) {
    if (!dir || !*dir)
        return aero_fail(err, AERO_ERR_UNSUPPORTED, "slot files are disabled: start the server with --slot-save-path DIR");
    size_t n = filename ? strlen(filename) : 0;
    if (n == 0 || n > 255) return aero_fail(err, AERO_ERR_INVALID, "'filename' must be 1 to 255 bytes");
    if (filename[0] == '.') return aero_fail(err, AERO_ERR_INVALID, "'filename' may not start with a dot");
    for (size_t i = 0; i < n; i++) { // a name inside DIR, never a path out of it
        unsigned char ch = (unsigned char)filename[i];
        if (ch == '/' || ch == '\\' || ch < 0x20 || ch == 0x7f)
            return aero_fail(err, AERO_ERR_INVALID, "'filename' may not contain '/', '\\' or control characters");
    }
    if ((size_t)snprintf(out, cap, "%s/%s", dir, filename) >= cap)
        return aero_fail(err, AERO_ERR_INVALID, "the slot file's path is too long");
    return AERO_OK;
}
