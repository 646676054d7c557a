#!/usr/bin/env bash
# The measurements behind docs/benchmarks.md, in one run on one machine:
#   1. the four scheduling policies on the mixed workload at a request rate
#      near saturation (table, JSON, plot);
#   1b. the chunked policy's step budget (--max-batched-tokens) at that rate;
#   2. the batch-size curve (--max-num-seqs 1…64) on the same workload, all
#      requests at once;
#   3. fulcrum vs llama-server at the same load (scripts/compare-llama-server.sh).
#
# Usage: scripts/bench-docs.sh [OUT_DIR]   (default: bench-docs)
# Environment: THREADS [2], RATE [0.45] (policies), PEER_RATE [0.4] and
# SLOTS [16] (the llama-server comparison), N [60] requests per configuration,
# PARTS [policies,budget,batch,peer] (which sections to run).
set -euo pipefail


root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-bench-docs}
threads=${THREADS:-2}
rate=${RATE:-0.45}
peer_rate=${PEER_RATE:-0.4}
slots=${SLOTS:-16}
n=${N:-60}
mkdir -p "$out"
(cd "$root" && cargo build --release -q -p fulcrum)
fulcrum=$root/target/release/fulcrum
workload=(--input-len 100:1500 --output-len 50:300 --seed 0 --slo ttft=2s,tpot=100ms --threads "$threads")

parts=${PARTS:-policies,budget,batch,peer}
want() { [[ ",$parts," == *",$1,"* ]]; }

if want policies; then
    echo "## 1. policies at $rate req/s" | tee "$out/policies.txt"
    "$fulcrum" bench sweep "${workload[@]}" --policy static,prefill-first,decode-first,chunked \
        --request-rate "$rate" --num-requests "$n" --quiet \
        --plot "$out/policies" --json "$out/policies.json" | tee -a "$out/policies.txt"
fi

if want budget; then
    echo "## 1b. the chunked policy's step budget at $rate req/s" | tee "$out/chunked-budget.txt"
    "$fulcrum" bench sweep "${workload[@]}" --policy chunked --max-batched-tokens 128,256,512,1024,2048 \
        --request-rate "$rate" --num-requests "$n" --quiet \
        --plot "$out/chunked-budget" --json "$out/chunked-budget.json" | tee -a "$out/chunked-budget.txt"
fi

if want batch; then
    echo "## 2. batch-size curve, $n requests at once" | tee "$out/batch-size.txt"
    "$fulcrum" bench sweep "${workload[@]}" --max-num-seqs 1,2,4,8,16,32,64 \
        --request-rate inf --num-requests "$n" --quiet \
        --plot "$out/batch-size" --json "$out/batch-size.json" | tee -a "$out/batch-size.txt"
fi

if want peer; then
    echo "## 3. fulcrum vs llama-server at $peer_rate req/s, $slots slots" | tee "$out/vs-llama-server.txt"
    "$root/scripts/compare-llama-server.sh" --threads "$threads" --slots "$slots" \
        --request-rate "$peer_rate" --num-requests "$n" --input-len 100:1500 --output-len 50:300 \
        --slo ttft=2s,tpot=100ms --out "$out/vs-llama-server" | tee -a "$out/vs-llama-server.txt"
fi
