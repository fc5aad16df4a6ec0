#!/usr/bin/env python3
"""Compares the tokenizer.json files polar accepted in a fuzz run with the `tokenizers` library.

    POLAR_FUZZ_CASES=2500 POLAR_FUZZ_KEEP_TOKENIZERS=DIR build/tests/polar_tests \\
        --gtest_filter=Fuzz.TokenizerJson
    .venv/bin/python scripts/fuzz_tokenizers_reference.py DIR

Each DIR/case-N.json holds a damaged tokenizer.json that polar loaded and polar's ids of the
probe texts (encode_formatted_text: encode with add_special_tokens=True). For each case the
library either loads the file too and gives the same ids for every probe (agree), loads it and
gives other ids (differ: a failure), or refuses it (polar is more lenient there: counted and
listed, not a failure, since polar's reader checks what polar uses). Exits 1 on any difference.
"""
import glob
import json
import os
import sys


def main():
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("the tokenizers package is missing (scripts/setup.sh installs it)")
        return 2
    cases = sorted(glob.glob(os.path.join(sys.argv[1], "case-*.json")))
    agree, differ, refused = 0, [], {}
    for path in cases:
        case = json.load(open(path, encoding="utf-8"))
        try:
            tok = Tokenizer.from_str(case["tokenizer"])
        except Exception as e:  # the library's own error: it does not take the file
            reason = str(e).split(" at line")[0][:80]
            refused.setdefault(reason, []).append(os.path.basename(path))
            continue
        bad = [(text, ids, tok.encode(text, add_special_tokens=True).ids)
               for text, ids in case["probes"]
               if tok.encode(text, add_special_tokens=True).ids != ids]
        if bad:
            differ.append((os.path.basename(path), bad[0]))
        else:
            agree += 1
    print(f"{len(cases)} accepted tokenizer.json files: {agree} give the library's ids for every "
          f"probe, {len(differ)} differ, {sum(map(len, refused.values()))} the library refuses")
    for reason, names in sorted(refused.items(), key=lambda kv: -len(kv[1])):
        print(f"  refused by the library ({len(names)}): {reason}")
    for name, (text, polar_ids, lib_ids) in differ[:10]:
        print(f"  DIFFER {name}: {json.dumps(text)}: polar {polar_ids}, tokenizers {lib_ids}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
