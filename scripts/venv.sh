# Sourced by the scripts: a virtualenv in .venv with the locked versions (pip's hash-checking
# mode) and katagate itself editable, refreshed when pyproject.toml or the lock changes.
# KATAGATE_LOCK: requirements-dev.lock (the default: the tests', emulator's, benchmark's and dev
# tools' extras too) or requirements.lock (running only: katagate and its emulator).
# docs/decisions/0004-pip-tools-lock-files.md says how the locks are made.
PYTHON="${PYTHON:-python3}"
LOCK="${KATAGATE_LOCK:-requirements-dev.lock}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=".venv/.installed-$(cat pyproject.toml "$LOCK" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    python -m pip install -q --upgrade pip
    python -m pip install -q --require-hashes -r "$LOCK"
    # Its dependencies are the lock's: an editable install cannot be hash-checked.
    python -m pip install -q --no-deps -e .
    touch "$stamp"
fi
