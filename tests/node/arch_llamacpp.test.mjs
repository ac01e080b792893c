// Architectures, hyperparameters and tensor types against llama.cpp, a reference no one here wrote: tiny
// synthetic models (`aerollm synth`, with llama.cpp's tensor names and metadata keys) decoded greedily by
// llama.cpp (through node-llama-cpp, scripts/llamacpp_ref.mjs) and by AeroLLM (build/tests/test_arch --greedy).
// Greedy tokens must be equal (up to a near-tie of llama.cpp's two best logits) for at least 32 steps where the
// text allows, and every step's top logits within the stated tolerance of the step's largest |logit|.
// Skips when node-llama-cpp is not installed (CI).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, compare, llamaCppSkip, run } from './llamacpp_util.mjs';

const DUMP = 'build/tests/test_arch';
const PROMPT = '1,300,301,302,303,304';
const N = 32;
const TOP = 3;

const skip = llamaCppSkip(DUMP, 'test_arch');

// [name, synth arguments, tolerance, minimum steps compared]
const CASES = [
  ['llama (control)', ['--preset', 'tiny', '--type', 'F32'], 2e-3, 32],
  ['llama tied output (no output.weight)', ['--preset', 'tiny', '--tied', '--type', 'F32'], 2e-3, 32],
  ['llama head size 128 != 256/4 (Mistral Nemo shape)', ['--preset', 'tiny', '--head-dim', '128', '--type', 'F32'], 2e-3, 32],
  ['rope linear (type linear, factor 4)', ['--preset', 'tiny', '--type', 'F32', '--kv', 'llama.rope.scaling.type=str:linear', '--kv', 'llama.rope.scaling.factor=f32:4'], 2e-3, 32],
  ['rope factor 4 without a type (llama.cpp: linear)', ['--preset', 'tiny', '--type', 'F32', '--kv', 'llama.rope.scaling.factor=f32:4'], 2e-3, 32],
  ['rope type none with a factor (not scaled)', ['--preset', 'tiny', '--type', 'F32', '--kv', 'llama.rope.scaling.type=str:none', '--kv', 'llama.rope.scaling.factor=f32:4'], 2e-3, 32],
  ['rope YaRN factor 4, original context 64', ['--preset', 'tiny', '--type', 'F32', '--kv', 'llama.rope.scaling.type=str:yarn', '--kv', 'llama.rope.scaling.factor=f32:4', '--kv', 'llama.rope.scaling.original_context_length=u32:64'], 2e-3, 32],
  ['rope YaRN on qwen2 (neox); yarn_beta_* keys ignored as llama.cpp does for qwen2', ['--arch', 'qwen2', '--dim', '256', '--layers', '2', '--heads', '4', '--kv-heads', '2', '--ffn', '512', '--vocab', '512', '--ctx', '512', '--type', 'F32', '--kv', 'qwen2.rope.scaling.type=str:yarn', '--kv', 'qwen2.rope.scaling.factor=f32:8', '--kv', 'qwen2.rope.scaling.original_context_length=u32:128', '--kv', 'qwen2.rope.scaling.yarn_beta_fast=f32:16', '--kv', 'qwen2.rope.scaling.yarn_beta_slow=f32:2', '--seed', '1'], 2e-3, 32],
  ['rope attn_factor 1.5', ['--preset', 'tiny', '--type', 'F32', '--kv', 'llama.rope.scaling.attn_factor=f32:1.5'], 2e-3, 32],
  ['rope Llama 3.1 (rope_freqs tensor)', ['--preset', 'llama-1b', '--layers', '2', '--dim', '256', '--heads', '4', '--kv-heads', '2', '--ffn', '512', '--vocab', '512', '--ctx', '512', '--type', 'F32'], 2e-3, 32],
  ['gemma2 (window 8, caps 50/30)', ['--preset', 'gemma2-tiny', '--type', 'F32'], 2e-3, 32],
  ['gemma2 tight caps (attention 1, logits 0.8)', ['--preset', 'gemma2-tiny', '--type', 'F32', '--kv', 'gemma2.attn_logit_softcapping=f32:1', '--kv', 'gemma2.final_logit_softcapping=f32:0.8'], 2e-3, 32],
  ['gemma2 without a window key (4096)', ['--preset', 'gemma2-tiny', '--type', 'F32', '--kv', 'gemma2.attention.sliding_window='], 2e-3, 32],
  ['gemma3 (5 local layers of 6, window 8, local rope base 10000, global linear x4)', ['--preset', 'gemma3-tiny', '--type', 'F32'], 2e-3, 32],
  ['gemma3 Q8_0, 7 layers', ['--preset', 'gemma3-tiny', '--layers', '7', '--type', 'Q8_0'], 5e-2, 16],
  ['phi3 (fused QKV and gate/up)', ['--preset', 'phi3-tiny', '--type', 'F32'], 2e-3, 32],
  ['phi3 LongRoPE, long factors (context above the original 32)', ['--preset', 'phi3-tiny-longrope', '--type', 'F32'], 2e-3, 32],
  ['phi3 LongRoPE, short factors (original context 100000)', ['--preset', 'phi3-tiny-longrope', '--type', 'F32', '--kv', 'phi3.rope.scaling.original_context_length=u32:100000'], 2e-3, 32],
  ['phi3 Q4_K_M mix (attn_qkv as attn_v)', ['--preset', 'phi3-tiny', '--layers', '8', '--type', 'Q4_K_M'], 5e-2, 16],
  ['llama IQ4_NL', ['--preset', 'tiny', '--type', 'IQ4_NL'], 5e-2, 16],
  ['llama IQ4_XS', ['--preset', 'tiny', '--type', 'IQ4_XS'], 5e-2, 16],
  ['qwen3 IQ4_XS (head 128)', ['--arch', 'qwen3', '--dim', '256', '--layers', '2', '--heads', '4', '--kv-heads', '2', '--head-dim', '128', '--ffn', '512', '--vocab', '512', '--ctx', '512', '--type', 'IQ4_XS'], 5e-2, 16],
  ['llama MXFP4', ['--preset', 'tiny', '--type', 'MXFP4'], 5e-2, 16],
  ['qwen3moe MXFP4 experts (as gpt-oss files hold them)', ['--preset', 'qwen3moe-tiny', '--type', 'MXFP4'], 5e-2, 16],
  ['granite (embedding 12, attention 1/64, residual 0.22, logits /8)', ['--preset', 'granite-tiny', '--type', 'F32'], 2e-3, 32],
  ['granite without rope (rope.scaling.finetuned false)', ['--preset', 'granite-tiny', '--type', 'F32', '--kv', 'granite.rope.scaling.finetuned=bool:false'], 2e-3, 32],
  ['olmo2 (no pre-norms, whole-projection Q/K norms, post norms)', ['--preset', 'olmo2-tiny', '--type', 'F32', '--seed', '1'], 2e-3, 32],
  ['olmo2 Q8_0', ['--preset', 'olmo2-tiny', '--type', 'Q8_0'], 5e-2, 16],
  ['llama IQ3_S', ['--preset', 'tiny', '--type', 'IQ3_S'], 5e-2, 16],
  ['llama IQ3_XXS', ['--preset', 'tiny', '--type', 'IQ3_XXS', '--seed', '1'], 5e-2, 16],
  ['llama IQ2_XS', ['--preset', 'tiny', '--type', 'IQ2_XS', '--seed', '3'], 5e-2, 16],
  ['llama IQ2_XXS', ['--preset', 'tiny', '--type', 'IQ2_XXS', '--seed', '1'], 5e-2, 16],
  ['mistral3 (head 128 != 256/4, YaRN x4 over 8 with log multiplier 1, betas 16/2, temperature 0.5 per 8 positions)', ['--preset', 'mistral3-tiny', '--type', 'F32', '--kv', 'mistral3.rope.scaling.type=str:yarn', '--kv', 'mistral3.rope.scaling.factor=f32:4', '--kv', 'mistral3.rope.scaling.original_context_length=u32:8', '--kv', 'mistral3.rope.scaling.yarn_log_multiplier=f32:1', '--kv', 'mistral3.rope.scaling.yarn_beta_fast=f32:16', '--kv', 'mistral3.rope.scaling.yarn_beta_slow=f32:2', '--kv', 'mistral3.attention.temperature_scale=f32:0.5'], 2e-3, 32],
  ['llama Q4_K_M mix', ['--preset', 'tiny', '--layers', '8', '--type', 'Q4_K_M', '--seed', '3'], 5e-2, 16],
];

