#!/usr/bin/env python3
"""`baq tokenize` against Hugging Face `tokenizers` as the oracle (issue 17).

Two suites (--suite):
  reference    every tokenizer.json under <data>/tokenizers/*/ and
               <data>/models/*/, plus variants of them that exercise each
               supported component (every Split behaviour, Metaspace schemes,
               normalizers, added-token flags, BPE options), encode the test
               text (and WikiText-2 test with two of them) with `tokenizers`
               (add_special_tokens=False) and with `baq tokenize`: the ids must
               be identical. Unsupported components must be refused (exit 1,
               the component named on stderr), usage errors exit 2.
  testvectors  the expected encodings of another project's test suite
               (<data>/tokenizers/testvectors) for the families whose
               tokenizer.json we have; prints which could not be checked, why.

`baq tokenize` (--baq) encodes the test text with each shared file; the long
texts, variants and test vectors go through tokenize_batch (--batch: the same library
calls, LibTorch-free, each tokenizer loaded once), because `baq` spends about a
second loading LibTorch at every start.

The reference runs in the venv .ci/install-deps makes (--ref-python). Exit 77
(CTest: skipped) with a message when the shared data, the reference or the
binary is missing.
"""
import argparse
import concurrent.futures
import copy
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77

REFERENCE = r"""
import json, sys
from tokenizers import Tokenizer
out = []
for tok_path, text_path in json.load(sys.stdin):
    try:
        tok = Tokenizer.from_file(tok_path)
        with open(text_path, encoding="utf-8", newline="") as f:
            text = f.read()
        out.append({"ids": tok.encode(text, add_special_tokens=False).ids})
    except Exception as e:  # The reference refusing a variant is a test bug.
        out.append({"error": repr(e)})
json.dump(out, sys.stdout)
"""

BEHAVIORS = ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]


def skip(message):
    print(f"SKIPPED: {message}")
    sys.exit(SKIP)


def byte_level(add_prefix_space=False, use_regex=False):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True,
            "use_regex": use_regex}


def split(pattern, behavior, invert=False, kind="Regex"):
    return {"type": "Split", "pattern": {kind: pattern}, "behavior": behavior, "invert": invert}


def seq(*pre):
    return {"type": "Sequence", "pretokenizers": list(pre)}


