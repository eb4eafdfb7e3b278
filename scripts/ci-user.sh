#!/usr/bin/env bash
# An unprivileged user that runs recast end to end, as an operator should:
# not root, a member of the `docker` group (the engine's socket is group
# docker, mode 660), nothing else. The test suite's non-root test runs recast
# as this user (tests/security/test_non_root.py).
#
# The user must be able to reach this machine's Python and the checkout
# recast is installed from: a folder on the way that others cannot enter
# (here /root, where pyenv keeps Python) gets o+x, enter-only, never o+r.
# Idempotent. Usage: bash scripts/ci-user.sh [NAME] (default recast-ci).
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:-recast-ci}
if [[ $(id -u) -ne 0 ]]; then
    echo "ci-user: must run as root" >&2
    exit 1
fi
getent group docker >/dev/null || groupadd --system docker
if ! id "$name" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash --user-group "$name"
    echo "ci-user: created user $name"
fi
usermod -aG docker "$name"

python=$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')
for target in "$python" "$(pwd)/recast"; do
    dir=""
    IFS=/ read -ra parts <<<"${target#/}"
    for part in "${parts[@]:0:${#parts[@]}-1}"; do  # from the top down: a folder is judged once its parent opens
        dir="$dir/$part"
        if ! runuser -u "$name" -- test -x "$dir"; then
            chmod o+x "$dir"
            echo "ci-user: $name may now enter $dir (o+x)"
        fi
    done
done
runuser -u "$name" -- python3 -c 'import recast' \
    || { echo "ci-user: $name cannot import recast with $python" >&2; exit 1; }
echo "ci-user: $name (uid $(id -u "$name"), groups: $(id -nG "$name")) runs recast with $python"
