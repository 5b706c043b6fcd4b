#!/usr/bin/env python3
"""Builds tiny random Hugging Face checkpoints of each architecture variant biomedq supports and saves transformers'
float32 logits and greedy continuations for them, as test fixtures (tests/fixtures/parity/<variant>/).

Run on a machine with torch + transformers (the GPU machine):  python3 scripts/make_parity_fixtures.py OUT_DIR [NAME...]
(NAME: only those variants; each variant's random draws start from the same seed, so one made alone is as made with
all of them.)
The engine's parity test (tests/model/test_parity.cpp) loads each checkpoint and compares.
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, Gemma3ForConditionalGeneration

BASE = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=300, max_position_embeddings=512,
            rms_norm_eps=1e-5, initializer_range=0.15, hidden_act="silu", bos_token_id=1, eos_token_id=2,
            pad_token_id=0, tie_word_embeddings=False)

GEMMA3_TEXT = dict(model_type="gemma3_text", num_hidden_layers=3, head_dim=16, query_pre_attn_scalar=20,
                   hidden_act=None, hidden_activation="gelu_pytorch_tanh", sliding_window=12,
                   layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                   rope_theta=1000000.0, rope_scaling=dict(rope_type="linear", factor=2.0),
                   rope_local_base_freq=10000.0, tie_word_embeddings=True, final_logit_softcapping=None,
                   attn_logit_softcapping=None)
TINY_SIGLIP = dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                   num_attention_heads=2, image_size=28, patch_size=14)
ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "phi3": "Phi3ForCausalLM",
        "mistral": "MistralForCausalLM", "qwen3": "Qwen3ForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}

# name -> (config fields, rope spelling written to config.json, max shard size)
VARIANTS = {
    # llama3 frequency scaling with an original context of 64, so that at head_dim 16 and theta 5e5 all three
    # wavelength bands (kept, interpolated, divided) occur; sharded files; transformers v5 spelling.
    "llama3-sharded": (dict(model_type="llama", rope_theta=500000.0,
                            rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                              high_freq_factor=4.0, original_max_position_embeddings=64)),
                       "v5", "60KB"),
    # transformers v4 spelling (rope_theta + rope_scaling), linear scaling.
    "llama-linear-v4": (dict(model_type="llama", rope_theta=10000.0, rope_scaling=dict(rope_type="linear", factor=2.0)),
                        "v4", None),
    "qwen2-bias-tied": (dict(model_type="qwen2", rope_theta=1000000.0, rope_scaling=None, tie_word_embeddings=True,
                             eos_token_id=[2, 3]), "v4", None),
    "phi3-fused": (dict(model_type="phi3", rope_theta=10000.0, rope_scaling=None), "v5", None),
    "mistral": (dict(model_type="mistral", rope_theta=1000000.0, rope_scaling=None, sliding_window=4096), "v4", None),
    # q/k norms per head; head_dim 24 so that heads x head_dim (96) differs from hidden (64); tied embeddings.
    "qwen3-qknorm-tied": (dict(model_type="qwen3", rope_theta=1000000.0, rope_scaling=None, head_dim=24,
                               tie_word_embeddings=True, attention_bias=False, use_sliding_window=False),
                          "v5", None),
    # Gemma 3: a sliding window of 12 (shorter than the 48-token prompt) on two layers of three, the local RoPE base
    # on those, linear scaling on the global one, query_pre_attn_scalar unlike head_dim, GELU, 1 + w norms.
    "gemma3-sliding": (dict(GEMMA3_TEXT), "v4", None),
    # The text tower of a Gemma3ForConditionalGeneration (tiny SigLIP vision tower beside it), v5 spelling.
    "gemma3-mm-tower": (dict(text_config=dict(GEMMA3_TEXT), vision_config=TINY_SIGLIP), "v5", None),
}

N_IDS = 48
N_GREEDY = 16


def config_json(fields, spelling):
    """The config.json we write ourselves, so both spellings are covered whatever transformers writes."""
    if "text_config" in fields:  # a multimodal wrapper: the text model's config nested, the wrapper's fields around it
        text = config_json(fields["text_config"], spelling)
        del text["architectures"]
        return {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "text_config": text,
                "vision_config": fields["vision_config"], "mm_tokens_per_image": 4, "image_token_index": 1000,
                "boi_token_index": 998, "eoi_token_index": 999, "tie_word_embeddings": True,
                "bos_token_id": BASE["bos_token_id"], "eos_token_id": BASE["eos_token_id"],
                ("dtype" if spelling == "v5" else "torch_dtype"): "bfloat16"}
    c = dict(BASE)
    c.update(fields)
    c = {k: v for k, v in c.items() if not (k == "hidden_act" and v is None)}
    c["architectures"] = [ARCH[c["model_type"]]]
    rope = c.pop("rope_scaling")
    theta = c.pop("rope_theta")
    if spelling == "v5" and "rope_local_base_freq" in c:  # gemma3: one entry per layer type
        glob = dict(rope) if rope else {"rope_type": "default"}
        glob["rope_theta"] = theta
        c["rope_parameters"] = {"full_attention": glob,
                                "sliding_attention": {"rope_type": "default",
                                                      "rope_theta": c.pop("rope_local_base_freq")}}
        c["dtype"] = "bfloat16"
    elif spelling == "v5":
        params = dict(rope) if rope else {"rope_type": "default"}
        params["rope_theta"] = theta
        c["rope_parameters"] = params
        c["dtype"] = "bfloat16"
    else:
        c["rope_theta"] = theta
        if rope:
            rope = dict(rope)
            rope["type"] = rope["rope_type"]
        c["rope_scaling"] = rope
        c["torch_dtype"] = "bfloat16"
    return c


def main(out_root, names):
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, (fields, spelling, shard) in VARIANTS.items():
        if names and name not in names:
            continue
        torch.manual_seed(1234)  # per variant: making one alone gives the same files as making all
        out = os.path.join(out_root, name)
        os.makedirs(out, exist_ok=True)
        cj = config_json(fields, spelling)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cj, f, indent=2)
        config = AutoConfig.from_pretrained(out)
        cls = Gemma3ForConditionalGeneration if cj["model_type"] == "gemma3" else AutoModelForCausalLM
        text = getattr(config, "text_config", config)
        print(f"{name}: as transformers reads it: layer_types {getattr(text, 'layer_types', None)} "
              f"rope {getattr(text, 'rope_parameters', getattr(text, 'rope_scaling', None))}")
        model = cls.from_config(config, dtype=torch.float32) if cls is AutoModelForCausalLM else cls(config)
        gemma = "gemma" in cj["model_type"]
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname and not pname.endswith("bias"):
                    # gemma stores w - 1 and applies 1 + w: applied weights near 1 either way
                    p.copy_((0 if gemma else 1) + 0.1 * torch.randn_like(p))
                elif pname.endswith("bias"):
                    p.copy_(0.1 * torch.randn_like(p))
        model = model.to(torch.bfloat16)
        kwargs = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(out, **kwargs)
        with open(os.path.join(out, "config.json"), "w") as f:  # keep our spelling, not the one save wrote
            json.dump(cj, f, indent=2)
        for extra in ("generation_config.json",):
            p = os.path.join(out, extra)
            if os.path.exists(p):
                os.remove(p)

        # Reference: load the saved bf16 weights straight into float32 (never a bf16 round trip of the model).
        ref = cls.from_pretrained(out, dtype=torch.float32).eval()
        g = torch.Generator().manual_seed(99)
        ids = torch.randint(3, BASE["vocab_size"], (1, N_IDS), generator=g)
        with torch.no_grad():
            logits = ref(ids).logits[0].float().numpy()
            seq = ids.clone()
            greedy, margins = [], []
            for _ in range(N_GREEDY):
                last = ref(seq).logits[0, -1].float()
                top = torch.topk(last, 2)
                greedy.append(int(top.indices[0]))
                margins.append(float(top.values[0] - top.values[1]))
                seq = torch.cat([seq, top.indices[:1].view(1, 1)], dim=1)
        np.save(os.path.join(out, "logits.npy"), logits.astype(np.float32))
        import transformers
        with open(os.path.join(out, "fixture.json"), "w") as f:
            json.dump({"ids": ids[0].tolist(), "greedy": greedy, "greedy_margins": margins,
                       "transformers": transformers.__version__, "torch": torch.__version__}, f, indent=1)
        print(f"{name}: files {sorted(os.listdir(out))} max|logit| {np.abs(logits).max():.3f} "
              f"min greedy margin {min(margins):.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parity", sys.argv[2:])
