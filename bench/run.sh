#!/usr/bin/env bash
# The benchmark command: installs what the benchmarks need (Debian packages,
# the virtualenv), then runs bench/registry_bench.py with the given options
# (e.g. --quick, --runs 5, --txregistry-args "--workers 2").
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(docker-registry hey skopeo umoci)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# shellcheck source=scripts/venv.sh
source scripts/venv.sh test
exec .venv/bin/python bench/registry_bench.py "$@"