def added(content, id_, **flags):
    token = {"id": id_, "content": content, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": True, "special": False}
    token.update(flags)
    return token


def variants(base):
    """(name, tokenizer.json dict) pairs derived from the real files. The
    byte-level ones start from the OPT fixture's file (GPT-2's format, a quarter
    of its size: the variants are many)."""
    gpt2, llama2, olmo = base["opt-fixture"], base["llama2"], base["olmo2_cl100k"]

    def with_(src, **fields):
        # Shallow copies: the vocabulary and merges stay shared (dump_json
        # serializes each shared part once).
        j = dict(src)
        for key, value in fields.items():
            if key == "model":
                j["model"] = dict(src["model"])
                j["model"].update(value)
            else:
                j[key] = value
        return j

    out = []
    # Split: every behaviour, inverted or not, on a pattern with several classes.
    for b in BEHAVIORS:
        for inv in (False, True):
            out.append((f"split_{b}_invert{inv}", with_(gpt2, pre_tokenizer=seq(
                split(r"\p{N}+|\s+|[,.;:!?]", b, inv), byte_level()))))
    out.append(("split_string_space", with_(gpt2, pre_tokenizer=seq(
        split(" ", "Isolated", kind="String"), byte_level()))))
    out.append(("split_string_newline_merged_prev", with_(gpt2, pre_tokenizer=seq(
        split("\n", "MergedWithPrevious", kind="String"), byte_level()))))
    # Look-around and empty matches.
    out.append(("split_lookaround_empty", with_(gpt2, pre_tokenizer=seq(
        split(r"(?<=[a-z])(?=[A-Z])|\s+(?!\S)|(?<=\d)(?=\D)", "Isolated"), byte_level()))))
    # Digits (SmolLM), Falcon's sequence, Punctuation behaviours.
    for individual in (True, False):
        out.append((f"digits_individual{individual}", with_(gpt2, pre_tokenizer=seq(
            {"type": "Digits", "individual_digits": individual},
            byte_level(use_regex=True)))))
    out.append(("falcon_like", with_(gpt2, pre_tokenizer=seq(
        {"type": "Punctuation", "behavior": "Contiguous"}, byte_level(use_regex=True),
        {"type": "Digits", "individual_digits": False},
        split("[0-9][0-9][0-9]", "Isolated")))))
    for b in ("Isolated", "MergedWithNext", "Removed"):
        out.append((f"punctuation_{b}", with_(gpt2, pre_tokenizer=seq(
            {"type": "Punctuation", "behavior": b}, byte_level()))))
    out.append(("whitespace", with_(gpt2, pre_tokenizer=seq({"type": "Whitespace"},
                                                            byte_level()))))
    out.append(("whitespace_split", with_(gpt2, pre_tokenizer=seq(
        {"type": "WhitespaceSplit"}, byte_level()))))
    out.append(("char_delimiter", with_(gpt2, pre_tokenizer=seq(
        {"type": "CharDelimiterSplit", "delimiter": "e"}, byte_level()))))
    out.append(("bytelevel_prefix_space", with_(gpt2, pre_tokenizer=byte_level(True, True))))
    out.append(("bytelevel_no_regex", with_(gpt2, pre_tokenizer=byte_level(False, False))))
    # Metaspace (newer Llama/Mistral files), every prepend scheme.
    for scheme in ("first", "always", "never"):
        for split_ in (True, False):
            out.append((f"metaspace_{scheme}_split{split_}", with_(
                llama2, normalizer=None, pre_tokenizer={
                    "type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme,
                    "split": split_})))
    # Normalizers (before ByteLevel, so every character stays encodable).
    norms = {
        "nfc": {"type": "NFC"}, "nfd": {"type": "NFD"}, "nfkc": {"type": "NFKC"},
        "nfkd": {"type": "NFKD"}, "lowercase": {"type": "Lowercase"},
        "strip_both": {"type": "Strip", "strip_left": True, "strip_right": True},
        "strip_left": {"type": "Strip", "strip_left": True, "strip_right": False},
        "strip_accents": {"type": "Sequence", "normalizers": [{"type": "NFD"},
                                                              {"type": "StripAccents"}]},
        "replace_regex": {"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "},
        "replace_string": {"type": "Replace", "pattern": {"String": "  "}, "content": "_"},
        "prepend": {"type": "Prepend", "prepend": "\u0394"},
        "sequence": {"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Lowercase"},
            {"type": "Replace", "pattern": {"Regex": "[0-9]"}, "content": "#"}]},
    }
    for name, n in norms.items():
        out.append((f"normalizer_{name}", with_(gpt2, normalizer=n)))
    # Added tokens: every flag, raw and normalized matching.
    n = len(gpt2["model"]["vocab"])
    extra = [
        added("<|im_start|>", n, lstrip=True, special=True, normalized=False),
        added("<|im_end|>", n + 1, rstrip=True, special=True, normalized=False),
        added("fox", n + 2, single_word=True),
        added("spaces", n + 3, lstrip=True, rstrip=True),
        added("[INST]", n + 4, normalized=False),
        added("é", n + 5, single_word=True),
        added("  ", n + 6),
        added("Hello", n + 7, single_word=True, normalized=False),
        added("<|endoftext|>", n + 8, special=True, normalized=True),
    ]
    out.append(("added_tokens", with_(gpt2, added_tokens=gpt2["added_tokens"] + extra)))
    out.append(("added_tokens_lowercase", with_(
        gpt2, added_tokens=gpt2["added_tokens"] + extra, normalizer={"type": "Lowercase"})))
    # BPE options.
    out.append(("llama2_unk_fused", with_(llama2, model={"byte_fallback": False})))
    out.append(("llama2_unk_unfused", with_(llama2, model={"byte_fallback": False,
                                                           "fuse_unk": False})))
    out.append(("olmo2_ignore_merges", with_(olmo, model={"ignore_merges": True})))
    return out


