#!/usr/bin/env bash
# Sets up a virtualenv with txregistry and runs it: with no arguments on the
# embedded default (filesystem storage under ./registry-data, port 5000);
# any arguments go to `twist registry` (e.g. --config config.yml).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/twist ]; then
    # An explicit empty argument (no extras): a sourced script without
    # arguments would take ours (--config ...) for its extras.
    # shellcheck source=scripts/venv.sh
    source scripts/venv.sh ""
fi
exec .venv/bin/twist registry "$@"
