// Drafter vocabulary compatibility: a drafter proposes token ids, so an id must mean the same string to both
// models, or the target would be asked to verify tokens the drafter never meant.
#include <string.h>

#include "spec_internal.h"

#define VOCAB_SIZE_SLACK 128 // padding rows models of one family add to their embeddings (as llama.cpp allows)

static const char *kind_name(aero_tok_kind k) {
    return k == AERO_TOK_SPM   ? "SentencePiece"
           : k == AERO_TOK_BPE ? "byte-level BPE"
           : k == AERO_TOK_WPM ? "WordPiece"
                               : "unknown";
}

aero_status aero_spec_check_vocab(const aero_model *target, const aero_model *draft, aero_error *err) {
    const aero_tokenizer *tt = aero_model_tokenizer(target), *dt = aero_model_tokenizer(draft);
    if (!tt || !dt) return aero_fail(err, AERO_ERR_INVALID, "draft model: a model without a tokenizer cannot draft");
    if (aero_tokenizer_kind(tt) != aero_tokenizer_kind(dt))
        return aero_fail(err, AERO_ERR_INVALID, "draft model: tokenizer type %s differs from the target's %s",
                         kind_name(aero_tokenizer_kind(dt)), kind_name(aero_tokenizer_kind(tt)));
    int32_t nt = aero_tokenizer_n_vocab(tt), nd = aero_tokenizer_n_vocab(dt);
    int32_t shared = nt < nd ? nt : nd;
    for (int32_t id = 0; id < shared; id++) {
        const char *a = aero_tokenizer_token_str(tt, id), *b = aero_tokenizer_token_str(dt, id);
        if (!a || !b || strcmp(a, b))
            return aero_fail(err, AERO_ERR_INVALID,
                             "draft model: vocabulary differs from the target's at token id %d (draft '%.40s', target "
                             "'%.40s'; %d vs %d tokens)",
                             id, b ? b : "?", a ? a : "?", nd, nt);
    }
    if (nt - nd > VOCAB_SIZE_SLACK || nd - nt > VOCAB_SIZE_SLACK)
        return aero_fail(err, AERO_ERR_INVALID,
                         "draft model: vocabulary has %d tokens, the target's %d (first differing id %d: present in "
                         "one only; at most %d may differ)",
                         nd, nt, shared, VOCAB_SIZE_SLACK);
    if (aero_tokenizer_bos(tt) != aero_tokenizer_bos(dt) || aero_tokenizer_eos(tt) != aero_tokenizer_eos(dt))
        return aero_fail(err, AERO_ERR_INVALID, "draft model: BOS/EOS ids %d/%d differ from the target's %d/%d",
                         aero_tokenizer_bos(dt), aero_tokenizer_eos(dt), aero_tokenizer_bos(tt),
                         aero_tokenizer_eos(tt));
    return AERO_OK;
}
