#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine; install and start one if not.
#
# Our CI machines have the docker client but no engine, and no bridge
# networking: Debian's dockerd is started with overlay2 (the vfs default copies
# a whole image per container start, ~15 s) and without iptables or a bridge
# (recast's containers run with network "none"; builds use the host network).
# Idempotent: returns at once when `docker info` already answers.
#
# Environment: RECAST_DOCKERD_LOG (default /var/log/dockerd.log),
#              RECAST_ENGINE_WAIT_S (default 60): how long to wait for the engine.
set -euo pipefail

log="${RECAST_DOCKERD_LOG:-/var/log/dockerd.log}"
wait_s="${RECAST_ENGINE_WAIT_S:-60}"

answers() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null && answers; then
    echo "engine: a Docker engine already answers"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "engine: no Docker engine answers, and starting one needs root" >&2
    exit 1
fi
if ! command -v dockerd >/dev/null; then
    echo "engine: installing docker.io"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

# A dockerd that is still starting must not get a second one beside it.
pid=$(cat /var/run/docker.pid 2>/dev/null || true)
if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    echo "engine: dockerd (pid $pid) is running; waiting for it to answer"
else
    echo "engine: starting dockerd (log: $log)"
    setsid dockerd --storage-driver=overlay2 --iptables=false --bridge=none \
        </dev/null >>"$log" 2>&1 &
fi

for ((i = 0; i < wait_s; i++)); do
    if answers; then
        echo "engine: Docker engine answers ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"
        exit 0
    fi
    sleep 1
done
echo "engine: no answer from dockerd after ${wait_s}s; last lines of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
