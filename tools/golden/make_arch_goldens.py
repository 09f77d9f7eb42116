#!/usr/bin/env python3
"""Builds tiny random-weight models of the architectures baq executes, with
golden forward passes computed by transformers, for the C++ golden tests
(tests/worker/model/arch_golden_test.cc).

Usage (offline; torch + transformers 5.x, safetensors; CPU is enough, a GPU is
not needed and is not used unless --device says so):

  python3 tools/golden/make_arch_goldens.py tests/worker/model/testdata/arch

Writes, per family (see FAMILIES below):
  OUT_DIR/<family>/config.json, model.safetensors (bfloat16 weights, the
      checkpoint layout real hub checkpoints use: per-expert tensors for MoE),
      generation_config.json, tokenizer.json (byte-level, id = byte value, so
      the quantization tests can calibrate on any text)
  OUT_DIR/<family>/golden_forward.safetensors: the layout of the shared
      fixtures (../shared/data/README.md): input_ids [1, 64] int64;
      hidden_states.i for i < num_layers = the input of block i (block 0: the
      token embeddings, times sqrt(hidden) for Gemma); hidden_states.N = the
      final norm of block N-1's output; logits (after Gemma's final soft-cap).
      All float32, computed in float32 from the bfloat16 weights (upcast),
      eager attention, TF32 off: compare with float32 tolerances.
plus OUT_DIR/rope_goldens.safetensors (cos/sin/inv_freq/attention_scaling of
every RoPE type, from transformers' own rotary-embedding modules, positions
0..63 and 0..255) with rope_goldens.json (the configs), and OUT_DIR/MANIFEST.json
(versions, tensor names, sizes).

Expected output: about 4 MB in all. Deterministic for a given transformers/torch
version (fixed seeds, CPU float32).
"""

import argparse
import json
import math
import os
import sys

try:
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM
    from safetensors.torch import load_file, save_file
except ImportError as e:  # pragma: no cover
    if "--tokenizers-only" not in sys.argv:
        sys.exit(f"needs torch, transformers 5.x and safetensors: {e}")

SEQ = 64
VOCAB = 256
SEED = 1234

# Common small dims. initializer_range 0.1 (not 0.02) so attention is far from
# uniform and soft-caps and routers see non-trivial values.
BASE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            initializer_range=0.1, rms_norm_eps=1e-6, tie_word_embeddings=False,
            bos_token_id=0, eos_token_id=1, pad_token_id=2)

