// The official OpenAI client against `biomedq serve` (run by tests/test_serve.cpp):
//   node serve_client.mjs NODE_MODULES_DIR BASE_URL PROMPT MAX_TOKENS
// Prints one JSON object: the greedy chat answer, the same answer streamed, an n=2 answer and what an invalid
// request raised, for the C++ test to compare with `biomedq generate`.
import { createRequire } from "node:module";
import path from "node:path";

const [modulesDir, baseURL, prompt, maxTokens] = process.argv.slice(2);
const require = createRequire(path.join(modulesDir, "noop.js"));
const OpenAI = require("openai");
const client = new OpenAI({ baseURL, apiKey: "unused-on-loopback", maxRetries: 0 });

const ask = { model: "local", messages: [{ role: "user", content: prompt }], max_tokens: Number(maxTokens), temperature: 0 };
const chat = await client.chat.completions.create(ask);

let streamed = "", streamFinish = null, usage = null;
const stream = await client.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } });
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    streamed += c.delta?.content ?? "";
    if (c.finish_reason) streamFinish = c.finish_reason;
  }
}

const two = await client.chat.completions.create({ ...ask, n: 2 });

let error = null;
try {
  await client.chat.completions.create({ ...ask, max_tokens: -5 });
} catch (e) {
  error = { status: e.status, param: e.param ?? e.error?.param ?? null, type: e.type ?? e.error?.type ?? null };
}

console.log(JSON.stringify({
  chat: chat.choices[0].message.content,
  chat_finish: chat.choices[0].finish_reason,
  chat_usage: chat.usage,
  streamed,
  stream_finish: streamFinish,
  stream_usage: usage,
  n2: two.choices.map((c) => c.message.content),
  n2_indexes: two.choices.map((c) => c.index),
  error,
}));
