#!/usr/bin/env bash
# The SDK's tests against the cluster in $KUBECONFIG (Moat installed): a virtual environment
# under $MOAT_CACHE (made once, with the PyPI kubernetes client and pytest), the SDK installed
# from this tree, then pytest. ctest runs it as e2e.sdk on the local cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
venv=$MOAT_CACHE/sdk-venv
if [ ! -f "$venv/.complete" ]; then # a venv cannot be moved: made in place, marked when whole
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q "kubernetes==37.0.2" "pytest==9.2.0" "setuptools>=61"
    touch "$venv/.complete"
fi
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$here" 2>/dev/null ||
    "$venv/bin/pip" install -q --no-deps -e "$here"
cd "$here"
exec "$venv/bin/pytest" -q -p no:cacheprovider "$@" tests