# family -> (model_type, config overrides). The options are the family's real
# ones (Llama-3.1 rope scaling, Qwen2.5 yarn, Phi-3 longrope with partial
# rotary as Phi-4-mini, Mistral-Nemo's explicit head_dim, ...), scaled to tiny
# dims where a length is involved so that every branch is exercised at 64
# tokens (e.g. longrope's long factors: original_max_position_embeddings 32).
FAMILIES = {
    "llama3": ("llama", dict(
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=8192))),
    "qwen2_yarn": ("qwen2", dict(
        max_position_embeddings=131072,
        rope_parameters=dict(rope_type="yarn", rope_theta=1000000.0, factor=4.0,
                             original_max_position_embeddings=32768))),
    "phi3_longrope": ("phi3", dict(
        max_position_embeddings=128, original_max_position_embeddings=32, sliding_window=48,
        rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, partial_rotary_factor=0.75,
                             short_factor=[1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
                             long_factor=[1.0, 1.5, 2.5, 4.0, 6.0, 9.0]))),
    "qwen3": ("qwen3", dict(head_dim=32, rope_parameters=dict(rope_type="default",
                                                              rope_theta=1000000.0))),
    "mistral_head_dim": ("mistral", dict(head_dim=32, sliding_window=None,
                                         rope_parameters=dict(rope_type="default",
                                                              rope_theta=1000000.0))),
    "gemma2": ("gemma2", dict(
        head_dim=32, query_pre_attn_scalar=24, sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        attn_logit_softcapping=2.0, final_logit_softcapping=1.5,
        hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)),
    "gemma3_text": ("gemma3_text", dict(
        head_dim=32, query_pre_attn_scalar=32, sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
        rope_parameters={
            "sliding_attention": dict(rope_type="default", rope_theta=10000.0),
            "full_attention": dict(rope_type="linear", factor=8.0, rope_theta=1000000.0)})),
    "mixtral": ("mixtral", dict(
        intermediate_size=48, num_local_experts=4, num_experts_per_tok=2,
        sliding_window=None, router_jitter_noise=0.0,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    # Mixtral whose router never picks expert 3 (see starve_expert): the
    # starved-expert quantization tests, and a golden forward in which
    # transformers skips an expert.
    "mixtral_starved": ("mixtral", dict(
        intermediate_size=48, num_local_experts=4, num_experts_per_tok=2,
        sliding_window=None, router_jitter_noise=0.0,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    "qwen2_moe": ("qwen2_moe", dict(
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        shared_expert_intermediate_size=64, norm_topk_prob=False, decoder_sparse_step=1,
        mlp_only_layers=[], use_sliding_window=False,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    "qwen3_moe": ("qwen3_moe", dict(
        head_dim=32, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
}


def make_config(model_type, overrides):
    kwargs = dict(BASE)
    kwargs.update(overrides)
    return AutoConfig.for_model(model_type, **kwargs)


def bytes_to_unicode():
    """GPT-2's byte -> printable character map (byte-level BPE)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
          + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_byte_tokenizer(fam_dir):
    """A byte-level BPE tokenizer without merges: id = byte value, so any text
    encodes into the 256-entry vocabulary (calibration for the quantization
    tests)."""
    vocab = {ch: b for b, ch in sorted(bytes_to_unicode().items())}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
           "normalizer": None, "pre_tokenizer": byte_level, "post_processor": None,
           "decoder": byte_level,
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": vocab, "merges": []}}
    with open(os.path.join(fam_dir, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)


def perturb_vectors(model, gen):
    """Norm weights start at 1 (Gemma: 0) and biases at 0; move every 1-D
    parameter so the tests see whether each one is applied."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


STARVED_EXPERT = 3


def starve_expert(model, num_experts):
    """Every hidden state gets a large positive coordinate 0 (embedding column
    0 = 30, which dominates the RMS norm), and each router reads it with
    weight +1, expert STARVED_EXPERT with -5: that expert's logit is always
    the lowest, so top-2 of 4 never picks it."""
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 30.0
        for name, p in model.named_parameters():
            if name.endswith("gate.weight") and "experts" not in name and p.shape[0] == num_experts:
                p[:, 0] = 1.0
                p[STARVED_EXPERT, 0] = -5.0


def legacy_moe_names(tensors, model_type):
    """transformers 5 keeps MoE experts fused ([E, 2I, H] gate_up_proj,
    [E, H, I] down_proj) at run time and reverts to the per-expert layout on
    save; if a version saved the fused layout, split it here so the file has
    the layout of real checkpoints (Mixtral: block_sparse_moe.experts.e.w1/w3/
    w2, Qwen-MoE: mlp.experts.e.gate_proj/up_proj/down_proj)."""
    out = {}
    for name, t in tensors.items():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            prefix = name.rsplit("experts.", 1)[0]
            if model_type == "mixtral":
                prefix = prefix.replace(".mlp.", ".block_sparse_moe.")
            for e in range(t.shape[0]):
                if name.endswith("gate_up_proj"):
                    gate, up = t[e].chunk(2, dim=0)
                    g, u = ("w1", "w3") if model_type == "mixtral" else ("gate_proj", "up_proj")
                    out[f"{prefix}experts.{e}.{g}.weight"] = gate.contiguous()
                    out[f"{prefix}experts.{e}.{u}.weight"] = up.contiguous()
                else:
                    d = "w2" if model_type == "mixtral" else "down_proj"
                    out[f"{prefix}experts.{e}.{d}.weight"] = t[e].contiguous()
        elif model_type == "mixtral" and ".mlp.gate." in name:
            out[name.replace(".mlp.gate.", ".block_sparse_moe.gate.")] = t
        else:
            out[name] = t
    return out


def golden_forward(model, input_ids):
    """hidden_states.i = input of block i; hidden_states.N = final norm output;
    logits. Captured with hooks, independent of output_hidden_states."""
    captured = {}
    layers = model.model.layers
    handles = []
    for i, layer in enumerate(layers):
        def pre_hook(module, args, kwargs, i=i):
            h = args[0] if args else kwargs["hidden_states"]
            captured[f"hidden_states.{i}"] = h.detach().float().cpu().clone()
        handles.append(layer.register_forward_pre_hook(pre_hook, with_kwargs=True))

    def norm_hook(module, args, output):
        captured[f"hidden_states.{len(layers)}"] = output.detach().float().cpu().clone()
    handles.append(model.model.norm.register_forward_hook(norm_hook))
    with torch.no_grad():
        out = model(input_ids=input_ids, use_cache=False)
    for h in handles:
        h.remove()
    captured["logits"] = out.logits.detach().float().cpu().clone()
    captured["input_ids"] = input_ids.cpu().clone()
    return captured


def build_family(out_dir, family, model_type, overrides, device):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + 1)
    config = make_config(model_type, overrides)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    perturb_vectors(model, gen)
    if family.endswith("_starved"):
        starve_expert(model, config.num_local_experts)
    model = model.to(torch.bfloat16)
    fam_dir = os.path.join(out_dir, family)
    os.makedirs(fam_dir, exist_ok=True)
    model.save_pretrained(fam_dir, safe_serialization=True)
    write_byte_tokenizer(fam_dir)

    # Normalize the saved layout to the one real checkpoints have.
    path = os.path.join(fam_dir, "model.safetensors")
    tensors = load_file(path)
    legacy = legacy_moe_names(tensors, model_type)
    if legacy.keys() != tensors.keys():
        save_file(legacy, path, metadata={"format": "pt"})

    # Goldens from the saved checkpoint, reloaded in float32 (a round trip of
    # the saved layout), eager attention (the reference math; Gemma-2's
    # soft-capping needs it).
    ref = AutoModelForCausalLM.from_pretrained(fam_dir, dtype=torch.float32,
                                               attn_implementation="eager").to(device).eval()
    ids = torch.randint(3, VOCAB, (1, SEQ), generator=torch.Generator().manual_seed(SEED + 2))
    golden = golden_forward(ref, ids.to(device))
    save_file({k: v.contiguous() for k, v in golden.items()},
              os.path.join(fam_dir, "golden_forward.safetensors"))
    names = sorted(load_file(path).keys())
    return {"model_type": model_type, "tensors": names,
            "logits_absmax": float(golden["logits"].abs().max()),
            "bytes": sum(os.path.getsize(os.path.join(fam_dir, f)) for f in os.listdir(fam_dir))}


# RoPE cases for the unit tests: each is a Llama (or Phi-3) config whose
# rotary embedding is run at positions 0..L-1 for L in (64, 256).
ROPE_CASES = {
    "default": ("llama", dict(rope_parameters=dict(rope_type="default", rope_theta=10000.0))),
    "linear": ("llama", dict(rope_parameters=dict(rope_type="linear", rope_theta=10000.0,
                                                  factor=4.0))),
    "dynamic": ("llama", dict(max_position_embeddings=128,
                              rope_parameters=dict(rope_type="dynamic", rope_theta=10000.0,
                                                   factor=2.0))),
    "llama3": ("llama", dict(rope_parameters=dict(rope_type="llama3", rope_theta=500000.0,
                                                  factor=8.0, low_freq_factor=1.0,
                                                  high_freq_factor=4.0,
                                                  original_max_position_embeddings=8192))),
    "yarn": ("llama", dict(max_position_embeddings=131072,
                           rope_parameters=dict(rope_type="yarn", rope_theta=1000000.0,
                                                factor=4.0,
                                                original_max_position_embeddings=32768))),
    "yarn_mscale": ("llama", dict(max_position_embeddings=4096,
                                  rope_parameters=dict(rope_type="yarn", rope_theta=10000.0,
                                                       factor=40.0, mscale=1.0,
                                                       mscale_all_dim=0.707, beta_fast=32,
                                                       beta_slow=1, truncate=False,
                                                       original_max_position_embeddings=100))),
    "longrope": ("phi3", dict(max_position_embeddings=512, original_max_position_embeddings=128,
                              rope_parameters=dict(
                                  rope_type="longrope", rope_theta=10000.0,
                                  short_factor=[1.0 + 0.1 * i for i in range(8)],
                                  long_factor=[1.0 + 0.7 * i for i in range(8)]))),
}


def rope_goldens(out_dir):
    tensors, configs = {}, {}
    for case, (model_type, overrides) in ROPE_CASES.items():
        config = make_config(model_type, overrides)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        rotary = model.model.rotary_emb
        for length in (64, 256):
            x = torch.zeros(1, length, config.hidden_size)
            pos = torch.arange(length).unsqueeze(0)
            with torch.no_grad():
                cos, sin = rotary(x, pos)
            tensors[f"{case}.{length}.cos"] = cos[0].float().contiguous()
            tensors[f"{case}.{length}.sin"] = sin[0].float().contiguous()
            tensors[f"{case}.{length}.inv_freq"] = rotary.inv_freq.float().cpu().clone()
            tensors[f"{case}.{length}.attention_scaling"] = torch.tensor(
                [float(rotary.attention_scaling)], dtype=torch.float64)
        configs[case] = json.loads(config.to_json_string())
    save_file(tensors, os.path.join(out_dir, "rope_goldens.safetensors"))
    with open(os.path.join(out_dir, "rope_goldens.json"), "w") as f:
        json.dump(configs, f, indent=1, sort_keys=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated subset of " + ",".join(FAMILIES))
    parser.add_argument("--tokenizers-only", action="store_true",
                        help="only (re)write each family's byte-level tokenizer.json")
    args = parser.parse_args()
    if args.tokenizers_only:
        for family in args.families.split(","):
            os.makedirs(os.path.join(args.out_dir, family), exist_ok=True)
            write_byte_tokenizer(os.path.join(args.out_dir, family))
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.makedirs(args.out_dir, exist_ok=True)
    manifest = {"transformers": transformers.__version__, "torch": torch.__version__,
                "seq": SEQ, "seed": SEED, "families": {}, "failed": {}}
    for family in args.families.split(","):
        model_type, overrides = FAMILIES[family]
        try:
            info = build_family(args.out_dir, family, model_type, overrides, args.device)
            manifest["families"][family] = info
            print(f"{family}: {model_type}, {info['bytes']} bytes, "
                  f"max|logits| {info['logits_absmax']:.3f}")
        except Exception as e:  # Keep going: report which families failed.
            manifest["failed"][family] = f"{type(e).__name__}: {e}"
            print(f"{family}: FAILED {type(e).__name__}: {e}", file=sys.stderr)
    try:
        rope_goldens(args.out_dir)
    except Exception as e:
        manifest["failed"]["rope_goldens"] = f"{type(e).__name__}: {e}"
        print(f"rope_goldens: FAILED {type(e).__name__}: {e}", file=sys.stderr)
    with open(os.path.join(args.out_dir, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(d, f))
                for d, _, files in os.walk(args.out_dir) for f in files)
    print(f"total {total / 1e6:.2f} MB in {args.out_dir}; failed: {sorted(manifest['failed'])}")
    return 1 if manifest["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
