#!/usr/bin/env bash
# Opens the desktop app. On a Linux machine without a display, it runs inside
# a virtual X server (Xvfb) so the app still starts; press Ctrl-C to stop.
set -euo pipefail
app="${1:?usage: run-app.sh PATH-TO-APP}"
if [ "$(uname -s)" = Linux ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "run-app: no display found; starting FineTune inside Xvfb (Ctrl-C to stop)." >&2
  exec xvfb-run -a "$app"
fi
exec "$app"
