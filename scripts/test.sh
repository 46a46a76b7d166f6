#!/usr/bin/env bash
# Sets up everything the test suite needs on a Debian machine with Python
# 3.11 (Debian packages, a virtualenv with the project and its test tools),
# then runs the linters, the type checker and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive: the reference registry (Distribution 2.8),
# curl, and the container clients of tests/test_clients.py (skopeo, podman,
# buildah).  Installed when missing; needs root (or sudo).
packages=(docker-registry curl skopeo podman buildah)
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

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
