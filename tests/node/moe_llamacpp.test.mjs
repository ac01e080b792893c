// Mixture-of-experts models against llama.cpp, a reference no one here wrote: tiny synthetic qwen3moe,
// qwen2moe and Mixtral files (`aerollm synth` presets, F32 and Q8_0) decoded greedily by llama.cpp (through
// node-llama-cpp, scripts/llamacpp_ref.mjs) and by AeroLLM (build/tests/test_model_moe --greedy), resident
// and with the experts streamed through the expert cache. Greedy tokens must be equal and every step's top
// logits within the stated tolerance. The per-expert Mixtral layout (ffn_gate.E.weight) holds the same bytes
// as the merged one, and today's llama.cpp no longer loads it, so AeroLLM's run of it is checked against
// llama.cpp's run of the merged file. Skips when node-llama-cpp is not installed (CI).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { BIN, compare, llamaCppSkip, run } from './llamacpp_util.mjs';

const DUMP = 'build/tests/test_model_moe';
const PROMPT = '1,300,301,302,303,304';
const N = 32;
const TOP = 3;
// Relative to the step's largest |logit|. The two engines' logits differ by rounding (summation order, llama.cpp's
// F16 steps in attention, Q8_0 activations for Q8_0 weights): the dense `tiny` preset, run as a control, shows
// the same level (about 1e-3 for F32) as the MoE files, so the tolerance measures the MoE path, not llama.cpp.
const TOL = { F32: 2e-3, Q8_0: 5e-2 };

const skip = llamaCppSkip(DUMP, 'test_model_moe');

test('MoE models match llama.cpp', { skip }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aero-moe-'));
  try {
    const cases = [
      ['tiny', 'F32'], ['tiny', 'Q8_0'], ['qwen3moe-tiny', 'F32'], ['qwen3moe-tiny', 'Q8_0'], ['qwen2moe-tiny', 'F32'],
      ['mixtral-tiny', 'F32'], ['mixtral-tiny', 'Q8_0'],
    ];
    for (const [preset, type, seed = 0] of cases) { // seed: one whose text has no near-tie in its first 16 steps
      const file = path.join(dir, `${preset}-${type}.gguf`);
      run(BIN, ['synth', '--preset', preset, '--type', type, '--seed', String(seed), '-t', '2', '-o', file]);
      const ref = JSON.parse(run('node', ['scripts/llamacpp_ref.mjs', '-m', file, '-t', PROMPT, '-n', String(N),
        '--top', String(TOP)]));
      const files = [[file, preset]];
      if (preset === 'mixtral-tiny') { // the older per-expert layout, same bytes
        const split = path.join(dir, `mixtral-tiny-split-${type}.gguf`);
        run(BIN, ['synth', '--preset', 'mixtral-tiny-split', '--type', type, '--seed', String(seed), '-t', '2', '-o', split]);
        files.push([split, 'mixtral-tiny-split']);
      }
      for (const [f, name] of files) {
        // resident, then experts streamed: the smallest budget the model takes (asked from the loader's message)
        const res = JSON.parse(run(DUMP, ['--greedy', f, PROMPT, String(N), String(TOP)]));
        const [w, steps] = compare(`${name} ${type} resident`, ref, res, TOL[type]);
        if (preset === 'tiny') { // the dense control
          console.log(`${name} ${type} (dense control): worst top-${TOP} logit difference ${w.toExponential(2)}`);
          continue;
        }
        const probe = spawnSync(DUMP, ['--greedy', f, PROMPT, '1', '1', '1'], { encoding: 'utf8' });
        const min = /\((\d+) bytes\)/.exec(probe.stderr);
        assert.ok(min, `no minimum budget in: ${probe.stderr}`);
        const str = JSON.parse(run(DUMP, ['--greedy', f, PROMPT, String(N), String(TOP), min[1]]));
        assert.deepEqual(str, res, `${name} ${type}: experts streamed under ${min[1]} bytes equal the resident run`);
        console.log(`${name} ${type}: ${steps} of ${N} greedy tokens compared${steps < N ? ' (then a near-tie)' : ''}, ` +
          `equal to llama.cpp's; worst top-${TOP} logit difference ` +
          `${w.toExponential(2)} of the largest; streamed under --mem ${min[1]} identical`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
