#!/usr/bin/env bash
# Every test of the workspace: unit, end-to-end, doc tests, and the examples build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
# The tests must not build the dependencies with other features than the demo.
scripts/check-features.sh
# The benches are not run here, but they must build.
cargo build --release --workspace --benches
exec cargo test --release --workspace "$@"
