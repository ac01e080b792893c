// Prompt reuse: a request whose prompt a sequence's KV cache already holds decodes only its new tokens, says so
// in usage.prompt_tokens_details.cached_tokens and /metrics, and generates exactly the text it would cold;
// llama-server's cache_prompt: false starts from an empty sequence.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { SKIP, metrics, parseSSE, post, startServer } from './server_util.mjs';

const M = 'stories260K.gguf';
const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog.';

describe('prompt reuse', { skip: SKIP }, () => {
  let srv;
  before(async () => {
    srv = await startServer(['-np', '2']);
  });
  after(async () => {
    if (srv) assert.equal((await srv.stop()).code, 0);
  });

  const complete = async (extra = {}) => {
    const res = await post(srv.base, '/v1/completions', { model: M, prompt: PROMPT, max_tokens: 24, temperature: 0, ...extra });
    assert.equal(res.status, 200, res.body);
    return JSON.parse(res.body);
  };

  test('the same prompt twice: the second comes from the cache, with the same greedy text', async () => {
    const cold = await complete();
    assert.equal(cold.usage.prompt_tokens_details.cached_tokens, 0);
    const warm = await complete();
    assert.equal(warm.choices[0].text, cold.choices[0].text);
    assert.equal(warm.usage.prompt_tokens, cold.usage.prompt_tokens);
    // all but the last prompt token, which is decoded again for its logits
    assert.equal(warm.usage.prompt_tokens_details.cached_tokens, warm.usage.prompt_tokens - 1);

    const fresh = await complete({ cache_prompt: false });
    assert.equal(fresh.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal(fresh.choices[0].text, cold.choices[0].text);

    const m = await metrics(srv.base);
    assert.equal(m.aerollm_prompt_tokens_cached_total, warm.usage.prompt_tokens - 1);
  });

  test('a longer prompt reuses its prefix; the streamed usage says so too', async () => {
    const more = `${PROMPT} One day, she saw a big red ball.`;
    const cold = await complete({ prompt: more, cache_prompt: false });
    const res = await post(srv.base, '/v1/completions', {
      model: M, prompt: more, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    assert.equal(res.status, 200, res.body);
    const chunks = parseSSE(res.body);
    const usage = chunks.at(-1).usage;
    assert.ok(usage.prompt_tokens_details.cached_tokens > 0);
    assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), cold.choices[0].text);
  });

  test('cache_prompt must be a boolean', async () => {
    const res = await post(srv.base, '/v1/completions', { model: M, prompt: 'x', cache_prompt: 'yes' });
    assert.equal(res.status, 400);
  });
});
