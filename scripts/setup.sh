#!/usr/bin/env bash
# Installs what the build needs on a Debian machine that has Rust, if missing.
# Safe to run again: it installs nothing that is already there.
set -euo pipefail

# RocksDB's C++ needs a compiler, and its bindings need libclang.
# psql, for the tests that check the Postgres protocol with the real client.
packages=(gcc g++ make pkg-config clang libclang-dev postgresql-client)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "headwater: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "headwater: cargo is missing; install Rust from rustup first" >&2; exit 1; }
