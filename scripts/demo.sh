#!/usr/bin/env bash
# The demo: a throwaway PostgreSQL, a fake OneSignal, pgsignal streaming
# between them. Needs Go and (installed here if missing) PostgreSQL binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
exec go run ./cmd/pgsignal demo "$@"
