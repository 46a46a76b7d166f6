# Sourced by the other scripts: makes .venv with the project installed
# (with the extras named in $1, if any), installing Debian's python3-venv
# first when this Python cannot make virtualenvs.
python=${PYTHON:-python3}
extras=${1:-}
if [ ! -x .venv/bin/python ]; then
    if ! "$python" -c "import ensurepip, venv" >/dev/null 2>&1; then
        # shellcheck source=scripts/debian.sh
        source scripts/debian.sh
        install_debian_packages python3-venv
    fi
    "$python" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
fi
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
