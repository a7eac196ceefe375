#!/usr/bin/env python3
"""Parses per second of libphonenumber's Python port on the benchmark sets of benches/phone.rs.

Sets, read from corpus.jsonl: "ru_mobile" (rows tagged ru/mobile) and "mixed" (rows tagged intl/...).
Each parse is `parse(s, "RU")`, `is_valid_number` and, when valid, E.164 formatting.
"""

import json
import os
import time

import phonenumbers as pn

HERE = os.path.dirname(os.path.abspath(__file__))
rows = [json.loads(line) for line in open(os.path.join(HERE, "corpus.jsonl"), encoding="utf-8")][1:]
SETS = {
    "ru_mobile": [r[0] for r in rows if r[2] == "ru/mobile"],
    "mixed": [r[0] for r in rows if r[2].startswith("intl/")],
}


def one(s):
    try:
        n = pn.parse(s, "RU")
    except pn.NumberParseException:
        return None
    if pn.is_valid_number(n):
        return pn.format_number(n, pn.PhoneNumberFormat.E164)
    return None


for name, inputs in SETS.items():
    for s in inputs:  # warm the metadata and regex caches
        one(s)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for s in inputs:
            one(s)
        best = min(best, (time.perf_counter() - t) / len(inputs))
    print(f"{name}: {len(inputs)} inputs, {best * 1e6:.2f} µs per parse, {1 / best:,.0f} parses/s")
