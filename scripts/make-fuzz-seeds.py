#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/seeds/<target>/) from the repository's real files: the chat
templates of tests/data, the example data, the task files, and a tiny checkpoint, configs, .npy arrays, a
bitsandbytes quant_state and samples.jsonl records made here in the formats the readers expect."""
import json
import struct
from pathlib import Path

root = Path(__file__).resolve().parent.parent
seeds = root / "fuzz" / "seeds"


def put(target, name, data):
    d = seeds / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def copy_all(target, files):
    for f in files:
        put(target, f"{f.parent.name}-{f.name}", f.read_bytes())


copy_all("fuzz_jinja", sorted((root / "tests/data/chat_templates").glob("*.jinja")))
copy_all("fuzz_eval_readers", sorted((root / "examples/data").glob("*/*.tsv")))
medqa = (root / "examples/data/MedQA/test.tsv").read_text().splitlines()[1]
put("fuzz_eval_readers", "medqa-options.txt", medqa.split("\t")[-1])
copy_all("fuzz_task_yaml", sorted((root / "tasks").glob("*.yaml")))


def config(arch, hidden, inter, layers, heads, kv, vocab, **extra):
    c = {"architectures": ["X"], "model_type": arch, "hidden_size": hidden, "intermediate_size": inter,
         "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
         "head_dim": hidden // heads, "vocab_size": vocab, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
         "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1,
         "eos_token_id": [2, 3]}
    c.update(extra)
    return json.dumps(c, indent=2)


put("fuzz_model_config", "llama3.json", config("llama", 4096, 14336, 32, 32, 8, 128256, rope_scaling={
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192}))
put("fuzz_model_config", "qwen2.json", config("qwen2", 3584, 18944, 28, 28, 4, 152064, rope_theta=1e6))
put("fuzz_model_config", "phi3.json", config("phi3", 5120, 17920, 40, 40, 10, 100352, partial_rotary_factor=1.0))
put("fuzz_model_config", "v5.json", config("mistral", 4096, 14336, 32, 32, 8, 32000, rope_parameters={
    "rope_type": "linear", "factor": 2.0, "rope_theta": 1e6}))


def safetensors(tensors):
    """tensors: (name, shape) of BF16 tensors holding small values."""
    header, body = {}, b""
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        data = b"".join(struct.pack("<H", 0x3F80 if len(shape) == 1 else 0x3C00 + (i % 7)) for i in range(n))
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + body


H, I, V, L = 8, 16, 16, 2
names = [("model.embed_tokens.weight", [V, H])]
for i in range(L):
    p = f"model.layers.{i}."
    names += [(p + "input_layernorm.weight", [H]), (p + "self_attn.q_proj.weight", [H, H]),
              (p + "self_attn.k_proj.weight", [H // 2, H]), (p + "self_attn.v_proj.weight", [H // 2, H]),
              (p + "self_attn.o_proj.weight", [H, H]), (p + "post_attention_layernorm.weight", [H]),
              (p + "mlp.gate_proj.weight", [I, H]), (p + "mlp.up_proj.weight", [I, H]),
              (p + "mlp.down_proj.weight", [H, I])]
names += [("model.norm.weight", [H]), ("lm_head.weight", [V, H])]
half = len(names) // 2
shards = [names[:half], names[half:]]
files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
index = {"metadata": {"total_size": 0}, "weight_map": {n: files[s] for s in range(2) for n, _ in shards[s]}}
tiny = config("llama", H, I, L, 2, 1, V)
sep = b"@@BQ@@"
put("fuzz_checkpoint", "tiny-sharded", sep.join([json.dumps(index).encode(), safetensors(shards[0]),
                                                  safetensors(shards[1]), tiny.encode()]))
put("fuzz_safetensors", "tiny-shard.safetensors", safetensors(shards[0]))


def npy(descr, shape, data):
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


put("fuzz_npy", "f4-2x3.npy", npy("<f4", "(2, 3)", struct.pack("<6f", 1, 2, 3, 4, 5, 6)))
put("fuzz_npy", "f8-4.npy", npy("<f8", "(4,)", struct.pack("<4d", 1, -2, 0.5, 1e30)))
put("fuzz_npy", "f4-scalar.npy", npy("<f4", "()", struct.pack("<f", 7)))

put("fuzz_quant_state", "nf4.json", json.dumps({
    "quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [64, 64], "nested_blocksize": 256,
    "nested_offset": 0.0123, "nested_dtype": "float32"}))
put("fuzz_quant_state", "nf4-plain.json", json.dumps({
    "quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [64, 64]}))

records = [{"task": "medqa", "id": "0", "split": "test", "prompt_tokens": 90, "raw": "B", "pred": ["B"],
            "gold": ["B"]},
           {"task": "pubmedqa", "id": "12", "raw": "yes\n", "pred": ["yes"], "gold": ["no"], "ms": 12.5}]
put("fuzz_samples", "samples.jsonl", "".join(json.dumps(r) + "\n" for r in records))
put("fuzz_samples", "torn.jsonl", json.dumps(records[0]) + "\n" + json.dumps(records[1])[:30])
