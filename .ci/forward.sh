#!/usr/bin/env bash
# The official OpenAI Python SDK, in a virtual environment, for the
# end-to-end test in tests/it/forward_process.rs (it streams a chat completion through
# the forward example). Idempotent: does nothing when the SDK is there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${OPENAI_SDK_VENV:-target/openai-venv}"

if "$venv/bin/python" -c 'import openai' 2>/dev/null; then
  exit 0
fi
# Debian's python3 keeps venv in a separate package.
if ! python3 -m venv --help >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check 'openai>=1,<3'
"$venv/bin/python" -c 'import openai; print("openai SDK", openai.__version__, "in", "'"$venv"'")'
