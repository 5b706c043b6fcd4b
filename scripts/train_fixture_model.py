#!/usr/bin/env python3
"""Trains the small Llama model that the real-outputs tests evaluate (tests/fixtures/trained-llama/).

Its answers have the formats a real model's have (HTML with <span>s, labels, JSON objects, option letters) and often
the wrong content, which is what the harness must survive and score exactly. It is trained on the prompts biomedq
itself builds with the benchmark's prompt files (`biomedq data prompts --prompts benchmark`), so what it saw in
training is byte for byte what `eval --prompts benchmark` sends it.

Run on the GPU machine (torch, transformers, tokenizers, jinja2), from the repository root:
    python3 scripts/train_fixture_model.py PROMPTS_DIR OUT_DIR [--minutes M]
PROMPTS_DIR holds one gzipped JSON-lines file per task from `biomedq data prompts` (scripts/make_fixture_model.sh writes
them: train split where the data has one, else dev; LitCovid, which has a test split only, with the examples the
tests evaluate left out). OUT_DIR receives config.json, model.safetensors (bf16), tokenizer.json,
tokenizer_config.json, generation_config.json and training.json (what was trained, on what, and the losses); plus
greedy.jsonl: transformers' greedy answers (fp32) to held-out prompts, which the tests compare with biomedq's.
"""
import argparse
import gzip
import json
import math
import os
import random
import sys
import time

import torch
from jinja2 import Template
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

