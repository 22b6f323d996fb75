#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (initdb, postgres) are on this machine;
# installs Debian's postgresql-15 when none are found. The tests and the demo
# start their own throwaway clusters: no cluster is created or started here.
set -euo pipefail

have_pg() {
  if [[ -n "${PGSIGNAL_PG_BIN:-}" && -x "$PGSIGNAL_PG_BIN/postgres" ]]; then return 0; fi
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
}

if have_pg; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "PostgreSQL server binaries not found; install them (e.g. sudo apt-get install -y postgresql-15) or set PGSIGNAL_PG_BIN" >&2
  exit 1
fi
echo "installing postgresql-15 (server binaries only, no cluster)..." >&2
mkdir -p /etc/postgresql-common
if ! grep -qs '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf; then
  echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql-15 >/dev/null
have_pg
