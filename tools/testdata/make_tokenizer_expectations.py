#!/usr/bin/env python3
"""Writes tests/common/testdata/bpe_tokenizer_expectations.json: what Hugging
Face `tokenizers` (pip install tokenizers) produces with the fixture
tokenizer, for tests/common/bpe_tokenizer_test.cc to reproduce.

- wikitext2_test: the ids of the WHOLE wikitext-2/test.txt (bytes decoded as
  UTF-8, encoded as one string, no special tokens added): count, 64-bit FNV-1a
  of the ids as little-endian int32, and the first 200 ids.
- strings: tricky strings (unicode, digits, contractions, runs of spaces,
  newlines, emoji, special tokens) and random ones.
- variants: the fixture tokenizer.json with a patch applied (the test applies
  the same patch), and the ids of every string under it.

Run from the repository root:
  python3 tools/testdata/make_tokenizer_expectations.py [/work/shared/data]
"""
import json
import random
import struct
import sys

import tokenizers
from tokenizers import Tokenizer

DATA = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data"
TOKENIZER = "models/opt-fixture/tokenizer.json"
OUT = "tests/common/testdata/bpe_tokenizer_expectations.json"

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")


def split_then_byte_level(regex):
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
         "use_regex": False}]}


# Each variant: a name and a patch of top-level tokenizer.json keys (and
# extra added tokens).
VARIANTS = [
    {"name": "fixture", "patch": {}},
    {"name": "gpt2_add_prefix_space",
     "patch": {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True,
                                 "trim_offsets": True, "use_regex": True}}},
    {"name": "llama3_split", "patch": {"pre_tokenizer": split_then_byte_level(LLAMA3_REGEX)}},
    {"name": "qwen2_split", "patch": {"pre_tokenizer": split_then_byte_level(QWEN2_REGEX)}},
    {"name": "added_token_options", "patch": {}, "extra_added_tokens": [
        {"id": 8192, "content": "<mask>", "single_word": False, "lstrip": True,
         "rstrip": False, "normalized": False, "special": True},
        {"id": 8193, "content": "[SEP]", "single_word": False, "lstrip": False,
         "rstrip": True, "normalized": False, "special": True},
        {"id": 8194, "content": "<s>extra", "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": True},
        {"id": 8195, "content": "word", "single_word": True, "lstrip": False,
         "rstrip": False, "normalized": False, "special": False}]},
]

TRICKY = [
    "Hello world", "  leading spaces", "trailing spaces   ", "a    b", "a \t b\t\tc",
    "line1\nline2\n\nline3\r\nline4\r\n\r\n", "\n", " ", "   ", "\n\n\n  x",
    "I'm don't you'll we've they're he'd it's", "'S 'LL 'Re 'T O'Neil ''quoted'' '",
    "digits 1 12 123 1234 12345 3.14159 1,000,000 2024-01-01", "½ ² Ⅻ ٣ 四",
    "Café naïve façade Ærøskøbing", "Привет, мир! Ελληνικά", "日本語のテキストと中文",
    "emoji 😀 👍🏽 👨‍👩‍👧 🇺🇸!", "tab\tsep\u00a0nbsp\u3000ideographic\u2028ls",
    "<s>hello</s> <unk> <pad>", "= = Robert <unk> = = \n @-@ 1 @,@ 000",
    "ſ 's ſt 'ſ", "ß ẞ ﬁ K", "e\u0301 combining", "zero\u200bwidth\u200djoiner",
    "mixed123abc456 !!!??? ...", "((nested)) [brackets] {braces} <angles>",
    "word words sword word_ word1 (word)", "x<mask> <mask>y  <mask>", "a[SEP]  b [SEP]\nc",
    "<s>extra <s>ext <s>", "\U0001F600" * 5, "a" * 300, " ".join(["ab"] * 50),
]


def random_strings(n, seed=1234):
    rng = random.Random(seed)
    pool = (list("abcXYZ019 '\n\t\r.,!-_<>/s") + ["  ", "'s", "'ll", "<s>", "<unk>", "é",
            "ß", "ſ", "٣", "½", "\u00a0", "\u3000", "日", "😀", "\u0301", "Ω", "\u200b"])
    out = []
    for _ in range(n):
        out.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 24))))
    return out


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for b in b"".join(struct.pack("<i", i) for i in ids):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    base = json.load(open(f"{DATA}/{TOKENIZER}", encoding="utf-8"))
    strings = TRICKY + random_strings(60)
    variants = []
    for v in VARIANTS:
        j = json.loads(json.dumps(base))
        j.update(v["patch"])
        j["added_tokens"] = j["added_tokens"] + v.get("extra_added_tokens", [])
        tok = Tokenizer.from_str(json.dumps(j))
        ids = [tok.encode(s, add_special_tokens=False).ids for s in strings]
        variants.append(dict(v, ids=ids))

    tok = Tokenizer.from_file(f"{DATA}/{TOKENIZER}")
    text = open(f"{DATA}/wikitext-2/test.txt", "rb").read().decode("utf-8")
    ids = tok.encode(text, add_special_tokens=False).ids
    out = {
        "generator": "tools/testdata/make_tokenizer_expectations.py",
        "tokenizers_version": tokenizers.__version__,
        "tokenizer": TOKENIZER,
        "wikitext2_test": {"file": "wikitext-2/test.txt", "count": len(ids),
                           "fnv1a64": f"{fnv1a64(ids):016x}", "first_ids": ids[:200]},
        "strings": strings,
        "variants": variants,
    }
    # One string / id list per line, so that diffs stay readable.
    def dump(x):
        return json.dumps(x, ensure_ascii=True, separators=(",", ":"))

    lines = []
    for key, value in out.items():
        if key == "strings":
            body = ",\n".join("  " + dump(x) for x in value)
            lines.append(f'"{key}":[\n{body}]')
        elif key == "variants":
            vs = []
            for v in value:
                head = dump({k: x for k, x in v.items() if k != "ids"})[:-1]
                body = ",\n".join("  " + dump(x) for x in v["ids"])
                vs.append(f'{head},"ids":[\n{body}]}}')
            lines.append(f'"{key}":[\n' + ",\n".join(vs) + "]")
        else:
            lines.append(f'"{key}":{dump(value)}')
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"{OUT}: wikitext-2 test {len(ids)} ids, {len(variants)} variants x "
          f"{len(strings)} strings")


if __name__ == "__main__":
    main()
