"""The official OpenAI, Anthropic and Google Gen AI Python SDKs against the
proxy's 403s for keys out of their scopes.

Usage: scopes.py SDK BASE_URL KEY MODEL CALL
  SDK    openai | anthropic | google
  CALL   generate  a chat completion (streamed) / a message / generate_content
         list      the model list (a route the key may not call)

Prints one JSON line, as the SDK reported the call:
  {"kind": "ok"} or
  {"kind": "error", "type": "PermissionDeniedError", "status": 403,
   "code": "model_not_allowed", "message": "...", "marker": "model_not_allowed"}
where "code" is the error's code as the SDK exposes it (OpenAI's `code`,
Anthropic's error `type`, Google's `status`) and "marker" the response's
`x-proxy-auth-error`. Run by tests/it/scopes_sdk.rs.
"""

import json
import sys


def emit(**fields):
    print(json.dumps(fields), flush=True)


def marker(error):
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    return None if headers is None else headers.get("x-proxy-auth-error")


def openai_call(base_url, key, model, call):
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)
    try:
        if call == "list":
            client.models.list()
        else:
            stream = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], stream=True
            )
            for _ in stream:
                pass
        emit(kind="ok")
    except openai.APIStatusError as e:
        emit(kind="error", type=type(e).__name__, status=e.status_code, code=e.code,
             message=e.message, marker=marker(e))


def anthropic_call(base_url, key, model, call):
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=30)
    try:
        if call == "list":
            client.models.list()
        else:
            client.messages.create(
                model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
            )
        emit(kind="ok")
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        code = (body.get("error") or {}).get("type")
        emit(kind="error", type=type(e).__name__, status=e.status_code, code=code,
             message=e.message, marker=marker(e))


def google_call(base_url, key, model, call):
    from google import genai
    from google.genai import errors, types

    client = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=base_url, retry_options=types.HttpRetryOptions(attempts=1)),
    )
    try:
        if call == "list":
            list(client.models.list())
        else:
            client.models.generate_content(model=model, contents="hi")
        emit(kind="ok")
    except errors.APIError as e:
        emit(kind="error", type=type(e).__name__, status=e.code, code=e.status,
             message=e.message, marker=marker(e))


def main():
    sdk, base_url, key, model, call = sys.argv[1:6]
    {"openai": openai_call, "anthropic": anthropic_call, "google": google_call}[sdk](
        base_url, key, model, call
    )


if __name__ == "__main__":
    main()
