#!/usr/bin/env python3
"""Perplexities for bench/device/quality.sh, in transformers on the GPU.

Two subcommands, both printing one line per result and writing JSON:

  reference  The public GPTQ reference (IST-DASLab/gptq gptq.py + quant.py, copied by
             tools/device/prepare.sh into .devdeps/ref/gptq; never committed) run
             sequentially over the model's decoder blocks as its opt.py / llama.py do
             (all linear layers of a block calibrated on the block's unquantized forward,
             fasterquant with blocksize 128, percdamp 0.01, asymmetric per-row min-max grid,
             no groups, no act-order; then the block re-run to give the next block's input),
             on the same calibration windows as `baq quantize` (see calibration_windows),
             then evaluated with the same protocol as everything else here.
               reference_quality.py reference --model DIR --ref .devdeps/ref/gptq \
                 --calib a.txt,b.txt,c.txt --eval test.txt --bits 4,3,2 --out ref.json
  eval       Perplexity of checkpoints: `fake:NAME=DIR` loads a baq fake-quant output as is;
             `gptq:NAME=DIR` dequantizes a baq gptq-format output here (GPTQ v1 layout, as
             AutoGPTQ reads it: zeros + 1, continuous little-endian bit stream) into the
             original model given by --base; `packed:NAME=DIR` does the same for the BAQ
             layers of a baq packed output (mixed-radix codes + row ranges, decoded in plain
             Python: a check of the writer independent of the C++ loader);
             `orig:NAME=DIR` is an unquantized checkpoint.
               reference_quality.py eval --eval test.txt --out eval.json \
                 fake:baq3=/tmp/q/fake-quant gptq:baq3=/tmp/q/gptq --base DIR

Perplexity protocol (GPTQ paper, opt_eval / llama_eval): the whole file encoded at once
(tokenizer.json, no special tokens), non-overlapping windows of 2048 tokens, tail dropped,
model in its checkpoint dtype, logits cast to float32, mean shift-by-one cross entropy per
window times 2048, ppl = exp(sum / (windows * 2048)).
"""
import argparse
import contextlib
import io
import json
import math
import os
import random
import re
import struct
import sys
import time

import numpy as np
import torch


def tokenizer_for(model_dir):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))


def encode_file(tok, path):
    # newline="" keeps the bytes as the C++ reader sees them (no \r\n translation).
    with open(path, encoding="utf-8", newline="") as f:
        return tok.encode(f.read(), add_special_tokens=False).ids


def calibration_windows(tok, files, nsamples, seqlen, seed):
    """common/text_dataset.h: each file encoded on its own, ids concatenated in order,
    random.seed(seed), then per window i = random.randint(0, N - seqlen - 1)."""
    ids = []
    for path in files:
        ids.extend(encode_file(tok, path))
    random.seed(seed)
    starts = [random.randint(0, len(ids) - seqlen - 1) for _ in range(nsamples)]
    t = torch.tensor(ids, dtype=torch.long)
    return torch.stack([t[s:s + seqlen] for s in starts]), starts, len(ids)


