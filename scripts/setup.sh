#!/usr/bin/env bash
# Everything a fresh machine needs for the demo and the tests, idempotent:
#  1. recast and the example analysis's code, installed into this Python
#     (the host environment runs the analysis commands from here);
#  2. a Docker engine (started, or installed and started when we are root);
#  3. the isolated network for jobs that declare `network: true`
#     (containers/job-network.sh; needs root, as starting the engine does);
#  4. the local base image and the example analysis's images, with their IDs
#     recorded in catalog/wh1lbb/images.lock.json.
# Without a reachable Docker engine it still installs (1) and says so: the
# demo then runs on the host.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
echo "setup: installing recast and the example analysis into $($python -c 'import sys; print(sys.executable)')"
$python -m pip install --quiet --disable-pip-version-check -e '.[test,jax,service,slurm,kubernetes]' -e ./containers/wh1lbb

if bash containers/engine.sh; then
    if [[ $(id -u) -eq 0 ]]; then
        bash containers/job-network.sh
    else
        echo "setup: not root, so the isolated job network is left to the operator (containers/job-network.sh)" >&2
    fi
    recast images build wh1lbb
else
    echo "setup: no Docker engine here; skipping the images (the demo will run on the host)" >&2
fi
