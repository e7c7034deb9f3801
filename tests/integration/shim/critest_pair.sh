#!/usr/bin/env bash
# The CRI conformance suite as a regression test of moat-cri's transparency: cri-tools'
# critest (built by e2e/tools/build.sh from sigs.k8s.io/cri-tools) run twice against one
# containerd of this test's own, straight to it and through moat-cri, with the same flags
# and ginkgo seed; every spec must end the same way on both sides. A relay that dropped or
# changed a field would turn some spec's outcome. Each side tries a failed spec once more
# (ginkgo's flake attempts): a spec that failed on one side by the machine's load alone
# would otherwise differ; one that a relay breaks fails both of its tries.
#
#   critest_pair.sh [HANDLER]     HANDLER: "" (the default runtime, runc) or runsc
#
# Needs MOAT_CRI (the moat-cri binary); CRITEST_LOGS=dir keeps both sides' logs and reports. Every image critest pulls is pulled from a registry
# on loopback (oci_registry.py, the locally built busybox served as the image critest
# expects, registry.k8s.io/e2e-test-images/busybox:1.29-2, through critest's
# --registry-prefix): nothing is looked up elsewhere. Specs skipped, on both sides alike:
#   - "Image Manager", "Image Consistency", "Image Identifier Consistency", "Image Volume",
#     "RemoveImage": they pull and remove other images, by digest and from several
#     registries, which only a real registry has;
#   - "Container Mount Propagation", "SupplementalGroupsPolicy": they need images or host
#     set-ups this machine lacks (a failure on both sides, minutes of timeouts each).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=../../../e2e/lib/procs.sh
. "$root/e2e/lib/procs.sh"
export MOAT_CACHE=${MOAT_CACHE:-/var/cache/moat}
handler=${1:-}
critest=${CRITEST:-$MOAT_CACHE/bin/critest}
shim_bin=${MOAT_CRI:?MOAT_CRI must name the moat-cri binary}
seed=${CRITEST_SEED:-20261206}
[ -x "$critest" ] || { echo "critest_pair: $critest missing (e2e/tools/build.sh cri-tools)" >&2; exit 1; }

skip='Image Manager|Image Consistency|Image Identifier Consistency|Image Volume|RemoveImage'
skip+='|Container Mount Propagation|SupplementalGroupsPolicy'

work=$(mktemp -d /tmp/moat-critest.XXXXXX)
# Its own bridge, pod range and wall table, apart from the e2e node's, the shim tests' and
# the benchmark's.
node_env=(MOAT_CLUSTER_DIR="$work" MOAT_BRIDGE=moat-brc MOAT_POD_CIDR=10.93.0.0/16
    MOAT_NODE_IP=10.93.0.1)
