#!/usr/bin/env bash
# The benchmark command: installs what the benchmarks need (Debian packages,
# the virtualenv), then runs bench/registry_bench.py with the given options
# (e.g. --quick, --runs 5, --txregistry-args "--workers 2"); with `proxy` as
# the first argument, bench/proxy_bench.py instead (e.g. `proxy --quick`); with
# `scale`, bench/scale_bench.py (e.g. `scale --quick`).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=registry_bench
case "${1:-}" in
    proxy | scale)
        bench="$1_bench"
        shift
        ;;
esac
# shellcheck source=scripts/debian.sh
source scripts/debian.sh
install_debian_packages docker-registry hey skopeo umoci
# shellcheck source=scripts/venv.sh
source scripts/venv.sh test
exec .venv/bin/python "bench/$bench.py" "$@"