export function caseList() { return CASES; }

test('architectures and hyperparameters match llama.cpp', { skip }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aero-arch-'));
  const only = process.env.ARCH_ONLY ? new RegExp(process.env.ARCH_ONLY) : null;
  try {
    // every model first, then llama.cpp over all of them in one process (loading it is most of a case's time)
    const cases = CASES.filter(([name]) => !only || only.test(name)).map((c, i) => [...c, path.join(dir, `case${i}.gguf`)]);
    for (const [, args, , , file] of cases) run(BIN, ['synth', ...args, '-t', '2', '-q', '-o', file]);
    const refs = run('node', ['scripts/llamacpp_ref.mjs', ...cases.flatMap((c) => ['-m', c[4]]), '-t', PROMPT,
      '-n', String(N), '--top', String(TOP)]).trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(refs.length, cases.length, 'one llama.cpp reference per model');
    for (const [k, [name, , tol, minSteps, file]] of cases.entries()) {
      const ref = refs[k];
      assert.equal(ref.model, file);
      const got = JSON.parse(run(DUMP, ['--greedy', file, PROMPT, String(N), String(TOP)]));
      const [w, steps] = compare(name, ref, got, tol, { minSteps, anyTop: true });
      console.log(`${name}: ${steps} of ${N} greedy tokens equal to llama.cpp's${steps < N ? ' (then a near-tie)' : ''}; ` +
        `worst top-${TOP} logit difference ${w.toExponential(2)} of the largest`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// BOS as llama.cpp decides it when tokenizer.ggml.add_bos_token is absent: per vocabulary type and pre-tokenizer
// (a BPE vocabulary adds BOS only for the Llama 3 family), and no BOS at all when the file names no BOS id.
test('BOS defaults without add_bos_token match llama.cpp', { skip }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aero-bos-'));
  try {
    const files = [];
    for (const pre of ['gpt-2', 'llama-bpe', 'llama3', 'dbrx', 'smaug-bpe', 'qwen2', 'tekken', 'default']) {
      const f = path.join(dir, `bpe-${pre}.gguf`);
      run(BIN, ['synth', '--preset', 'tiny', '--layers', '1', '--kv', 'tokenizer.ggml.add_bos_token=',
        '--kv', `tokenizer.ggml.pre=str:${pre}`, '-q', '-o', f]);
      files.push(f);
    }
    const nobos = path.join(dir, 'bpe-llama-bpe-no-bos-id.gguf');
    run(BIN, ['synth', '--preset', 'tiny', '--layers', '1', '--kv', 'tokenizer.ggml.add_bos_token=', '--kv',
      'tokenizer.ggml.bos_token_id=', '--kv', 'tokenizer.ggml.pre=str:llama-bpe', '-q', '-o', nobos]);
    files.push(nobos);
    const spm = '../shared/data/models/stories260K.gguf';
    if (fs.existsSync(spm)) {
      const f = path.join(dir, 'spm.gguf');
      run(BIN, ['synth', '--preset', 'tiny', '--layers', '1', '--tokenizer-from', spm, '--kv',
        'tokenizer.ggml.add_bos_token=', '-q', '-o', f]);
      files.push(f);
    }
    const ref = JSON.parse(run('node', ['scripts/llamacpp_vocab.mjs', ...files]));
    for (const f of files) {
      const ids = run(BIN, ['tokenize', '-m', f, '-p', 'hello world', '--ids']).trim().split(/\s+/).map(Number);
      const r = ref[f];
      const adds = r.bos !== null && ids[0] === r.bos;
      assert.equal(adds, r.addBos, `${path.basename(f)}: llama.cpp ${r.addBos ? 'adds' : 'does not add'} BOS ${r.bos}; ours: ${ids.join(' ')}`);
      console.log(`${path.basename(f)}: BOS ${r.addBos ? 'added' : 'not added'} as llama.cpp does`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