def dump_json(value, cache):
    """json.dumps, serializing each large list or dict shared between variants
    once (cache: id -> text; the objects outlive it)."""
    if isinstance(value, dict):
        if len(value) > 64 and id(value) in cache:
            return cache[id(value)]
        text = "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {dump_json(v, cache)}"
                               for k, v in value.items()) + "}"
    elif isinstance(value, list) and len(value) > 64:
        if id(value) not in cache:
            cache[id(value)] = json.dumps(value, ensure_ascii=False)
        return cache[id(value)]
    else:
        return json.dumps(value, ensure_ascii=False)
    if len(value) > 64:
        cache[id(value)] = text
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", choices=["reference", "testvectors"], required=True)
    ap.add_argument("--baq", required=True, help="the baq binary")
    ap.add_argument("--batch", required=True,
                    help="tokenize_batch: the same library calls, LibTorch-free, many jobs at once")
    ap.add_argument("--ref-python", required=True, help="a python with `tokenizers`")
    ap.add_argument("--data", required=True, help="the shared data dir")
    ap.add_argument("--text", required=True, help="the test text")
    ap.add_argument("--testdata", required=True, help="tests/tools/testdata")
    args = ap.parse_args()

    tokdir = os.path.join(args.data, "tokenizers")
    if not os.path.isdir(tokdir):
        skip(f"no shared tokenizers at {tokdir}")
    for binary in (args.baq, args.batch):
        if not os.access(binary, os.X_OK):
            skip(f"no binary at {binary}")
    probe = subprocess.run([args.ref_python, "-c", "import tokenizers"], capture_output=True)
    if probe.returncode != 0:
        skip(f"{args.ref_python} cannot import tokenizers (run .ci/install-deps)")

    with tempfile.TemporaryDirectory(prefix="baq_tokenize_test_") as tmp:
        if args.suite == "reference":
            failures = run_reference(args, tokdir, tmp)
        else:
            failures = run_testvectors(args, tokdir, tmp)
    if failures:
        print(f"FAILED: {len(failures)}")
        for f in failures:
            print("  " + f)
        sys.exit(1)
    print("PASSED")


def baq_ids(baq, tokenizer, text):
    r = subprocess.run([baq, "tokenize", "--tokenizer", tokenizer, "--text", text],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"exit {r.returncode}: {r.stderr.strip()[-400:]}"
    out = json.loads(r.stdout)
    assert out["count"] == len(out["ids"]), "count != len(ids)"
    return out["ids"], None


def batch_ids(batch, jobs):
    """(ids, error) per (tokenizer, text) job, from one tokenize_batch run."""
    r = subprocess.run([batch], input=json.dumps([[t, x] for t, x in jobs]),
                       capture_output=True, text=True, check=True)
    return [(o["ids"], None) if "ids" in o else (None, o["error"]) for o in json.loads(r.stdout)]


def our_ids(args, jobs, runner):
    """runner "baq": one `baq tokenize` per job (two at a time); "batch": tokenize_batch."""
    if runner == "batch":
        return batch_ids(args.batch, jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda j: baq_ids(args.baq, j[0], j[1]), jobs))


