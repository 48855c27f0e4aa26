"""The official OpenAI and Anthropic Python SDKs against the proxy's 429s.

Usage: limits.py SDK BASE_URL KEY MODE
  SDK   openai | anthropic
  MODE  retry     two calls back to back, default retries: both must succeed
        no_retry  two calls back to back, max_retries=0: the second raises
        long      one call, default retries, on a key whose wait is minutes

Prints one JSON line per HTTP attempt the SDK made, as its own httpx client
saw it (event hooks), then one per call:
  {"kind": "attempt", "sent": <wall s>, "received": <wall s>, "status": 429,
   "retry_after_ms": "487", "should_retry": null, "marker": "rate_limited"}
  {"kind": "ok"} or
  {"kind": "error", "type": "RateLimitError", "status": 429, "message": "..."}
Run by tests/it/limits_sdk.rs, which starts the proxy and the upstream and
checks the lines.
"""

import json
import sys
import time


def emit(**fields):
    print(json.dumps(fields), flush=True)


def hooks():
    """httpx event hooks recording each attempt's send and answer."""
    pending = {}

    def on_request(request):
        pending[id(request)] = time.time()

    def on_response(response):
        sent = pending.pop(id(response.request), None)
        headers = response.headers
        emit(
            kind="attempt",
            sent=sent,
            received=time.time(),
            status=response.status_code,
            retry_after_ms=headers.get("retry-after-ms"),
            retry_after=headers.get("retry-after"),
            should_retry=headers.get("x-should-retry"),
            marker=headers.get("x-proxy-auth-error"),
        )

    return {"request": [on_request], "response": [on_response]}


def client(sdk, base_url, key, retries):
    extra = {} if retries is None else {"max_retries": retries}
    if sdk == "openai":
        import openai

        http = openai.DefaultHttpxClient(event_hooks=hooks())
        return openai, openai.OpenAI(base_url=base_url, api_key=key, timeout=30, http_client=http, **extra)
    import anthropic

    http = anthropic.DefaultHttpxClient(event_hooks=hooks())
    return anthropic, anthropic.Anthropic(base_url=base_url, api_key=key, timeout=30, http_client=http, **extra)


def call(module, sdk_client):
    try:
        sdk_client.models.list()
        emit(kind="ok")
    except module.RateLimitError as e:
        emit(kind="error", type="RateLimitError", status=e.status_code, message=str(e))
    except module.APIError as e:
        emit(kind="error", type=type(e).__name__, status=getattr(e, "status_code", None), message=str(e))


def main():
    sdk, base_url, key, mode = sys.argv[1:5]
    retries = 0 if mode == "no_retry" else None
    module, sdk_client = client(sdk, base_url, key, retries)
    for _ in range(1 if mode == "long" else 2):
        call(module, sdk_client)


if __name__ == "__main__":
    main()
