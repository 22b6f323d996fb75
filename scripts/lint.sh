#!/usr/bin/env bash
# gofmt, go vet and staticcheck (installed into $(go env GOPATH)/bin if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l $(git ls-files '*.go'))
[[ -z "$unformatted" ]] || { echo "gofmt needed on:" $unformatted >&2; exit 1; }
go vet ./...
sc="$(go env GOPATH)/bin/staticcheck"
[[ -x "$sc" ]] || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
"$sc" ./...
