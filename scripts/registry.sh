#!/usr/bin/env bash
# A real image registry on loopback, for `recast images push` and its tests
# (tests/test_registry.py): Debian's docker-registry (2.8), without auth, its
# storage in DIR, listening on 127.0.0.1:PORT. Idempotent: installs the package
# when missing (as root), starts the registry unless one answers there, waits
# until it does, and prints 127.0.0.1:PORT. Its pid is in DIR/registry.pid.
#
#   bash scripts/registry.sh [PORT [DIR]]     # default 5001, /var/lib/recast-registry
#
# Docker pushes to and pulls from a loopback registry without TLS.
set -euo pipefail

port=${1:-5001}
dir=${2:-/var/lib/recast-registry}
address=127.0.0.1:$port

answers() { python3 - "$address" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://{sys.argv[1]}/v2/", timeout=2)
except Exception:
    sys.exit(1)
EOF
}

if answers; then
    echo "$address"
    exit 0
fi
if ! command -v docker-registry >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "registry.sh: docker-registry is not installed; as root: apt-get install docker-registry" >&2
        exit 1
    fi
    echo "registry.sh: installing docker-registry" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
fi
mkdir -p "$dir/storage"
cat >"$dir/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $dir/storage}
  delete: {enabled: true}
http:
  addr: $address
EOF
nohup docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
echo $! >"$dir/registry.pid"
for _ in $(seq 100); do
    if answers; then
        echo "$address"
        exit 0
    fi
    sleep 0.1
done
echo "registry.sh: the registry did not answer on $address within 10 s; see $dir/registry.log" >&2
exit 1
