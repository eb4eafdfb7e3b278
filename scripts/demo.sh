#!/usr/bin/env bash
# The main job: reinterpret the example analysis on its example request, in
# Docker when an engine answers and the images are built, otherwise on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

environment=host
if timeout 10 docker info >/dev/null 2>&1 && [[ -f catalog/wh1lbb/images.lock.json ]]; then
    environment=docker
else
    echo "demo: no Docker engine (or no built images): running each job on the host instead" >&2
fi
recast run wh1lbb --example default --environment "$environment" --cores 2 --workdir runs/wh1lbb/default
echo "demo: plot in runs/wh1lbb/default/steps/gather/limits.png; provenance in runs/wh1lbb/default/provenance.json"
