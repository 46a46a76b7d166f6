#!/usr/bin/env bash
# The benchmark command: installs what the benchmarks need (Debian packages,
# the virtualenv), then runs bench/registry_bench.py with the given options
# (e.g. --quick, --runs 5, --txregistry-args "--workers 2").
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/debian.sh
source scripts/debian.sh
install_debian_packages docker-registry hey skopeo umoci
# shellcheck source=scripts/venv.sh
source scripts/venv.sh test
exec .venv/bin/python bench/registry_bench.py "$@"
