// Speculation in the server (`serve --draft`): every sequence drafts, one target pass verifies every sequence's
// draft. Lossless: concurrent speculative greedy streams equal solo plain greedy streams byte for byte (draft
// model chain, draft model tree, n-grams); sampled requests and constrained ones (json_object: no drafting)
// stay valid; per-request acceptance in usage.draft_tokens / usage.draft_accepted, totals in /metrics, the
// drafter in /props.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';

import { DRAFTER, HAVE_PAIR, TEACHER, metrics, startServer, waitIdle } from './server_util.mjs';

const PROMPTS = [
  'Once upon a time', 'The little dog', 'Tom and Sue went to the park', 'A big red ball',
  'One day, a girl named Mia', 'The sun was hot and', 'Ben had a toy car', 'In the forest there lived',
];
const N = 80;
const M = 'aero-teacher-34M-Q8_0.gguf';

// The greedy stream of one completion, its text joined from the chunks, and its usage.
async function stream(client, prompt, extra = {}) {
  const s = await client.completions.create({
    model: M, prompt, max_tokens: N, temperature: 0, stream: true, stream_options: { include_usage: true }, ...extra,
  });
  let text = '';
  let usage = null;
  let finish = null;
  for await (const c of s) {
    if (c.choices?.[0]) {
      text += c.choices[0].text ?? '';
      finish = c.choices[0].finish_reason ?? finish;
    }
    if (c.usage) usage = c.usage;
  }
  return { text, usage, finish };
}

describe('serve --draft', { skip: HAVE_PAIR ? false : 'skipped: the bundled teacher/drafter pair is missing' }, () => {
  let plain;
  const solo = [];
  before(async () => {
    plain = await startServer(['-np', '8'], {}, { model: TEACHER });
    const client = new OpenAI({ baseURL: `${plain.base}/v1`, apiKey: 'x' });
    for (const p of PROMPTS) solo.push(await stream(client, p)); // one at a time: solo plain greedy
    assert.equal((await plain.stop()).code, 0);
    plain = null;
  });
  after(async () => {
    if (plain) await plain.stop();
  });

  for (const [name, flags] of [
    ['draft model, chain', ['--draft', DRAFTER]],
    ['draft model, tree', ['--draft', DRAFTER, '--draft-tree', '12', '--draft-max', '6']],
    ['n-grams', ['--draft', 'ngram']],
  ]) {
    test(`${name}: 8 concurrent speculative greedy streams equal the solo plain ones`, async () => {
      const srv = await startServer(['-np', '8', ...flags], {}, { model: TEACHER });
      try {
        const client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'x' });
        const props = await (await fetch(`${srv.base}/props`)).json();
        assert.equal(props.default_generation_settings.speculative, true);
        assert.equal(props.draft.model, flags[1]);
        const got = await Promise.all(PROMPTS.map((p) => stream(client, p)));
        let drafted = 0;
        let accepted = 0;
        for (let i = 0; i < PROMPTS.length; i++) {
          assert.equal(got[i].text, solo[i].text, `prompt ${i} (${PROMPTS[i]})`);
          assert.equal(got[i].finish, solo[i].finish);
          assert.equal(got[i].usage.completion_tokens, solo[i].usage.completion_tokens);
          const u = got[i].usage;
          assert.ok(Number.isInteger(u.draft_tokens) && Number.isInteger(u.draft_accepted), JSON.stringify(u));
          assert.ok(u.draft_accepted <= u.draft_tokens);
          drafted += u.draft_tokens;
          accepted += u.draft_accepted;
          assert.equal(solo[i].usage.draft_tokens, undefined); // plain requests carry no draft fields
        }
        if (flags[1] !== 'ngram') assert.ok(accepted > 0, 'the distilled drafter is accepted sometimes');
        const m = await waitIdle(srv.base);
        assert.equal(m.aerollm_draft_tokens_total, drafted);
        assert.equal(m.aerollm_draft_accepted_total, accepted);
      } finally {
        assert.equal((await srv.stop()).code, 0);
      }
    });
  }

  test('sampled, non-streamed, constrained and logprobs requests beside speculative ones', async () => {
    const srv = await startServer(['-np', '4', '--draft', DRAFTER], {}, { model: TEACHER });
    try {
      const client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'x' });
      const [sampled, whole, json, lp, greedy] = await Promise.all([
        stream(client, PROMPTS[0], { temperature: 0.8, seed: 7 }),
        client.completions.create({ model: M, prompt: PROMPTS[1], max_tokens: N, temperature: 0 }),
        client.chat.completions.create({
          model: M, messages: [{ role: 'user', content: 'Give me a JSON object' }], max_tokens: 40,
          temperature: 0, response_format: { type: 'json_object' },
        }),
        client.completions.create({ model: M, prompt: PROMPTS[2], max_tokens: 20, temperature: 0, logprobs: 2 }),
        stream(client, PROMPTS[3]),
      ]);
      assert.equal(sampled.usage.completion_tokens, N);
      assert.ok(sampled.usage.draft_tokens >= sampled.usage.draft_accepted);
      assert.equal(whole.choices[0].text, solo[1].text);
      assert.ok(whole.usage.draft_tokens > 0);
      assert.equal(greedy.text, solo[3].text);
      // a constrained request does not draft: it is still valid JSON (or cut by length)
      assert.equal(json.usage.draft_tokens, undefined);
      if (json.choices[0].finish_reason === 'stop') JSON.parse(json.choices[0].message.content);
      assert.equal(lp.usage.draft_tokens, undefined);
      assert.equal(lp.choices[0].logprobs.tokens.length, 20);
      assert.equal(lp.choices[0].text, solo[2].text.slice(0, lp.choices[0].text.length));
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });
});
