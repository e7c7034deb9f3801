#!/usr/bin/env bash
# The SDK's virtual environment under $MOAT_CACHE, for its tests and bench/sdk_bench.py: made
# once (the PyPI kubernetes client the SDK is tested with, pytest), the SDK from this tree
# installed in it (editable). Prints the environment's python on stdout, nothing else.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
venv=$MOAT_CACHE/sdk-venv
if [ ! -f "$venv/.complete" ]; then # a venv cannot be moved: made in place, marked when whole
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "kubernetes==37.0.2" "pytest==9.2.0" "setuptools>=61" >&2
    touch "$venv/.complete"
fi
# the SDK from this tree (a venv shared by two checkouts follows the last one that ran)
if [ "$("$venv/bin/python" -c 'import moat, os; print(os.path.dirname(moat.__file__))' \
    2>/dev/null || true)" != "$here/src/moat" ]; then
    "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$here" >&2 2>/dev/null ||
        "$venv/bin/pip" install -q --no-deps -e "$here" >&2
fi
echo "$venv/bin/python"
