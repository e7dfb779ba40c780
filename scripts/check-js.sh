#!/usr/bin/env bash
# Parse every dashboard module as the browser will (a syntax error, such as a function declared twice,
# breaks every page that imports the module). Needs Node; without it the browser tests still catch it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1; then
  echo "note: no node; the dashboard's modules are checked by the browser tests only" >&2
  exit 0
fi
status=0
for module in service/static/js/*.js; do
  node --input-type=module --check < "$module" 2>/tmp/check-js.err || { echo "$module:"; cat /tmp/check-js.err; status=1; }
done
exit $status
