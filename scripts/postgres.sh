#!/usr/bin/env bash
# PostgreSQL for the request service's database tests: Debian's postgresql 15,
# installed when missing, its cluster started on loopback (listen_addresses is
# Debian's default, localhost), a login role allowed to create databases (each
# test makes its own) and one database. Idempotent: a second call only checks
# and prints. The database URL is the only thing on stdout, so that
#   export RECAST_TEST_POSTGRES_URL=$(bash scripts/postgres.sh)
# works; progress goes to stderr. Needs root (apt-get, the postgres user).
set -euo pipefail

version=15
cluster=main
role=${RECAST_POSTGRES_ROLE:-recast}
password=${RECAST_POSTGRES_PASSWORD:-recast}
database=${RECAST_POSTGRES_DB:-recast}

say() { echo "postgres: $*" >&2; }
as_postgres() { runuser -u postgres -- "$@"; }

if [ ! -x "/usr/lib/postgresql/$version/bin/postgres" ]; then
    say "installing Debian's postgresql $version"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "postgresql-$version" >&2
fi

# The package's post-install makes cluster 15/main, unless it was told not to: make it then.
if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {found=1} END {exit !found}'; then
    say "creating cluster $version/$cluster"
    pg_createcluster "$version" "$cluster" >&2
fi
port=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $3}')
status=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $4}')
if [ "$status" != "online" ]; then
    say "starting cluster $version/$cluster on 127.0.0.1:$port"
    pg_ctlcluster "$version" "$cluster" start >&2
fi
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$port" || { say "cluster $version/$cluster does not answer on port $port"; exit 1; }

sql() { as_postgres psql -p "$port" -v ON_ERROR_STOP=1 -tAqc "$1"; }
if [ "$(sql "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != 1 ]; then
    say "creating role $role"
    sql "CREATE ROLE \"$role\" LOGIN CREATEDB PASSWORD '$password'" >&2
fi
if [ "$(sql "SELECT 1 FROM pg_database WHERE datname = '$database'")" != 1 ]; then
    say "creating database $database"
    sql "CREATE DATABASE \"$database\" OWNER \"$role\"" >&2
fi
echo "postgresql+psycopg://$role:$password@127.0.0.1:$port/$database"
