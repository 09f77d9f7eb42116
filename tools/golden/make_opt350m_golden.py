#!/usr/bin/env python3
"""Writes a tiny random OPT-350M-shaped model and transformers' forward pass over it (issue 23).

OPT-350M differs from the other OPT sizes: post-LayerNorm (do_layer_norm_before false: LayerNorm
after each residual add, no final LayerNorm) and word_embed_proj_dim (512) < hidden_size (1024):
project_in after the token embeddings, project_out before the tied LM head. This script builds
that shape small (hidden 64, word_embed_proj_dim 32, 4 heads, FFN 128, 2 blocks, vocab 512) with
transformers' own OPTForCausalLM, and writes into OUT_DIR:

  config.json, model.safetensors   the model, float16 like facebook/opt-350m (save_pretrained)
  golden_forward.safetensors       input_ids [1, 64] (I64), hidden_states.0..2 and logits (F32),
                                   the layout of ../shared/data/models/*/golden_forward.safetensors:
                                   hidden_states.0 = project_in(embed) + positions (block 0's
                                   input), hidden_states.1 = block 0's output, hidden_states.2 =
                                   project_out(block 1's output) (no final LayerNorm), logits.

The test (tests/worker/model/opt350m_shape_test.cc, Opt350mGoldenTest) feeds input_ids directly,
so no tokenizer is written. Weights are redrawn from a seeded generator at a scale where every
part of the forward matters (the HF init, std 0.02 with unit norms, leaves the logits ~1e-3):
linears N(0, 1/fan_in), biases N(0, 0.1^2), LayerNorm weights 1 + N(0, 0.2^2) and biases
N(0, 0.2^2), embeddings N(0, 1), positions N(0, 0.5^2). The forward runs in float16 with eager
attention, on CUDA when present (as the fixtures' goldens: H100), else on the CPU.

Needs torch, transformers (5.x; 4.4x works too) and safetensors. Offline: nothing is downloaded.

Example (on the GPU machine, from the repository root):
  python3 tools/golden/make_opt350m_golden.py tests/worker/model/testdata/opt350m-tiny
"""
import argparse
import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import OPTConfig, OPTForCausalLM

SEED = 350
SEQ = 64


def redraw(model, gen):
    """Redraws every parameter in place (see the module docstring for the scales)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                std, mean = 0.2, 1.0
            elif name.endswith("layer_norm.bias"):
                std, mean = 0.2, 0.0
            elif name.endswith(".bias"):
                std, mean = 0.1, 0.0
            elif "embed_tokens" in name:
                std, mean = 1.0, 0.0
            elif "embed_positions" in name:
                std, mean = 0.5, 0.0
            else:  # Linear weights [out, in], project_in/project_out included.
                std, mean = 1.0 / math.sqrt(p.shape[1]), 0.0
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std + mean)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)

    config = OPTConfig(
        vocab_size=512, hidden_size=64, word_embed_proj_dim=32, ffn_dim=128,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=128,
        do_layer_norm_before=False, activation_function="relu", enable_bias=True,
        layer_norm_elementwise_affine=True, dropout=0.0, attention_dropout=0.0,
        tie_word_embeddings=True, pad_token_id=1, bos_token_id=2, eos_token_id=2)
    torch.manual_seed(SEED)
    model = OPTForCausalLM(config)
    redraw(model, torch.Generator().manual_seed(SEED))
    model.tie_weights()
    model = model.to(torch.float16)
    dec = model.model.decoder
    assert dec.project_in is not None and dec.project_out is not None, "no projections"
    assert dec.final_layer_norm is None, "post-LN OPT must have no final LayerNorm"
    assert model.lm_head.weight.data_ptr() == dec.embed_tokens.weight.data_ptr(), "head not tied"

    model.save_pretrained(a.out_dir)  # safetensors by default
    # baq reads "dtype"/"torch_dtype"; make sure the file says float16 whatever the version wrote.
    cfg_path = os.path.join(a.out_dir, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg.pop("torch_dtype", None)
    cfg["dtype"] = "float16"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    for extra in ("generation_config.json",):
        path = os.path.join(a.out_dir, extra)
        if os.path.exists(path):
            os.remove(path)

    # The golden comes from the saved files, loaded back as any user would (this also checks
    # that transformers reads the checkpoint baq reads).
    try:
        model = OPTForCausalLM.from_pretrained(a.out_dir, dtype=torch.float16, attn_implementation="eager")
    except TypeError:  # transformers < 4.56 names it torch_dtype.
        model = OPTForCausalLM.from_pretrained(a.out_dir, torch_dtype=torch.float16,
                                               attn_implementation="eager")
    model = model.to(a.device).eval()
    assert model.model.decoder.project_in is not None and model.model.decoder.final_layer_norm is None
    ids = torch.randint(4, config.vocab_size, (1, SEQ), generator=torch.Generator().manual_seed(SEED + 1))
    with torch.no_grad():
        out = model(input_ids=ids.to(a.device), output_hidden_states=True)
    golden = {"input_ids": ids.to(torch.int64).contiguous()}
    for i, h in enumerate(out.hidden_states):
        golden[f"hidden_states.{i}"] = h.float().cpu().contiguous()
    golden["logits"] = out.logits.float().cpu().contiguous()
    meta = {"transformers": transformers.__version__, "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if a.device == "cuda" else a.device,
            "model_dtype": "float16", "attn_implementation": "eager", "seed": str(SEED)}
    save_file(golden, os.path.join(a.out_dir, "golden_forward.safetensors"), metadata=meta)
    if not all(torch.isfinite(t).all() for t in golden.values() if t.is_floating_point()):
        sys.exit("non-finite values in the golden forward")
    print(f"{a.out_dir}: {meta}; logits max |x| {golden['logits'].abs().max():.3f}; files:")
    for name in sorted(os.listdir(a.out_dir)):
        print(f"  {name} {os.path.getsize(os.path.join(a.out_dir, name))} bytes")


if __name__ == "__main__":
    main()
