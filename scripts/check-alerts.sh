#!/usr/bin/env bash
# Checks docs/prometheus-alerts.yaml with promtool (check rules, then the
# unit tests in docs/prometheus-alerts.test.yaml) and that
# docs/grafana-dashboard.json is valid JSON. Installs Debian's prometheus
# package (which has promtool) when promtool is missing and apt-get can.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "promtool not found: install it (e.g. sudo apt-get install -y prometheus, or a Prometheus release)" >&2
    exit 1
  fi
fi
promtool check rules docs/prometheus-alerts.yaml
(cd docs && promtool test rules prometheus-alerts.test.yaml)
if command -v python3 >/dev/null 2>&1; then
  python3 -m json.tool docs/grafana-dashboard.json >/dev/null || { echo "docs/grafana-dashboard.json is not valid JSON" >&2; exit 1; }
fi
# The metrics the rules and the dashboard name are compared with /metrics by
# TestDashboardAndAlertMetricsExist (internal/app), which scripts/test.sh runs.
