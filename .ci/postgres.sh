#!/usr/bin/env bash
# PostgreSQL server binaries for tests/it/postgres.rs and benches/postgres.rs,
# which start their own throwaway servers (initdb + pg_ctl on a free
# loopback port, as the `postgres` user when run as root). Idempotent:
# does nothing when /usr/lib/postgresql/<version>/bin/initdb is there.
set -euo pipefail

have() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && id postgres >/dev/null 2>&1; }

if have; then
  echo "postgresql: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')(already installed)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# The tests need only the binaries: no default cluster, and no service
# started on 5432 by the package's postinst (policy-rc.d 101 = "do not start").
mkdir -p /etc/postgresql-common
[ -e /etc/postgresql-common/createcluster.conf ] ||
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
policy_added=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  policy_added=1
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
[ -z "$policy_added" ] || rm -f /usr/sbin/policy-rc.d

have || { echo "postgresql: installed, but no initdb under /usr/lib/postgresql/*/bin" >&2; exit 1; }
echo "postgresql: installed $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
