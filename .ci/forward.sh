#!/usr/bin/env bash
# The official OpenAI and Anthropic Python SDKs, in a virtual environment,
# for the end-to-end tests in tests/it/forward_process.rs (a chat completion
# streamed through the forward example) and tests/it/limits_sdk.rs (how the
# SDKs retry the proxy's 429s). Idempotent: does nothing when both are there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${OPENAI_SDK_VENV:-target/openai-venv}"

if "$venv/bin/python" -c 'import openai, anthropic' 2>/dev/null; then
  exit 0
fi
# Debian's python3 keeps venv in a separate package.
if ! python3 -m venv --help >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check 'openai>=1,<3' 'anthropic>=0.40,<3'
"$venv/bin/python" -c 'import openai, anthropic; print("openai SDK", openai.__version__, "anthropic SDK", anthropic.__version__, "in", "'"$venv"'")'