def reference_ids(ref_python, jobs):
    r = subprocess.run([ref_python, "-c", REFERENCE], input=json.dumps(jobs),
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def first_difference(a, b):
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    return f"first difference at {i} of {len(a)} (reference) / {len(b)} (baq): " \
           f"{a[max(0, i - 2):i + 4]} vs {b[max(0, i - 2):i + 4]}"


def compare(args, jobs, runner):
    """jobs: (name, tokenizer path, text path). Returns failure strings."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # Both at once.
        refs = pool.submit(reference_ids, args.ref_python, [[t, x] for _, t, x in jobs])
        ours = our_ids(args, [(t, x) for _, t, x in jobs], runner)
        refs = refs.result()
    failures = []
    for (name, _, text), ref, (ids, err) in zip(jobs, refs, ours):
        label = f"{name} on {os.path.basename(text)} [{runner}]"
        if "error" in ref:
            failures.append(f"{label}: the reference refused it: {ref['error']}")
        elif err is not None:
            failures.append(f"{label}: failed: {err}")
        elif ids != ref["ids"]:
            failures.append(f"{label}: ids differ, {first_difference(ref['ids'], ids)}")
        else:
            print(f"ok   {label}: {len(ids)} ids")
    return failures


def run_reference(args, tokdir, tmp):
    jobs = []
    files = {}
    for family in sorted(os.listdir(tokdir)):
        path = os.path.join(tokdir, family, "tokenizer.json")
        if os.path.isfile(path):
            files[family] = path
            jobs.append((family, path, args.text))
    models = os.path.join(args.data, "models")
    for model in sorted(os.listdir(models)) if os.path.isdir(models) else []:
        path = os.path.join(models, model, "tokenizer.json")
        if os.path.isfile(path):
            jobs.append((f"models/{model}", path, args.text))
    # The shared files through `baq tokenize` itself; the rest (long texts,
    # variants) through tokenize_batch, the same library calls.
    variant_jobs = [("bpe_prefix_suffix (trained here)",
                     os.path.join(args.testdata, "bpe_prefix_suffix_tokenizer.json"), args.text)]
    wiki = os.path.join(args.data, "wikitext-2", "test.txt")
    if os.path.isfile(wiki):
        # The first 200 kB (whole lines): the reference needs ~5 s per tokenizer
        # for the whole file; tests/common/bpe_tokenizer_test.cc encodes all of it.
        with open(wiki, encoding="utf-8", newline="") as f:
            head = f.read(200_000)
        excerpt = os.path.join(tmp, "wikitext-2-test-200k.txt")
        with open(excerpt, "w", encoding="utf-8", newline="") as f:
            f.write(head[:head.rfind("\n") + 1])
        for family in ("llama2", "olmo2_cl100k"):
            if family in files:
                variant_jobs.append((family, files[family], excerpt))

    files["opt-fixture"] = os.path.join(models, "opt-fixture", "tokenizer.json")
    needed = ("opt-fixture", "llama2", "olmo2_cl100k")
    missing = [f for f in needed if not os.path.isfile(files.get(f, ""))]
    if missing:
        print(f"note: no variants (missing {missing})")
    else:
        base = {f: json.load(open(files[f], encoding="utf-8")) for f in needed}
        dumped = {}
        for name, j in variants(base):
            path = os.path.join(tmp, f"{name}.json")
            with open(path, "w", encoding="utf-8") as f:
                f.write(dump_json(j, dumped))
            variant_jobs.append((f"variant {name}", path, args.text))
    failures = compare(args, jobs, "baq") + compare(args, variant_jobs, "batch")
    failures += check_refusals(args, files, tmp)
    return failures


def check_refusals(args, files, tmp):
    """Unsupported components are refused naming them (the first through
    `baq tokenize`: exit 3, input refused (docs/cli.md), the message on stderr);
    usage errors exit 2."""
    failures = []
    if "gpt2" in files:
        gpt2 = json.load(open(files["gpt2"], encoding="utf-8"))
        cases = [
            ("normalizer", {"type": "Precompiled", "precompiled_charsmap": ""},
             'normalizer "Precompiled" is not supported'),
            ("pre_tokenizer", {"type": "BertPreTokenizer"},
             'pre_tokenizer "BertPreTokenizer" is not supported'),
            ("model", {"type": "Unigram", "unk_id": 0, "vocab": [["a", 0.0]]},
             'model "Unigram" is not supported'),
        ]
        paths = []
        for field, value, needle in cases:
            j = dict(gpt2)
            j[field] = value
            paths.append(os.path.join(tmp, f"refused_{field}.json"))
            with open(paths[-1], "w", encoding="utf-8") as f:
                json.dump(j, f)
        r = subprocess.run([args.baq, "tokenize", "--tokenizer", paths[0], "--text", args.text],
                           capture_output=True, text=True)
        if r.returncode != 3 or cases[0][2] not in r.stderr:
            failures.append(f"baq refusal of normalizer: exit {r.returncode}, {r.stderr!r}")
        else:
            print(f"ok   refused [baq, exit 3]: {r.stderr.strip()}")
        for (field, _, needle), (ids, err) in zip(
                cases, batch_ids(args.batch, [(p, args.text) for p in paths])):
            if ids is not None or needle not in err:
                failures.append(f"refusal of {field}: {ids or err}")
            else:
                print(f"ok   refused [batch]: {err}")
    r = subprocess.run([args.baq, "tokenize", "--text", args.text], capture_output=True, text=True)
    if r.returncode != 2 or "--tokenizer" not in r.stderr:
        failures.append(f"usage error: exit {r.returncode}, stderr {r.stderr!r}")
    else:
        print(f"ok   usage error [baq, exit 2]: {r.stderr.strip()}")
    return failures


def run_testvectors(args, tokdir, tmp):
    vectors = os.path.join(tokdir, "testvectors")
    have = {f for f in os.listdir(tokdir)
            if os.path.isfile(os.path.join(tokdir, f, "tokenizer.json"))}
    # (vectors file, our tokenizer, how many leading special ids the vectors
    # carry, trailing ones, why this tokenizer applies).
    encoded = [
        ("llama_encoded.json", "llama2", 1, 0, "Llama-2: its own tokenizer.json"),
        ("gpt2_encoded_tokens.json", "gpt2", 0, 0, "GPT-2: its own tokenizer.json"),
        ("whisper_tiny_en_encoded.json", "gpt2", 2, 1,
         "Whisper tiny.en: English-only Whisper uses GPT-2's vocabulary and merges"),
        ("llama_3.2_encoded.json", "olmo2_cl100k", 1, 0,
         "Llama-3.2: cl100k_base is its first 100256 ids; checked only if every expected "
         "id is below 100256 and names the same token"),
    ]
    not_checked = {
        "falcon_encoded.json": "no Falcon tokenizer.json in ../shared",
        "gemma_encoded.json": "no Gemma tokenizer.json (and Gemma's is SentencePiece-derived)",
        "t5_base_encoded.json": "T5 is a Unigram model (refused) and its file is absent",
        "whisper_large_v2_encoded.json": "multilingual Whisper vocabulary, file absent",
    }
    jobs = []  # (name, tokenizer, text, runner)
    expected = []
    failures = []
    for vec, family, lead, trail, why in encoded:
        path = os.path.join(vectors, vec)
        if not os.path.isfile(path) or family not in have:
            print(f"not checked {vec}: file or {family} tokenizer absent")
            continue
        v = json.load(open(path, encoding="utf-8"))
        ids = v["token_ids"][lead:len(v["token_ids"]) - trail]
        if family == "olmo2_cl100k" and not shares_cl100k(ids, v.get("bpe_tokens"),
                                                          os.path.join(tokdir, family)):
            print(f"not checked {vec}: uses Llama-3-only tokens")
            continue
        text_path = os.path.join(tmp, vec + ".txt")
        with open(text_path, "w", encoding="utf-8", newline="") as f:
            f.write(v["text"])
        jobs.append((f"{vec} [{why}]", os.path.join(tokdir, family, "tokenizer.json"),
                     text_path, "batch"))
        expected.append(ids)
    # tokenizer_tests.json: short strings per model.
    tests_path = os.path.join(vectors, "tokenizer_tests.json")
    cases = [("distilgpt2", "gpt2", 0), ("coreml-projects/Llama-2-7b-chat-coreml", "llama2", 1),
             ("pcuenq/Llama-3.2-1B-Instruct-tokenizer", "olmo2_cl100k", 1)]
    skipped_cases = []
    if os.path.isfile(tests_path):
        tests = json.load(open(tests_path, encoding="utf-8"))
        for model, family, lead in cases:
            if family not in have or model not in tests:
                continue
            for i, case in enumerate(tests[model]):
                ids = case["encoded"]["input_ids"][lead:]
                if family == "olmo2_cl100k" and max(ids, default=0) >= 100256:
                    skipped_cases.append(f"{model} #{i} {case['input']!r}")
                    continue
                text_path = os.path.join(tmp, f"case_{family}_{i}.txt")
                with open(text_path, "w", encoding="utf-8", newline="") as f:
                    f.write(case["input"])
                jobs.append((f"tokenizer_tests {model} #{i}",
                             os.path.join(tokdir, family, "tokenizer.json"), text_path, "batch"))
                expected.append(ids)
        others = sorted(set(tests) - {m for m, _, _ in cases})
        print(f"not checked tokenizer_tests.json models (no tokenizer.json here): {others}")
    for vec, why in not_checked.items():
        print(f"not checked {vec}: {why}")
    for c in skipped_cases:
        print(f"not checked {c}: expects Llama-3-only ids (>= 100256), absent from cl100k")
    ours = {}
    for runner in ("baq", "batch"):
        picked = [i for i, j in enumerate(jobs) if j[3] == runner]
        for i, result in zip(picked, our_ids(args, [(jobs[i][1], jobs[i][2]) for i in picked],
                                             runner)):
            ours[i] = result
    for k, ((name, _, _, runner), want) in enumerate(zip(jobs, expected)):
        ids, err = ours[k]
        name = f"{name} [{runner}]"
        if err is not None:
            failures.append(f"{name}: failed: {err}")
        elif ids != want:
            failures.append(f"{name}: {first_difference(want, ids)}")
        else:
            print(f"ok   {name}: {len(ids)} ids")
    return failures


def shares_cl100k(ids, tokens, family_dir):
    """True if every expected id is a cl100k id naming the same token string."""
    if any(i >= 100256 for i in ids):
        return False
    if tokens is None:
        return True
    vocab = json.load(open(os.path.join(family_dir, "tokenizer.json"),
                           encoding="utf-8"))["model"]["vocab"]
    by_id = {v: k for k, v in vocab.items()}
    return len(tokens) == len(ids) and all(by_id.get(i) == t for i, t in zip(ids, tokens))


if __name__ == "__main__":
    main()