def load_model(model_dir, dev, dtype="auto"):
    """The checkpoint in its own dtype ("auto", as the reference codes run it) or in `dtype`
    ("float32": the controlled experiment of the real-checkpoint issue, the reference's
    calibration forward and Hessians at baq's precision)."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    model.config.use_cache = False
    return model.eval().to(dev)


@torch.no_grad()
def perplexity(model, ids, seqlen, dev, batch=8):
    n = len(ids) // seqlen
    t = torch.tensor(ids[:n * seqlen], dtype=torch.long).view(n, seqlen)
    nll_sum = 0.0
    for b in range(0, n, batch):
        x = t[b:b + batch].to(dev)
        logits = model(x, use_cache=False).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
            reduction="none").view(x.shape[0], seqlen - 1).double().mean(1)
        nll_sum += float((loss * seqlen).sum())
    return math.exp(nll_sum / (n * seqlen)), n


def decoder_layers(model):
    for mod in model.modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == model.config.num_hidden_layers:
            return mod
    raise RuntimeError("no decoder layer list of length num_hidden_layers found")


class _Stop(Exception):
    pass


@torch.no_grad()
def reference_gptq(model, windows, bits, ref_dir, dev):
    """Quantizes `model` in place with the reference GPTQ; returns per-layer errors."""
    sys.path.insert(0, ref_dir)
    import gptq as ref_gptq  # noqa: E402  (the reference, from .devdeps)
    import quant as ref_quant

    layers = decoder_layers(model)
    inps, ctx = [], {}

    def catch(_mod, args, kwargs):
        inps.append((args[0] if args else kwargs["hidden_states"]).detach())
        if not ctx:
            ctx["args"] = args[1:]
            ctx["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        raise _Stop

    h = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    for w in windows:
        try:
            model(w.unsqueeze(0).to(dev), use_cache=False)
        except _Stop:
            pass
    h.remove()

    def run(layer, x):
        out = layer(x, *ctx["args"], **ctx["kwargs"])
        return out[0] if isinstance(out, (tuple, list)) else out

    errors = {}
    for i, layer in enumerate(layers):
        subset = {n: m for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
        g = {}
        for name, mod in subset.items():
            g[name] = ref_gptq.GPTQ(mod)
            g[name].quantizer = ref_quant.Quantizer()
            g[name].quantizer.configure(bits, perchannel=True, sym=False, mse=False)
        hooks = [mod.register_forward_hook(
            lambda _m, inp, out, name=name: g[name].add_batch(inp[0].data, out.data))
            for name, mod in subset.items()]
        for x in inps:
            run(layer, x)
        for hk in hooks:
            hk.remove()
        for name in subset:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):  # the reference prints time and error
                g[name].fasterquant(blocksize=128, percdamp=0.01, groupsize=-1, actorder=False)
            m = re.search(r"error ([0-9.eE+-]+)", buf.getvalue())
            errors[f"{i}.{name}"] = float(m.group(1)) if m else None
            g[name].free()
        inps = [run(layer, x) for x in inps]
    return errors


def cmd_reference(a):
    dev = torch.device(a.device)
    tok = tokenizer_for(a.model)
    test_ids = encode_file(tok, a.eval)
    windows, starts, total = calibration_windows(tok, a.calib.split(","), a.nsamples,
                                                 a.seqlen, a.seed)
    res = {"model": a.model, "calibration": {"files": a.calib.split(","), "tokens": total,
                                             "nsamples": a.nsamples, "seqlen": a.seqlen,
                                             "seed": a.seed, "first_starts": starts[:4]},
           "runs": []}
    t0 = time.time()
    model = load_model(a.model, dev, a.dtype)
    ppl, n = perplexity(model, test_ids, a.seqlen, dev)
    res["dtype"] = str(next(model.parameters()).dtype)
    res["runs"].append({"name": "fp", "method": "none", "ppl": ppl, "windows": n,
                        "seconds": time.time() - t0})
    print(f"reference {a.model} original ({res['dtype']}): ppl {ppl:.4f} ({n} windows)",
          flush=True)
    del model
    for bits in [int(b) for b in a.bits.split(",") if b]:
        t0 = time.time()
        model = load_model(a.model, dev, a.dtype)
        errors = reference_gptq(model, windows, bits, a.ref, dev)
        tq = time.time() - t0
        ppl, n = perplexity(model, test_ids, a.seqlen, dev)
        res["runs"].append({"name": f"ref-gptq-w{bits}", "method": "reference-gptq",
                            "bits": bits, "ppl": ppl, "windows": n, "quantize_seconds": tq,
                            "sum_layer_error": sum(e for e in errors.values() if e),
                            "layer_errors": errors})
        print(f"reference {a.model} GPTQ w{bits}: ppl {ppl:.4f} (quantized in {tq:.1f} s)",
              flush=True)
        del model
        torch.cuda.empty_cache()
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


def unpack_stream(words, count, bits):
    """Words int32 [R, C]: column c is a little-endian bit stream; the first `count`
    `bits`-wide values of each column, as uint8 [C, count]."""
    w = np.ascontiguousarray(words.numpy().astype("<i4").T).view(np.uint8)  # [C, R*4]
    stream = np.unpackbits(w, axis=1, bitorder="little")[:, :count * bits]
    vals = stream.reshape(w.shape[0], count, bits).astype(np.int64)
    return torch.from_numpy((vals << np.arange(bits)).sum(-1))


def gptq_state_dict(gptq_dir):
    from safetensors.torch import load_file
    t = load_file(os.path.join(gptq_dir, "model.safetensors"))
    out, widths = {}, {}
    for key in [k for k in t if k.endswith(".qweight")]:
        p = key[:-len(".qweight")]
        qweight, qzeros, scales, g_idx = (t[p + s] for s in (".qweight", ".qzeros", ".scales",
                                                                 ".g_idx"))
        cols, rows = g_idx.numel(), scales.shape[1]
        bits = qweight.shape[0] * 32 // cols
        codes = unpack_stream(qweight, cols, bits)                 # [out, in]
        zeros = unpack_stream(qzeros.t().contiguous(), rows, bits) + 1  # [groups, out]
        g = g_idx.long()
        w = scales.float()[g].t() * (codes.float() - zeros.float()[g].t())
        out[p + ".weight"] = w
        widths[p] = bits
    return out, widths


def mixed_radix_layout(levels):
    """common/code_packing.h: t codes per group in w = bit_length(L^t - 1) <= 64 bits, t
    minimizing w / t (smallest t on ties)."""
    best = (1, (levels - 1).bit_length())
    for t in range(2, 65):
        w = (levels ** t - 1).bit_length()
        if w > 64:
            break
        if w * best[0] < best[1] * t:
            best = (t, w)
    return best


def decode_packed_baq(qcodes, levels, row_min, row_max):
    """A BAQ layer of baq-packed-v1 (worker/layer_formats.h) as a row-major list [out][in]:
    column j's `out` codes packed mixed-radix base L_j, columns back to back in 64-bit words;
    per row r the column grid scale = (max_r - min_r) / (L_j - 1), zero = round(-min_r /
    scale) (half to even, as torch.round), value = scale * (code - zero); L_j = 1 gives 0.
    Every step is rounded to float32 as the quantizer computes it: rows with min = -max and
    an even level count put -min / scale exactly on k + 0.5 in float32 (3.4999999999999996 in
    float64), and the other rounding would shift the whole row by one step.
    Plain Python integers: independent of the C++ unpacker it checks."""
    def f32(x):
        return struct.unpack("f", struct.pack("f", x))[0]
    out, cols = len(row_min), len(levels)
    w = [[0.0] * cols for _ in range(out)]
    off = 0
    for j, lv in enumerate(levels):
        if lv == 1:
            continue
        t, bits = mixed_radix_layout(lv)
        groups = -(-out // t)
        nbytes = -(-(groups * bits) // 64) * 8
        stream = int.from_bytes(qcodes[off:off + nbytes], "little")
        off += nbytes
        mask = (1 << bits) - 1
        r = 0
        for g in range(groups):
            v = (stream >> (g * bits)) & mask
            for _ in range(t):
                if r < out:
                    scale = f32(f32(row_max[r] - row_min[r]) / (lv - 1))
                    w[r][j] = f32(scale * (v % lv - round(f32(-row_min[r] / scale))))
                v //= lv
                r += 1
    if off != len(qcodes):
        raise ValueError(f"qcodes has {len(qcodes)} bytes, the levels use {off}")
    return w


def packed_state_dict(packed_dir):
    """Weights of the BAQ layers of a packed output (grid layers are left to baq eval)."""
    from safetensors.torch import load_file
    t = load_file(os.path.join(packed_dir, "model.safetensors"))
    out = {}
    for key in [k for k in t if k.endswith(".row_min")]:
        p = key[:-len(".row_min")]
        w = decode_packed_baq(t[p + ".qcodes"].numpy().tobytes(), t[p + ".levels"].tolist(),
                              t[p + ".row_min"].float().tolist(),
                              t[p + ".row_max"].float().tolist())
        out[p + ".weight"] = torch.tensor(w, dtype=torch.float32)
    return out


def cmd_eval(a):
    dev = torch.device("cuda")
    res = {"runs": []}
    tok_cache = {}
    for spec in a.checkpoints:
        kind, rest = spec.split(":", 1)
        name, path = rest.split("=", 1)
        t0 = time.time()
        entry = {"name": name, "kind": kind, "dir": path}
        try:
            base = a.base if kind in ("gptq", "packed") else path
            if base not in tok_cache:
                tok_cache[base] = encode_file(tokenizer_for(base), a.eval)
            model = load_model(base, dev)
            if kind in ("gptq", "packed"):
                if kind == "gptq":
                    sd, widths = gptq_state_dict(path)
                    entry["widths"] = sorted(set(widths.values()))
                else:
                    sd = packed_state_dict(path)
                params = dict(model.named_parameters())
                dtype = next(model.parameters()).dtype
                for k, v in sd.items():
                    params[k].data.copy_(v.to(dev, dtype))
                entry["modules"] = len(sd)
            ppl, n = perplexity(model, tok_cache[base], a.seqlen, dev)
            entry.update(ppl=ppl, windows=n, seconds=time.time() - t0)
            print(f"eval {kind}:{name}: ppl {ppl:.4f}", flush=True)
            del model
        except Exception as e:  # report and go on with the next checkpoint
            entry["error"] = f"{type(e).__name__}: {e}"
            print(f"eval {kind}:{name}: FAILED {entry['error']}", flush=True)
        res["runs"].append(entry)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reference")
    r.add_argument("--model", required=True)
    r.add_argument("--ref", required=True, help="dir holding the reference gptq.py, quant.py")
    r.add_argument("--calib", required=True, help="comma-separated text files")
    r.add_argument("--eval", required=True)
    r.add_argument("--bits", default="4,3,2")
    r.add_argument("--nsamples", type=int, default=128)
    r.add_argument("--seqlen", type=int, default=2048)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="cuda", help="cuda, or cpu for small models")
    r.add_argument("--dtype", default="auto",
                   help="auto (the checkpoint's, as the reference runs) or float32")
    r.add_argument("--out", required=True)
    e = sub.add_parser("eval")
    e.add_argument("--eval", required=True)
    e.add_argument("--base", default="", help="original model dir (gptq: and packed: entries)")
    e.add_argument("--seqlen", type=int, default=2048)
    e.add_argument("--out", required=True)
    e.add_argument("checkpoints", nargs="+", help="fake:NAME=DIR | gptq:NAME=DIR | packed:NAME=DIR | orig:NAME=DIR")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    (cmd_reference if a.cmd == "reference" else cmd_eval)(a)


if __name__ == "__main__":
    main()
