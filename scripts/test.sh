#!/usr/bin/env bash
# Runs every test against real throwaway PostgreSQL clusters and the fake
# OneSignal: formatting and vet first, then `go test -race`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n "$unformatted" ]]; then
  echo "gofmt needed on:" $unformatted >&2
  exit 1
fi
go vet ./...
go test -race -count=1 -timeout 45m "$@" ./...
