# Sourced by the scripts: a virtualenv in .venv with katagate and its dev tools, refreshed when
# pyproject.toml changes.
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    python -m pip install -q --upgrade pip
    python -m pip install -q -e ".[dev]"
    touch "$stamp"
fi
