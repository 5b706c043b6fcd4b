// Reference renderer for the Jinja differential tests: renders each case with @huggingface/jinja.
// Usage: node tests/jinja_reference.mjs ASSETS_DIR CASES.json
//   CASES.json: [{"template": "...", "context": {...}}, ...]
//   ASSETS_DIR: the folder holding node_modules/@huggingface/jinja (build/test-assets)
// Prints a JSON array with {"output": "..."} or {"error": "..."} per case.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const [assetsDir, casesPath] = process.argv.slice(2);
if (!casesPath || !assetsDir) {
  console.error("usage: node jinja_reference.mjs ASSETS_DIR CASES.json");
  process.exit(2);
}
const require = createRequire(path.resolve(assetsDir, "node_modules") + "/");
const { Template } = require("@huggingface/jinja");

const cases = JSON.parse(readFileSync(casesPath, "utf8"));
const results = cases.map(({ template, context }) => {
  try {
    return { output: new Template(template).render(context) };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(results));
