#!/usr/bin/env bash
# Runs the kernel tests (NEON included) for aarch64 under qemu on an x86-64
# machine: the NEON kernels are checked bit for bit against the portable
# ones exactly as the x86 kernels are by `cargo test`.
#
# Needs (Debian): qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross,
# and `rustup target add aarch64-unknown-linux-gnu`. With INSTALL=1 the script
# installs them (apt-get as root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${INSTALL:-0}" == 1 ]]; then
    apt-get install -y --no-install-recommends qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    rustup target add aarch64-unknown-linux-gnu
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# `-cpu max` emulates a core with the dot-product extension (Isa::Neon).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max"
cargo test --release --target aarch64-unknown-linux-gnu -p fulcrum-kernels "$@"
