#!/usr/bin/env python3
"""Writes a random-weight LLaMA- or OPT-shaped checkpoint for scale runs (issues 8, 9 and 23).

The model is a Hugging Face layout directory that `baq quantize` and the workers read:
config.json (model_type llama, or opt with --family opt), one safetensors shard per decoder block
plus one for the embeddings/norm/head, model.safetensors.index.json, and the tokenizer of a small
donor model
(default: examples/opt-fixture; the vocabulary is the donor's, so the embedding table stays
small and any text is valid calibration data).

--family opt writes OPTForCausalLM's layout (model.decoder.*: learned positions, LayerNorms with
biases, biased q/k/v/out_proj and fc1/fc2, ReLU, tied LM head). --post-ln sets
do_layer_norm_before false (OPT-350M: no final LayerNorm) and --proj-dim P < --hidden adds
project_in/project_out (OPT-350M: 512 against 1024).

Weights: float16, N(0, std) with std 0.02 (the HF init), norms 1, biases 0. Every tensor is drawn from a
torch.Generator seeded by (--seed, tensor name), so a block's bytes depend only on the seed and
its shape: the same command on the same --device gives the same files, and --blocks N writes the
first N blocks of the same model. It uses torch (on the GPU when there is one); without torch it
falls back to Python's own generator (slow: for tiny test shapes only). The safetensors format is
written here directly (an 8-byte header length, a JSON header, the raw data).

Shapes used in docs/performance.md:
  7B-shaped:  --hidden 4096 --intermediate 11008 --heads 32 --blocks 32
  30B-shaped: --hidden 6656 --intermediate 17920 --heads 52 --blocks 60
  OPT-30B-shaped: --family opt --hidden 7168 --intermediate 28672 --heads 56 --blocks 48
  OPT-350M-shaped: --family opt --hidden 1024 --intermediate 4096 --heads 16 --blocks 24 \
      --post-ln --proj-dim 512

Example:
  python3 tools/scale/make_random_model.py --out /tmp/llama7b --hidden 4096 \
      --intermediate 11008 --heads 32 --blocks 32
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import random
import sys

try:
    import torch
except ImportError:  # Tiny shapes only (tests on a machine without torch).
    torch = None


class Tensor:
    """A float16 tensor as raw little-endian bytes."""

    def __init__(self, shape, data):
        self.shape, self.data = list(shape), data


def seeded_normal(shape, name, seed, std, device):
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    s = int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
    if torch is None:
        r = random.Random(s)
        n = shape[0] * shape[1]
        return Tensor(shape, struct.pack(f"<{n}e", *(r.gauss(0.0, std) for _ in range(n))))
    g = torch.Generator(device=device)
    g.manual_seed(s)
    t = torch.empty(shape, dtype=torch.float32, device=device)
    t.normal_(0.0, std, generator=g)
    return Tensor(shape, t.to(torch.float16).cpu().contiguous().view(torch.uint8).numpy().tobytes())


def ones(n):
    return Tensor([n], struct.pack("<e", 1.0) * n)


def zeros(n):
    return Tensor([n], b"\0\0" * n)


def write_safetensors(path, tensors):
    """tensors: list of (name, Tensor), written in order."""
    header, offset = {}, 0
    for name, t in tensors:
        n = len(t.data)
        header[name] = {"dtype": "F16", "shape": t.shape, "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)  # Align the data to 8 bytes.
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _, t in tensors:
            f.write(t.data)
    os.replace(tmp, path)


class ShardedCheckpoint:
    """Writes `config` as config.json under `out`, then shards of tensors
    (shard 0: what is outside the blocks, shard b + 1: block b), each a
    model-<i>-of-<blocks + 1>.safetensors, and finally
    model.safetensors.index.json mapping every tensor to its shard."""

    def __init__(self, out, config, blocks):
        self.out = out
        self.num_shards = blocks + 1
        self.width = len(str(self.num_shards))
        self.weight_map = {}
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(config, f, indent=1)

    def shard(self, index, tensors):
        name = f"model-{index:0{self.width}d}-of-{self.num_shards:0{self.width}d}.safetensors"
        write_safetensors(os.path.join(self.out, name), tensors)
        for t, _ in tensors:
            self.weight_map[t] = name

    def write_index(self, total_size):
        with open(os.path.join(self.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total_size}, "weight_map": self.weight_map}, f,
                      indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (created; must not exist)")
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=11008)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--blocks", type=int, default=32)
    p.add_argument("--family", choices=("llama", "opt"), default="llama")
    p.add_argument("--post-ln", action="store_true",
                   help="opt: do_layer_norm_before false (OPT-350M), hence no final LayerNorm")
    p.add_argument("--proj-dim", type=int, default=0,
                   help="opt: word_embed_proj_dim; < --hidden adds project_in/project_out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--std", type=float, default=0.02)
    p.add_argument("--donor", default=os.path.join(os.path.dirname(__file__), "../../examples/opt-fixture"),
                   help="model dir whose tokenizer.json (and vocabulary size) is reused")
    p.add_argument("--device", default="cuda" if torch is not None and torch.cuda.is_available() else "cpu",
                   help="where the random numbers are drawn (results are device-specific)")
    a = p.parse_args()
    if a.hidden % a.heads:
        sys.exit(f"--hidden {a.hidden} is not a multiple of --heads {a.heads}")
    if os.path.exists(a.out):
        sys.exit(f"{a.out} exists")
    with open(os.path.join(a.donor, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    os.makedirs(a.out)
    shutil.copy(os.path.join(a.donor, "tokenizer.json"), a.out)
    if a.family == "opt":
        write_opt(a, vocab)
        return
    if a.post_ln or a.proj_dim:
        sys.exit("--post-ln and --proj-dim need --family opt")
    h, i = a.hidden, a.intermediate
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "dtype": "float16",
        "hidden_size": h, "intermediate_size": i, "num_attention_heads": a.heads,
        "num_key_value_heads": a.heads, "num_hidden_layers": a.blocks, "vocab_size": vocab,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "hidden_act": "silu",
        "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 2,
    }
    checkpoint = ShardedCheckpoint(a.out, config, a.blocks)
    checkpoint.shard(0, [
        ("model.embed_tokens.weight", seeded_normal((vocab, h), "embed", a.seed, a.std, a.device)),
        ("model.norm.weight", ones(h)),
        ("lm_head.weight", seeded_normal((vocab, h), "lm_head", a.seed, a.std, a.device))])
    shapes = {"self_attn.q_proj": (h, h), "self_attn.k_proj": (h, h), "self_attn.v_proj": (h, h),
              "self_attn.o_proj": (h, h), "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h),
              "mlp.down_proj": (h, i)}
    total = 0
    for b in range(a.blocks):
        prefix = f"model.layers.{b}."
        tensors = [(prefix + "input_layernorm.weight", ones(h)),
                   (prefix + "post_attention_layernorm.weight", ones(h))]
        for layer, shape in shapes.items():
            tensors.append((prefix + layer + ".weight",
                            seeded_normal(shape, prefix + layer, a.seed, a.std, a.device)))
            total += shape[0] * shape[1]
        checkpoint.shard(b + 1, tensors)
    checkpoint.write_index(2 * total)  # float16: 2 bytes a parameter.
    print(f"{a.out}: {a.blocks} blocks, hidden {h}, intermediate {i}, "
          f"{total / 1e9:.2f} G block parameters ({2 * total / 2**30:.1f} GiB float16)")


def write_opt(a, vocab):
    """OPTForCausalLM's layout (transformers' OPTDecoder), tied LM head."""
    h, i = a.hidden, a.intermediate
    proj = a.proj_dim or h
    positions = 2048
    config = {
        "architectures": ["OPTForCausalLM"], "model_type": "opt", "dtype": "float16",
        "hidden_size": h, "ffn_dim": i, "num_attention_heads": a.heads,
        "num_hidden_layers": a.blocks, "vocab_size": vocab, "word_embed_proj_dim": proj,
        "max_position_embeddings": positions, "do_layer_norm_before": not a.post_ln,
        "activation_function": "relu", "enable_bias": True, "layer_norm_elementwise_affine": True,
        "tie_word_embeddings": True, "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2,
    }
    checkpoint = ShardedCheckpoint(a.out, config, a.blocks)
    d = "model.decoder."
    outer = [(d + "embed_tokens.weight", seeded_normal((vocab, proj), "embed", a.seed, a.std, a.device)),
             (d + "embed_positions.weight",
              seeded_normal((positions + 2, h), "positions", a.seed, a.std, a.device))]
    if proj != h:
        outer += [(d + "project_in.weight", seeded_normal((h, proj), "project_in", a.seed, a.std, a.device)),
                  (d + "project_out.weight", seeded_normal((proj, h), "project_out", a.seed, a.std, a.device))]
    if not a.post_ln:
        outer += [(d + "final_layer_norm.weight", ones(h)), (d + "final_layer_norm.bias", zeros(h))]
    checkpoint.shard(0, outer)
    shapes = {"self_attn.q_proj": (h, h), "self_attn.k_proj": (h, h), "self_attn.v_proj": (h, h),
              "self_attn.out_proj": (h, h), "fc1": (i, h), "fc2": (h, i)}
    total = 0
    for b in range(a.blocks):
        prefix = f"{d}layers.{b}."
        tensors = []
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            tensors += [(prefix + norm + ".weight", ones(h)), (prefix + norm + ".bias", zeros(h))]
        for layer, shape in shapes.items():
            tensors.append((prefix + layer + ".weight",
                            seeded_normal(shape, prefix + layer, a.seed, a.std, a.device)))
            tensors.append((prefix + layer + ".bias", zeros(shape[0])))
            total += shape[0] * shape[1]
        checkpoint.shard(b + 1, tensors)
    checkpoint.write_index(2 * total)  # float16: 2 bytes a parameter.
    print(f"{a.out}: OPT, {a.blocks} blocks, hidden {h}, ffn {i}, proj {proj}, "
          f"{'post' if a.post_ln else 'pre'}-LN, {total / 1e9:.2f} G block parameters "
          f"({2 * total / 2**30:.1f} GiB float16)")


if __name__ == "__main__":
    main()
