#!/usr/bin/env bash
# The benchmark of issue 5: pgsignal against the rate at which PostgreSQL's
# walsender decodes the same publication (pg_recvlogical), on a throwaway
# PostgreSQL with a fake OneSignal on loopback. Prints a table and writes
# bench-results.json (W1–W6; W6 is the cost of a SQL transform). Under 15 minutes on 2 cores; flags:
#   -scale 0.05        a quick check     -only W1,W3     a subset
#   -format markdown   the table for the README        -h   every flag
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
exec go run ./scripts/bench "$@"
