#!/usr/bin/env bash
# The official OpenAI, Anthropic and Google Gen AI Python SDKs, in a virtual
# environment, for the end-to-end tests in tests/it/forward_process.rs (a
# chat completion streamed through the forward example), tests/it/limits_sdk.rs
# (how the SDKs retry the proxy's 429s) and tests/it/scopes_sdk.rs (the
# SDKs' permission errors for the proxy's 403s). Idempotent: does nothing
# when all three are there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${OPENAI_SDK_VENV:-target/openai-venv}"

if "$venv/bin/python" -c 'import openai, anthropic, google.genai' 2>/dev/null; then
  exit 0
fi
# Debian's python3 keeps venv in a separate package.
if ! python3 -m venv --help >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check 'openai>=1,<3' 'anthropic>=0.40,<3' 'google-genai>=1,<3'
"$venv/bin/python" -c 'import openai, anthropic, google.genai; print("openai SDK", openai.__version__, "anthropic SDK", anthropic.__version__, "google-genai SDK", google.genai.__version__, "in", "'"$venv"'")'
