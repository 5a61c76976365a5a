#!/usr/bin/env bash
# The main demo: a typed Rust pipeline over the `orders` generator at parallelism 2.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
exec cargo run --release --example orders -- "$@"
