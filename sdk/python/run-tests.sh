#!/usr/bin/env bash
# The SDK's tests against the cluster in $KUBECONFIG (Moat installed): the SDK's virtual
# environment (venv.sh: under $MOAT_CACHE, made once, the SDK from this tree), then pytest;
# arguments go to pytest. ctest runs it as e2e.sdk on the local cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=$(bash "$here/venv.sh")
cd "$here"
exec "$python" -m pytest -q -p no:cacheprovider "$@" tests
