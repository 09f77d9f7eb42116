#!/usr/bin/env python3
"""Prints the numbers tests/common/text_dataset_test.cc checks, computed the
way the GPTQ reference code does it (pip install tokenizers):
the golden calibration composition (each file encoded separately without
special tokens, concatenated; random.seed(0); 128 x randint(0, N - 2048 - 1)).

  python3 tools/testdata/make_text_dataset_expectations.py [/work/shared/data]
"""
import random
import struct
import sys

from tokenizers import Tokenizer

DATA = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data"
FILES = ["corpus/war_and_peace.txt", "corpus/tiny_shakespeare.txt", "wikitext-2/valid.txt"]


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for b in b"".join(struct.pack("<i", i) for i in ids):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


tok = Tokenizer.from_file(f"{DATA}/models/opt-fixture/tokenizer.json")
ids = []
for f in FILES:
    text = open(f"{DATA}/{f}", "rb").read().decode("utf-8")
    file_ids = tok.encode(text, add_special_tokens=False).ids
    print(f"{f}: {len(file_ids)} tokens")
    ids += file_ids
seqlen, nsamples = 2048, 128
random.seed(0)
starts = [random.randint(0, len(ids) - seqlen - 1) for _ in range(nsamples)]
windows = [t for i in starts for t in ids[i:i + seqlen]]
print(f"total {len(ids)}")
print(f"starts {starts}")
print(f"windows fnv1a64 {fnv1a64(windows):016x}")
