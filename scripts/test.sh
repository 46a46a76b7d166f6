#!/usr/bin/env bash
# Sets up everything the test suite needs on a Debian machine with Python
# 3.11 (Debian packages, a virtualenv with the project and its test tools),
# then runs the linters, the type checker and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive: the reference registry (Distribution 2.8),
# curl, the container clients of tests/test_clients.py (skopeo, podman,
# buildah), nginx for tests/test_scale_out.py, openssl's s_client for
# tests/test_tls.py and Redis for the Redis test server
# (txregistry/testing/redisserver.py).  Installed when missing; needs root
# (or sudo).
# shellcheck source=scripts/debian.sh
source scripts/debian.sh
install_debian_packages docker-registry curl skopeo podman buildah nginx-light openssl redis-server prometheus

# shellcheck source=scripts/venv.sh
source scripts/venv.sh test

.venv/bin/ruff check txregistry twisted tests bench
.venv/bin/ruff format --check txregistry twisted tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
