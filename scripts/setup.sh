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

# A Kafka-protocol broker for the exactly-once tests (noida-db, one binary in
# a Python wheel), in a virtualenv under the cache directory.
broker_venv="${HEADWATER_CACHE:-$HOME/.cache/headwater}/noida-venv"
if ! ls "$broker_venv"/lib/python3*/site-packages/noida_db/noida-db >/dev/null 2>&1; then
  command -v python3 >/dev/null || { echo "headwater: python3 is missing (the test broker comes from PyPI)" >&2; exit 1; }
  echo "headwater: installing the test broker (noida-db) into $broker_venv" >&2
  if ! python3 -m venv "$broker_venv" 2>/dev/null; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends python3-venv python3-pip
    rm -rf "$broker_venv"
    python3 -m venv "$broker_venv"
  fi
  "$broker_venv/bin/pip" install -q "noida-db==0.2.3"
fi
