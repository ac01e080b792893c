// What the llama.cpp comparisons share (moe_, deepseek_ and arch_llamacpp.test.mjs): finding node-llama-cpp, the
// skip reason, running a tool, and comparing greedy tokens and top logits against llama.cpp's.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

export const BIN = process.env.AEROLLM || 'build/aerollm';

// The node-llama-cpp package (scripts/llamacpp_ref.mjs loads it), or null.
export function llamaCppDir() {
  for (const d of [process.env.NODE_LLAMA_CPP, '/work/peer/node_modules/node-llama-cpp']) {
    if (!d) continue;
    if (fs.existsSync(path.join(d, 'package.json')) || fs.existsSync(path.join(d, 'node-llama-cpp'))) return d;
  }
  return null;
}

// The test's skip reason (false: run): no llama.cpp, or the binaries not built (target: the make test name).
export function llamaCppSkip(dump, target) {
  return !llamaCppDir() ? 'node-llama-cpp not found (set NODE_LLAMA_CPP): no llama.cpp to compare with'
    : !fs.existsSync(BIN) || !fs.existsSync(dump) ? `${BIN} or ${dump} not built (make; make test T=${target})`
    : false;
}

export function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

// Greedy tokens equal up to the end, or up to a near-tie that rounding may break either way, where the
// comparison stops: llama.cpp's two best logits closer than the tolerance and ours the second of them, or, with
// anyTop, ours any of llama.cpp's best within the tolerance of its top. Every compared step's top logits within
// tol relative to the step's largest |logit|. Returns [worst, steps compared].
export function compare(name, ref, got, tol, { minSteps = 16, anyTop = false } = {}) {
  let worst = 0, n = ref.tokens.length;
  for (let i = 0; i < ref.tokens.length; i++) {
    const r = ref.steps[i].top, g = got.steps[i].top;
    const scale = Math.max(...r.map((x) => Math.abs(x[1])));
    for (const [id, lg] of r) {
      const mine = g.find((x) => x[0] === id);
      if (mine) worst = Math.max(worst, Math.abs(mine[1] - lg) / scale);
    }
    if (got.tokens[i] !== ref.tokens[i]) {
      let tie;
      if (anyTop) {
        const mine = r.find((x) => x[0] === got.tokens[i]);
        tie = mine !== undefined && r[0][1] - mine[1] <= tol * scale;
      } else {
        tie = r.length > 1 && r[0][1] - r[1][1] <= tol * scale && got.tokens[i] === r[1][0];
      }
      assert.ok(tie, `${name}: step ${i}: token ${got.tokens[i]}, llama.cpp ${ref.tokens[i]} (top ${JSON.stringify(r)}, ours ${JSON.stringify(g)})`);
      n = i + 1;
      break;
    }
  }
  assert.ok(n >= minSteps, `${name}: a near-tie after only ${n} steps; use another seed or prompt`);
  assert.ok(worst <= tol, `${name}: top logits within ${tol} relative of llama.cpp's (worst ${worst.toExponential(2)})`);
  return [worst, n];
}
