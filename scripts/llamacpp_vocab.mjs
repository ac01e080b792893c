#!/usr/bin/env node
// llama.cpp's reading of a GGUF vocabulary's defaults: for each model file, the BOS and EOS ids and whether
// llama.cpp prepends BOS (llama_vocab_get_add_bos), as one JSON object keyed by file. Found as
// scripts/llamacpp_ref.mjs finds node-llama-cpp ($NODE_LLAMA_CPP, else /work/peer/node_modules).
//
//   node scripts/llamacpp_vocab.mjs A.gguf B.gguf ...
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

function findPackage() {
  const cands = [];
  if (process.env.NODE_LLAMA_CPP) cands.push(process.env.NODE_LLAMA_CPP, path.join(process.env.NODE_LLAMA_CPP, 'node-llama-cpp'));
  cands.push('/work/peer/node_modules/node-llama-cpp');
  for (const dir of cands) if (existsSync(path.join(dir, 'dist', 'index.js'))) return path.join(dir, 'dist', 'index.js');
  throw new Error(`node-llama-cpp not found (set NODE_LLAMA_CPP); looked in: ${cands.join(', ')}`);
}

const { getLlama, LlamaLogLevel } = await import(pathToFileURL(findPackage()).href);
const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel?.error ?? 'error' });
const out = {};
for (const f of process.argv.slice(2)) {
  const model = await llama.loadModel({ modelPath: path.resolve(f), gpuLayers: 0, vocabOnly: true });
  out[f] = { bos: model.tokens.bos ?? null, eos: model.tokens.eos ?? null, addBos: model.tokens.shouldPrependBosToken };
  await model.dispose();
}
process.stdout.write(JSON.stringify(out) + '\n');
await llama.dispose();
