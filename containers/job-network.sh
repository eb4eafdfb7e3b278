#!/usr/bin/env bash
# The isolated network for jobs whose template declares `network: true`.
#
# A job never gets the host's network namespace. It gets the Docker bridge
# network "recast-jobs" (interface br-recast), labelled recast.isolated=true,
# with these rules, set here because our engine runs with --iptables=false:
#
#   - nothing from a job reaches this machine itself: not its loopback
#     (another namespace), not any of its addresses, not the bridge's gateway
#     (INPUT from br-recast is dropped);
#   - jobs do not reach each other (inter-container traffic off; FORWARD
#     from br-recast back into br-recast is dropped);
#   - link-local addresses (169.254.0.0/16: cloud metadata services) and
#     private ranges (10/8, 172.16/12, 192.168/16, 100.64/10) are dropped, so
#     a job does not reach the site's internal services; pass
#     --allow-private to let jobs reach private ranges (a collaboration's
#     internal mirrors, say);
#   - everything else is forwarded and masqueraded: the outside world.
#
# Run as root, once per engine start (containers/engine.sh does); idempotent.
# Environment: RECAST_JOB_SUBNET (default 172.31.250.0/24).
set -euo pipefail

allow_private=false
[[ ${1:-} == --allow-private ]] && allow_private=true

network=recast-jobs
bridge=br-recast
subnet="${RECAST_JOB_SUBNET:-172.31.250.0/24}"

if [[ $(id -u) -ne 0 ]]; then
    echo "job-network: must run as root (it sets firewall rules)" >&2
    exit 1
fi
for tool in docker iptables; do
    command -v "$tool" >/dev/null || { echo "job-network: $tool is not installed" >&2; exit 1; }
done

if ! docker network inspect "$network" >/dev/null 2>&1; then
    docker network create --driver bridge --subnet "$subnet" \
        --opt com.docker.network.bridge.name="$bridge" \
        --opt com.docker.network.bridge.enable_icc=false \
        --opt com.docker.network.bridge.enable_ip_masquerade=false \
        --label recast.isolated=true "$network" >/dev/null
    echo "job-network: created Docker network $network ($subnet on $bridge)"
fi
subnet=$(docker network inspect "$network" --format '{{(index .IPAM.Config 0).Subnet}}')

# One chain of ours per hook, flushed and refilled: re-running never stacks rules.
chain() {  # chain TABLE NAME HOOK MATCH...
    local table=$1 name=$2 hook=$3; shift 3
    iptables -t "$table" -N "$name" 2>/dev/null || iptables -t "$table" -F "$name"
    iptables -t "$table" -C "$hook" "$@" -j "$name" 2>/dev/null || iptables -t "$table" -I "$hook" 1 "$@" -j "$name"
}

chain filter RECAST-JOBS-IN INPUT -i "$bridge"
iptables -A RECAST-JOBS-IN -j DROP

chain filter RECAST-JOBS-FWD FORWARD -i "$bridge"
iptables -A RECAST-JOBS-FWD -o "$bridge" -j DROP
iptables -A RECAST-JOBS-FWD -d 169.254.0.0/16 -j DROP
if ! $allow_private; then
    for range in 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10; do
        iptables -A RECAST-JOBS-FWD -d "$range" -j DROP
    done
fi
iptables -A RECAST-JOBS-FWD -j ACCEPT
# Replies to what a job opened come back in.
iptables -C FORWARD -o "$bridge" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT 2>/dev/null \
    || iptables -I FORWARD 1 -o "$bridge" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT

chain nat RECAST-JOBS-NAT POSTROUTING -s "$subnet"
iptables -t nat -A RECAST-JOBS-NAT ! -o "$bridge" -j MASQUERADE

sysctl -qw net.ipv4.ip_forward=1
echo "job-network: $network ready: jobs reach the outside, not this machine, not each other$($allow_private || echo ', not private ranges')"
