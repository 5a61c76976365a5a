# Shared settings of the scripts: one target directory for the demo, the tests
# and the benches, outside the clone, so that a fresh clone reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/headwater/target}"