SPECIALS = ["<|pad|>", "<|bos|>", "<|end|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
                 "<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
VOCAB = 4096
MAX_LEN = 1024          # prompt + answer tokens; longer examples are dropped from training
PER_TASK = 4000         # examples per task at most (small tasks are repeated up to this many draws an epoch)
HELD_OUT = 8            # prompts per task kept out of training for the greedy parity file
SEED = 20261203


def read_records(prompts_dir):
    by_task = {}
    for name in sorted(os.listdir(prompts_dir)):
        if not name.endswith(".jsonl.gz"):
            continue
        with gzip.open(os.path.join(prompts_dir, name), "rt", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                by_task.setdefault(r["task"], []).append(r)
    return by_task


def answer_text(record):
    """The answer as the benchmark's own examples write it: multi-label answers as an indented JSON object."""
    a = record["answer"]
    if a.startswith("{"):
        return json.dumps(json.loads(a), indent=2)
    return a


def train_tokenizer(texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("prompts_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--minutes", type=float, default=6.0, help="training time budget")
    args = ap.parse_args()
    random.seed(SEED)
    torch.manual_seed(SEED)
    by_task = read_records(args.prompts_dir)
    os.makedirs(args.out_dir, exist_ok=True)

    chat = Template(CHAT_TEMPLATE)
    def render(prompt):
        return chat.render(messages=[{"role": "user", "content": prompt}], add_generation_prompt=True,
                           bos_token="<|bos|>")

    texts = [render(r["prompt"]) + answer_text(r) for rs in by_task.values() for r in rs]
    random.shuffle(texts)
    tok = train_tokenizer(texts[:20000])
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    end_id = ids["<|end|>"]

    held_out, train = {}, {}
    for task, rs in by_task.items():
        rs = list(rs)
        random.shuffle(rs)
        held_out[task], train[task] = rs[:HELD_OUT], rs[HELD_OUT:]

    def encode(r):
        p = tok.encode(render(r["prompt"]), add_special_tokens=False).ids
        a = tok.encode(answer_text(r), add_special_tokens=False).ids + [end_id]
        return p, a

    examples, counts = [], {}
    for task, rs in train.items():
        enc = [e for e in (encode(r) for r in rs) if len(e[0]) + len(e[1]) <= MAX_LEN]
        counts[task] = len(enc)
        draws = [enc[i % len(enc)] for i in range(min(PER_TASK, max(len(enc), PER_TASK // 2)))]
        examples += draws
    print("training examples per task:", counts, "total draws per epoch:", len(examples), flush=True)

    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=256, intermediate_size=768,
                      num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                      max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, bos_token_id=ids["<|bos|>"], eos_token_id=end_id,
                      pad_token_id=ids["<|pad|>"], hidden_act="silu", attention_bias=False, mlp_bias=False)
    dev = torch.device("cuda")
    model = LlamaForCausalLM(cfg).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params/1e6:.2f} M", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.05)

    # Batches of similar length; loss on the answer tokens (and the end token) only.
    tokens_per_batch = 64 * 1024
    def batches():
        order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]) + len(examples[i][1]) + random.random())
        chunk, out = [], []
        for i in order:
            chunk.append(i)
            longest = max(len(examples[j][0]) + len(examples[j][1]) for j in chunk)
            if longest * len(chunk) >= tokens_per_batch:
                out.append(chunk)
                chunk = []
        if chunk:
            out.append(chunk)
        random.shuffle(out)
        return out

    def collate(chunk):
        seqs = [examples[i][0] + examples[i][1] for i in chunk]
        n = max(len(s) for s in seqs)
        x = torch.full((len(seqs), n), ids["<|pad|>"], dtype=torch.long)
        y = torch.full((len(seqs), n), -100, dtype=torch.long)
        for k, i in enumerate(chunk):
            p, a = examples[i]
            s = p + a
            x[k, :len(s)] = torch.tensor(s)
            y[k, len(p):len(s)] = torch.tensor(a)
        return x.to(dev), y.to(dev)

    budget = args.minutes * 60
    start = time.time()
    step, losses, epoch = 0, [], 0
    model.train()
    while time.time() - start < budget:
        epoch += 1
        for chunk in batches():
            elapsed = time.time() - start
            if elapsed >= budget:
                break
            frac = elapsed / budget  # cosine schedule over the time budget, short warm-up
            lr = 2e-3 * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * frac))
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = collate(chunk)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(input_ids=x).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)),
                                                     y[:, 1:].reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            losses.append(loss.item())
            if step % 100 == 0:
                print(f"epoch {epoch} step {step} loss {sum(losses[-100:])/100:.4f} lr {lr:.2e} "
                      f"{elapsed:.0f}s", flush=True)

    model.eval()
    model = model.to(torch.bfloat16)
    model.config.torch_dtype = torch.bfloat16
    model.save_pretrained(args.out_dir, safe_serialization=True)
    tok.save(os.path.join(args.out_dir, "tokenizer.json"))
    with open(os.path.join(args.out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|bos|>", "eos_token": "<|end|>", "pad_token": "<|pad|>",
                   "chat_template": CHAT_TEMPLATE, "model_max_length": 2048,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)

    # transformers' greedy answers to held-out prompts, in fp32 from the saved bf16 weights.
    ref = LlamaForCausalLM.from_pretrained(args.out_dir, torch_dtype=torch.float32).to(dev).eval()
    with open(os.path.join(args.out_dir, "greedy.jsonl"), "w") as f:
        for task in sorted(held_out):
            for r in held_out[task][:2]:
                p = tok.encode(render(r["prompt"]), add_special_tokens=False).ids
                out = ref.generate(torch.tensor([p], device=dev), max_new_tokens=48, do_sample=False,
                                   eos_token_id=end_id, pad_token_id=ids["<|pad|>"])
                new = out[0, len(p):].tolist()
                f.write(json.dumps({"task": task, "id": r["id"], "prompt": r["prompt"], "ids": new,
                                    "text": tok.decode(new, skip_special_tokens=True)}) + "\n")
    with open(os.path.join(args.out_dir, "training.json"), "w") as f:
        json.dump({"script": "scripts/train_fixture_model.py", "seed": SEED, "parameters": n_params,
                   "steps": step, "epochs": epoch, "minutes": (time.time() - start) / 60,
                   "examples_per_task": counts, "final_loss": sum(losses[-100:]) / max(1, len(losses[-100:])),
                   "torch": torch.__version__}, f, indent=2)
    print("saved", args.out_dir, flush=True)


if __name__ == "__main__":
    sys.exit(main())
