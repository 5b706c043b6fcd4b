// Reference results from @huggingface/tokenizers (the JS port of Hugging Face tokenizers) for the differential
// tokenizer tests. Usage: node tokenizer_reference.mjs ASSETS_DIR MODEL_DIR IN.json OUT.json
// IN.json: {"texts": [string...], "decode": [[id...]...]}. OUT.json: {"ids": [[id...]...] (no special tokens),
// "ids_special": [[id...]...] (with them), "decoded": [string...] (of "decode", specials kept, no clean-up)}.
import fs from "fs";
import path from "path";
import { pathToFileURL } from "url";

const [assets, modelDir, inPath, outPath] = process.argv.slice(2);
const lib = path.join(assets, "node_modules/@huggingface/tokenizers/dist/tokenizers.mjs");
const { Tokenizer } = await import(pathToFileURL(lib).href);
const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));
const configPath = path.join(modelDir, "tokenizer_config.json");
const tokenizer = new Tokenizer(readJson(path.join(modelDir, "tokenizer.json")),
                                fs.existsSync(configPath) ? readJson(configPath) : {});
const input = readJson(inPath);
const out = { ids: [], ids_special: [], decoded: [] };
for (const text of input.texts) {
  out.ids.push(tokenizer.encode(text, { add_special_tokens: false }).ids);
  out.ids_special.push(tokenizer.encode(text, { add_special_tokens: true }).ids);
}
for (const ids of input.decode ?? []) {
  out.decoded.push(ids.length ? tokenizer.decode(ids, { clean_up_tokenization_spaces: false }) : "");
}
fs.writeFileSync(outPath, JSON.stringify(out));