shim_pid='' registry_pid=''
cleanup() {
    [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
    if [ -n "$shim_pid" ]; then
        kill -TERM "$shim_pid" 2>/dev/null || true
        wait "$shim_pid" 2>/dev/null || true
        "$shim_bin" --config="$work/moat-cri.yaml" --remove-wall >/dev/null 2>&1 || true
    fi
    env "${node_env[@]}" bash "$root/e2e/node/node.sh" down >/dev/null 2>&1 || true
    # What critest's pods leave: bind mounts under the work directory (host-path volumes
    # of its mount tests), and the pods' cgroups (containerd's, not kubelet's).
    { findmnt -rn -o TARGET | grep -F "$work" | sort -r || true; } | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    # ... and the cgroups of its containers that containerd did not remove (under k8s.io/
    # of each controller, cgroup v1 here): those made during this run, now without a task.
    local c
    if [ -f "$work/started" ]; then
        for c in /sys/fs/cgroup/*/k8s.io/*/ /sys/fs/cgroup/k8s.io/*/; do
            if [ -d "$c" ] && [ "$c" -nt "$work/started" ] &&
                ! grep -qF "$(basename "$c")" "$work/cgroups-before"; then
                rmdir "$c" 2>/dev/null || true # still draining: the kernel's to finish
            fi
        done
    fi
    [ -z "${CRITEST_LOGS:-}" ] || { mkdir -p "$CRITEST_LOGS" && cp "$work"/*.log "$work"/*.json "$CRITEST_LOGS"/ 2>/dev/null; } || true
    rm -rf "$work"
}
trap cleanup EXIT

{ find /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/k8s.io -mindepth 1 -maxdepth 1 -type d 2>/dev/null ||
    true; } | sed 's#.*/##' | sort -u >"$work/cgroups-before"
touch "$work/started"
env "${node_env[@]}" bash "$root/e2e/node/node.sh" containerd 2>/dev/null
sock=$work/node/containerd/containerd.sock
# The image critest's containers name, as it names it: the local busybox, tagged.
"$MOAT_CACHE/bin/ctr" --address "$sock" -n k8s.io images tag --force moat.local/busybox:1.35 \
    registry.k8s.io/e2e-test-images/busybox:1.29-2 >/dev/null

# critest's --registry-prefix keeps the image's path but drops its tag (cri-tools v1.37.0's
# PrepareImageName), so the image it expects is served as :latest too.
busybox=$MOAT_CACHE/images/busybox.tar
/usr/bin/python3 "$here/oci_registry.py" "$work/registry.port" \
    "e2e-test-images/busybox:1.29-2=$busybox" "e2e-test-images/busybox:latest=$busybox" \
    2>"$work/registry.log" &
registry_pid=$!
for _ in $(seq 1 100); do [ -s "$work/registry.port" ] && break; sleep 0.05; done
[ -s "$work/registry.port" ] || { cat "$work/registry.log" >&2; exit 1; }
registry=127.0.0.1:$(cat "$work/registry.port")
# containerd speaks TLS to a registry unless its hosts.toml says otherwise.
mkdir -p "$work/node/containerd/certs.d/$registry"
cat >"$work/node/containerd/certs.d/$registry/hosts.toml" <<TOML
server = "http://$registry"
[host."http://$registry"]
  capabilities = ["pull", "resolve"]
TOML

procs_moat_cri "$shim_bin" "$work" "$sock" moat_critest

# run <side> <socket>: the suite against one endpoint; its outcome is in the report.
run() {
    local start=$SECONDS
    (cd "$work" && "$critest" --runtime-endpoint "unix://$2" --image-endpoint "unix://$2" \
        --registry-prefix "$registry" ${handler:+--runtime-handler "$handler"} \
        --ginkgo.seed="$seed" --ginkgo.skip="$skip" --ginkgo.no-color --ginkgo.flake-attempts=2 \
        --ginkgo.json-report="$work/$1.json" >"$work/$1.log" 2>&1) || true
    [ -s "$work/$1.json" ] || { tail -30 "$work/$1.log" >&2; echo "critest_pair: $1: no report" >&2; exit 1; }
    echo "critest_pair: $1 side ran in $((SECONDS - start)) s"
}
run direct "$sock"
run via-shim "$work/cri.sock"
kill -0 "$shim_pid" 2>/dev/null || { tail -20 "$work/moat-cri.log" >&2; echo "critest_pair: moat-cri died" >&2; exit 1; }

/usr/bin/python3 - "$work/direct.json" "$work/via-shim.json" "${handler:-runc}" <<'PY'
import collections, json, sys

def outcomes(path):
    specs = {}
    for suite in json.load(open(path)):
        for r in suite.get("SpecReports") or []:
            if r.get("LeafNodeType") != "It":
                continue
            name = " ".join(r.get("ContainerHierarchyTexts") or []) + " " + r["LeafNodeText"]
            specs[name] = r["State"]
    return specs

direct, via, handler = outcomes(sys.argv[1]), outcomes(sys.argv[2]), sys.argv[3]
for side, specs in (("direct", direct), ("via moat-cri", via)):
    c = collections.Counter(specs.values())
    print(f"critest ({handler}) {side}: " + ", ".join(f"{n} {s}" for s, n in sorted(c.items())))
differ = sorted(n for n in set(direct) | set(via) if direct.get(n) != via.get(n))
for n in differ:
    print(f"DIFFERS: {n}: direct {direct.get(n)}, via moat-cri {via.get(n)}")
if not any(s == "passed" for s in direct.values()):
    sys.exit("critest_pair: no spec passed straight to containerd: the set-up is broken")
sys.exit(1 if differ else 0)
PY
