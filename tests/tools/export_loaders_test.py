#!/usr/bin/env python3
"""The compressed-tensors and gptq exports read by code that is not ours (issue 19 item 3).

Two `baq quantize` runs of the OPT fixture (CPU, small calibration):
  uniform  GPTQ 4-bit, group 128: formats fake-quant, compressed-tensors, gptq;
           safetensors shards forced with --max_shard_size.
  mixed    BAQ at 2.5 bits: formats compressed-tensors, gptq; each module gets
           one projected width (2 or 3 bits here), so the compressed-tensors
           config has one group per width and the gptq config `dynamic`
           overrides.
Checks, in the venv .ci/install-deps makes (pinned torch, transformers,
compressed-tensors):
  1. compressed-tensors' own dequantizer (CompressedTensorsDequantizer, the
     package's checkpoint converter) decompresses every quantized module;
     uniform: rounded to the checkpoint dtype (fp16) the weights equal the
     fake-quant checkpoint's bit for bit (our scales are float32, so the
     package computes exactly our (q - z) * scale).
  2. gptq: qweight/qzeros/scales/g_idx decoded by a numpy implementation of
     the GPTQ v1 layout as transformers/AutoGPTQ document it (int32 bit
     streams along the packed dim, stored zero + 1, fp16 scales), with each
     module's width taken from `bits` and the `dynamic` overrides the way
     vLLM/GPTQModel match them (re.match, first hit); its weights equal the
     compressed-tensors ones within 2^-10 relative (fp16 vs float32 scales).
  3. perplexity in transformers (float32 compute, OPTForCausalLM) of the
     decompressed checkpoint equals `baq eval`'s on the same output within
     1e-4 relative (uniform: of the fake-quant output; mixed: of the
     compressed-tensors output through our own loader), on the first windows
     of WikiText-2 test.
  4. the output is sharded (index + several files) and has a README.md.
Exit 77 (CTest: skipped) with a message when the shared data, the binary or
a Python package is missing.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

SKIP = 77
SEQLEN = 128
WINDOWS = 8


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(SKIP)


try:
    import numpy as np
    import torch
    from compressed_tensors.entrypoints.convert.converters.ct_dequantizer import (
        CompressedTensorsDequantizer)
    from safetensors.numpy import load_file as load_numpy
    from safetensors.torch import load_file as load_torch
    from tokenizers import Tokenizer
    import transformers
except ImportError as e:  # pragma: no cover - depends on the venv
    skip(f"reference packages missing ({e}); run .ci/install-deps")


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"FAIL: {cmd[0]} exited {p.returncode}")
    return p.stdout


def load_dir(path, loader):
    index = os.path.join(path, "model.safetensors.index.json")
    if not os.path.exists(index):
        return loader(os.path.join(path, "model.safetensors"))
    tensors = {}
    for f in sorted(set(json.load(open(index))["weight_map"].values())):
        tensors.update(loader(os.path.join(path, f)))
    return tensors


def ct_decompress(path):
    """Dense state dict of a compressed-tensors checkpoint, by the package."""
    deq = CompressedTensorsDequantizer(path, dtype=torch.float32)
    tensors = load_dir(path, load_torch)
    out = deq.validate(tensors)  # process() plus the package's own leftover-qparam check
    return out, deq.quant_config


def stream(words, count, bits):
    """int32 [R, C] words; column c is a little-endian bit stream; first `count` values."""
    w = words.astype(np.uint32).astype(np.uint64)
    vals = np.zeros((count, w.shape[1]), dtype=np.int64)
    for i in range(count):
        bit = i * bits
        lo = w[bit // 32] >> np.uint64(bit % 32)
        if bit % 32 + bits > 32:
            lo |= w[bit // 32 + 1] << np.uint64(32 - bit % 32)
        vals[i] = (lo & np.uint64((1 << bits) - 1)).astype(np.int64)
    return vals


def gptq_bits(config, module):
    """Width of `module` as vLLM/GPTQModel read it: the first matching `dynamic` rule."""
    for pattern, override in config.get("dynamic", {}).items():
        if pattern.startswith("-:"):
            if re.match(pattern[2:], module):
                return None
        elif re.match(pattern.removeprefix("+:"), module):
            return override.get("bits", config["bits"])
    return config["bits"]


def gptq_decode(path):
    """float32 [out, in] weights of every gptq module, GPTQ v1 layout."""
    qc = json.load(open(os.path.join(path, "config.json")))["quantization_config"]
    t = load_dir(path, load_numpy)
    weights, widths = {}, {}
    for name in sorted(k[:-len(".qweight")] for k in t if k.endswith(".qweight")):
        bits = gptq_bits(qc, name)
        qweight, qzeros = t[name + ".qweight"], t[name + ".qzeros"]
        scales, g_idx = t[name + ".scales"], t[name + ".g_idx"].astype(np.int64)
        n_in, n_out = g_idx.shape[0], qweight.shape[1]
        assert qweight.shape[0] * 32 == n_in * bits, f"{name}: qweight rows vs {bits} bits"
        q = stream(qweight, n_in, bits)                     # [in, out]
        z = stream(qzeros.T, n_out, bits).T + 1             # [groups, out], v1: stored + 1
        wrapped = int((z == (1 << bits)).sum())
        assert wrapped == 0, f"{name}: {wrapped} zero points of 0 (v1 readers differ there)"
        s = scales.astype(np.float32)
        w = s[g_idx] * (q - z[g_idx]).astype(np.float32)    # [in, out]
        weights[name], widths[name] = w.T, bits
    return weights, widths, qc


def ppl_transformers(model_dir, state, ids):
    cfg = transformers.AutoConfig.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    missing, unexpected = model.load_state_dict(
        {k: v.float() for k, v in state.items()}, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]  # tied to the embeddings
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    x = torch.tensor(ids[:WINDOWS * SEQLEN]).view(WINDOWS, SEQLEN)
    with torch.no_grad():
        logits = model(x, use_cache=False).logits.float()
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
        reduction="none").view(WINDOWS, SEQLEN - 1).double().mean(1)
    return math.exp(float((loss * SEQLEN).sum()) / (WINDOWS * SEQLEN))


def ppl_baq(baq, path, text):
    out = run([baq, "eval", "--model", path, "--text", text, "--seqlen", str(SEQLEN),
               "--max_windows", str(WINDOWS), "--json"])
    return json.loads(out.strip().splitlines()[-1])["perplexity"]


def safetensors_bytes(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if f.endswith(".safetensors"))


def close(a, b, rel):
    return abs(a - b) <= rel * max(abs(a), abs(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baq", required=True)
    ap.add_argument("--data", required=True)
    a = ap.parse_args()
    model = os.path.join(a.data, "models", "opt-fixture")
    calib = os.path.join(a.data, "corpus", "tiny_shakespeare.txt")
    test_text = os.path.join(a.data, "wikitext-2", "test.txt")
    if not all(os.path.exists(p) for p in (model, calib, test_text, a.baq)):
        skip("shared data or the baq binary is missing")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"compressed-tensors {__import__('compressed_tensors').__version__}")
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "eval.txt")
        with open(test_text, encoding="utf-8") as f, open(text, "w", encoding="utf-8") as o:
            o.write(f.read()[:60000])  # enough for WINDOWS x SEQLEN tokens
        ids = Tokenizer.from_file(os.path.join(model, "tokenizer.json")).encode(
            open(text, encoding="utf-8").read(), add_special_tokens=False).ids
        assert len(ids) >= WINDOWS * SEQLEN, len(ids)
        common = [a.baq, "quantize", "--model", model, "--calib", calib, "--nsamples", "16",
                  "--seqlen", "256"]

        # --- uniform GPTQ 4-bit, g128 ---
        uni = os.path.join(tmp, "uniform")
        run(common + ["--method", "gptq", "--bits", "4", "--group_size", "128",
                      "--format", "fake-quant,compressed-tensors,gptq",
                      "--max_shard_size", "4000000", "--out", uni])
        ct_dir, fq_dir, gq_dir = (os.path.join(uni, f)
                                  for f in ("compressed-tensors", "fake-quant", "gptq"))
        print("safetensors bytes: " + ", ".join(
            f"{os.path.basename(d)} {safetensors_bytes(d)}" for d in (fq_dir, ct_dir, gq_dir)))
        files = os.listdir(ct_dir)
        check("model.safetensors.index.json" in files and
              sum(f.endswith(".safetensors") for f in files) > 1, "compressed-tensors is sharded")
        check("README.md" in files, "compressed-tensors has a README.md")
        dense, qconf = ct_decompress(ct_dir)
        fake = load_dir(fq_dir, load_torch)
        layers = [k[:-len(".weight_packed")] for k in load_dir(ct_dir, load_torch)
                  if k.endswith(".weight_packed")]
        check(len(layers) == 36, f"36 quantized modules in compressed-tensors ({len(layers)})")
        exact = [n for n in layers
                 if torch.equal(dense[n + ".weight"].to(torch.float16), fake[n + ".weight"])]
        check(len(exact) == len(layers),
              f"package-decompressed == fake-quant bit for bit after fp16 rounding "
              f"({len(exact)}/{len(layers)})")
        gw, widths, _ = gptq_decode(gq_dir)
        worst = max(float(np.max(np.abs(gw[n] - dense[n + ".weight"].numpy()) /
                                 (np.abs(dense[n + ".weight"].numpy()) + 1e-30)
                                 * (np.abs(dense[n + ".weight"].numpy()) > 0)))
                    for n in layers)
        check(worst <= 2 ** -10, f"gptq (numpy v1 decoder) vs compressed-tensors: max rel "
              f"{worst:.3g} <= 2^-10")
        p_hf = ppl_transformers(model, {k: v.to(torch.float16) for k, v in dense.items()}, ids)
        p_baq = ppl_baq(a.baq, fq_dir, text)
        check(close(p_hf, p_baq, 1e-4), f"uniform: transformers ppl {p_hf:.6f} (decompressed "
              f"compressed-tensors) vs baq eval {p_baq:.6f} (fake-quant)")

        # --- BAQ 2.5 bits: per-module widths ---
        mix = os.path.join(tmp, "mixed")
        run(common + ["--method", "baq", "--bits", "2.5", "--format", "compressed-tensors,gptq",
                      "--out", mix])
        ct_dir, gq_dir = os.path.join(mix, "compressed-tensors"), os.path.join(mix, "gptq")
        dense, qconf = ct_decompress(ct_dir)
        group_bits = sorted(g.weights.num_bits for g in qconf.config_groups.values())
        check(len(group_bits) > 1, f"mixed: config groups per width {group_bits}")
        gw, widths, gconf = gptq_decode(gq_dir)
        check("dynamic" in gconf and len(set(widths.values())) > 1,
              f"mixed: gptq dynamic overrides give widths {sorted(set(widths.values()))}")
        ct_bits = {t: g.weights.num_bits for g in qconf.config_groups.values() for t in g.targets}
        check(ct_bits == widths, "mixed: the same width per module in both configs")
        worst = max(float(np.max(np.abs(gw[n] - dense[n + ".weight"].numpy()) /
                                 (np.abs(dense[n + ".weight"].numpy()) + 1e-30)
                                 * (np.abs(dense[n + ".weight"].numpy()) > 0)))
                    for n in widths)
        check(worst <= 2 ** -10, f"mixed: gptq vs compressed-tensors max rel {worst:.3g}")
        p_hf = ppl_transformers(model, {k: v.to(torch.float16) for k, v in dense.items()}, ids)
        p_baq = ppl_baq(a.baq, ct_dir, text)
        check(close(p_hf, p_baq, 1e-4), f"mixed: transformers ppl {p_hf:.6f} (decompressed) vs "
              f"baq eval {p_baq:.6f} (compressed-tensors through baq's loader)")
    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
