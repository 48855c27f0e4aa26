"""The official OpenAI Python SDK against the forward example.

Usage: openai_stream.py BASE_URL PROXY_KEY

Prints one JSON line per event, as the SDK hands it over:
  {"kind": "chunk", "t": <wall-clock seconds on arrival>, "content": "..."}
then the SDK's view of the proxy's 401 for a wrong key:
  {"kind": "wrong_proxy_key", "status": 401, "marker": <x-proxy-auth-error or null>, "message": "..."}
Run by tests/it/forward_process.rs, which starts the proxy and the upstream and
checks the lines; exits non-zero if the SDK raises anything unexpected.
"""

import json
import sys
import time

import openai


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main():
    base_url, proxy_key = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key=proxy_key, max_retries=0, timeout=30)
    stream = client.chat.completions.create(
        model="test-model",
        messages=[{"role": "user", "content": "stream something"}],
        stream=True,
    )
    for chunk in stream:
        content = chunk.choices[0].delta.content if chunk.choices else None
        emit(kind="chunk", t=time.time(), content=content)

    # The proxy's own 401: the SDK raises AuthenticationError, and the
    # response carries the marker.
    wrong = openai.OpenAI(base_url=base_url, api_key="sk-not-the-proxy-key", max_retries=0, timeout=30)
    try:
        wrong.models.list()
        emit(kind="wrong_proxy_key", status=200, marker=None, message="accepted")
    except openai.AuthenticationError as e:
        emit(
            kind="wrong_proxy_key",
            status=e.status_code,
            marker=e.response.headers.get("x-proxy-auth-error"),
            message=str(e),
        )


if __name__ == "__main__":
    main()
