#!/usr/bin/env bash
# Fails when a dev-dependency turns on a feature of a crate that the binary
# also uses. Cargo then builds that crate, and every crate above it (DataFusion
# among them), once for `cargo build --bin headwater` and again for the tests,
# benches and examples. The fix is to enable the same feature in a normal
# dependency (see futures-channel in Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
# The target side only (no build scripts, no proc-macros): cargo tree does not
# tell a crate built for build scripts from the same crate built for the binary.
features() {
  cargo tree --workspace --prefix none -f '{p}|{f}' -e "$1" 2>/dev/null \
    | sed -e 's/ (\*)$//' -e '/^$/d' | sort -u
}
without_dev="$(features normal,no-proc-macro)"
with_dev="$(features normal,dev,no-proc-macro)"
# Crates the binary uses, as the tests build them.
shared="$(join -t '|' -o 2.1,2.2 <(echo "$without_dev" | cut -d'|' -f1 | sort -u) <(echo "$with_dev"))"
differ="$(diff <(echo "$without_dev") <(echo "$shared") || true)"
if [ -n "$differ" ]; then
  echo "headwater: dev-dependencies change the features of crates the binary uses" >&2
  echo "(< the binary alone, > with the dev-dependencies):" >&2
  echo "$differ" | grep '^[<>]' >&2
  exit 1
fi
