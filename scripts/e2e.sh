#!/usr/bin/env bash
# Runs the end-to-end tests against the built app in a virtual display:
# Xvfb + tauri-driver (which starts WebKitWebDriver) + node's test runner.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP="${1:-$ROOT/target/debug/finetune-app}"
[ -x "$APP" ] || { echo "e2e: $APP is not built (run make build)" >&2; exit 1; }
DRIVER="$(command -v tauri-driver || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver")"
[ -x "$DRIVER" ] || { echo "e2e: tauri-driver missing (make setup installs it)" >&2; exit 1; }

work="$(mktemp -d)"
# A tiny random model to train quickly (built with the workspace's features,
# so nothing is rebuilt).
cargo build --quiet --workspace --features finetune-app/custom-protocol --example tiny_model
"$ROOT/target/debug/examples/tiny_model" "$work/tiny" >/dev/null
export FINETUNE_TINY_MODEL="$work/tiny/tiny-llama"
port=$((20000 + RANDOM % 20000))
export FINETUNE_RUNS="$work/runs" FINETUNE_APP="$APP" E2E_OUT="$ROOT/target/e2e"
export TAURI_DRIVER_URL="http://127.0.0.1:$port"
mkdir -p "$FINETUNE_RUNS"

# A display of our own (not xvfb-run's hidden one): the test drags files
# onto the window from a second X client (scripts/e2e_drag.py), so it
# needs DISPLAY too. The screen is wider than the window, which the test
# moves right to leave the drag source's corner free.
display=""
for _ in $(seq 20); do
  n=$((100 + RANDOM % 800))
  [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ] || { display=$n; break; }
done
[ -n "$display" ] || { echo "e2e: no free X display number" >&2; exit 1; }
export DISPLAY=":$display" E2E_DRAG="$ROOT/scripts/e2e_drag.py"
# Its own process group, so everything it starts (Xvfb, WebKitWebDriver,
# the app) goes away with it.
setsid bash -c 'Xvfb "$DISPLAY" -screen 0 1600x1000x24 -nolisten tcp & x=$!
  for _ in $(seq 100); do [ -e "/tmp/.X11-unix/X${DISPLAY#:}" ] && break; sleep 0.1; done
  "$0" "$@"; kill $x' "$DRIVER" --port "$port" --native-port $((port + 1)) \
  >"$work/driver.log" 2>&1 &
group=$!
trap 'kill -- -$group 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -s "$TAURI_DRIVER_URL/status" >/dev/null 2>&1 && break
  sleep 0.1
done
node --test --test-concurrency=1 "$ROOT"/tests/e2e/*.e2e.mjs || { echo "--- tauri-driver log:" >&2; tail -50 "$work/driver.log" >&2; exit 1; }
