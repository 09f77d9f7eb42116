#!/usr/bin/env python3
"""Regenerates the safetensors seed corpus (tests/fuzz/corpus/safetensors/).

Small valid files (every dtype, scalar, zero-size, metadata, padded header)
and one example of each structural fault the reader rejects, so the fuzzer
starts next to every validation branch. Deterministic; stdlib only.
Usage: python3 tests/fuzz/make_safetensors_corpus.py
"""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")
SIZES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I8": 1, "I32": 4, "I64": 8, "U8": 1}


def image(header, data=b"", pad=True):
    raw = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if pad:
        raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def tensors(specs):
    """specs: [(name, dtype, shape)] laid out back to back."""
    header, offset = {}, 0
    for name, dtype, shape in specs:
        n = SIZES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    return header, bytes((i * 37 + 11) % 256 for i in range(offset))


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    h, d = tensors([(f"t.{dt.lower()}", dt, [2, 3]) for dt in SIZES])
    seeds["valid_all_dtypes"] = image(h, d)
    h, d = tensors([("scalar", "F32", []), ("empty", "F16", [0, 4]), ("w", "BF16", [4])])
    h["__metadata__"] = {"format": "pt", "quant": "baq"}
    seeds["valid_scalar_empty_metadata"] = image(h, d)
    seeds["valid_empty"] = image({})
    seeds["valid_unpadded"] = image(*tensors([("a", "U8", [3])]), pad=False)
    seeds["valid_utf8_name"] = image(*tensors([("décodeur.层.0", "I8", [2])]))

    one = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    def variant(**fields):
        return {"a": dict(one["a"], **fields)}
    z8 = bytes(8)
    seeds["bad_short"] = b"\x08\x00\x00"
    seeds["bad_header_past_eof"] = struct.pack("<Q", 64) + b"{}"
    seeds["bad_header_too_large"] = struct.pack("<Q", 100_000_001) + b"{}"
    seeds["bad_json"] = image(b'{"a":{"dtype":"F32",', z8)
    seeds["bad_not_object"] = image([1, 2])
    seeds["bad_dtype"] = image(variant(dtype="F8_E4M3"), z8)
    seeds["bad_shape_negative"] = image(variant(shape=[-2]), z8)
    seeds["bad_shape_overflow"] = image(variant(shape=[2**32, 2**32]), z8)
    seeds["bad_offsets_reversed"] = image(variant(data_offsets=[8, 0]), z8)
    seeds["bad_size_mismatch"] = image(variant(data_offsets=[0, 4]), bytes(4))
    seeds["bad_out_of_bounds"] = image(one, bytes(4))
    seeds["bad_trailing"] = image(one, bytes(12))
    seeds["bad_extra_field"] = image(variant(extra=1), z8)
    seeds["bad_missing_field"] = image({"a": {"dtype": "F32", "shape": [2]}}, z8)
    seeds["bad_metadata"] = image({"__metadata__": {"k": 1}})
    h, d = tensors([("a", "F32", [2]), ("b", "F32", [2])])
    h["b"]["data_offsets"] = [4, 12]
    seeds["bad_overlap"] = image(h, d[:12])
    h["b"]["data_offsets"] = [12, 20]
    seeds["bad_gap"] = image(h, d + bytes(4))
    seeds["bad_duplicate_name"] = image(
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"xy")
    seeds["bad_utf8_name"] = image(b'{"\xc0\xaf":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}')

    for name in os.listdir(OUT):  # keep checked-in regress_* reproducers
        if name.startswith(("valid_", "bad_")):
            os.remove(os.path.join(OUT, name))
    for name, blob in sorted(seeds.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(blob)
    print(f"wrote {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes, to {OUT}")


if __name__ == "__main__":
    main()
