#!/usr/bin/env bash
# redis-server for tests/it/redis.rs and benches/redis.rs, which start their
# own throwaway servers (a free loopback port, a temporary directory, no
# persistence). Idempotent: does nothing when redis-server is on PATH.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  echo "redis: $(redis-server --version | cut -d' ' -f1-3) (already installed)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Only the binary: no service started on 6379 by the package's postinst
# (policy-rc.d 101 = "do not start").
policy_added=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  policy_added=1
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
[ -z "$policy_added" ] || rm -f /usr/sbin/policy-rc.d

command -v redis-server >/dev/null 2>&1 || { echo "redis: installed, but no redis-server on PATH" >&2; exit 1; }
echo "redis: installed $(redis-server --version | cut -d' ' -f1-3)"
