#!/usr/bin/env bash
# System packages some tests need. Installed when we can (root + apt); otherwise the
# tests that need them skip with a reason naming the package (and CI=true fails on that).
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# tests/test_provision.py: a real sshd on 127.0.0.1 is the "board"; its system Python (like a
# Raspberry Pi OS or JetPack image) provides the agent's dependencies to a --system-site-packages venv.
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
/usr/bin/python3 -c 'import ensurepip, grpc, google.protobuf, numpy' >/dev/null 2>&1 \
    || need+=(python3-venv python3-grpcio python3-protobuf python3-numpy)
# Debian keeps the server binaries out of PATH; tests/test_leases_postgres.py starts its own server.
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/tmp/edgefarm-apt.log 2>&1 \
        || { echo "apt-get failed (see /tmp/edgefarm-apt.log); tests needing ${need[*]} will skip"; exit 0; }
else
    echo "not root or no apt-get: tests needing ${need[*]} will skip (install: apt-get install ${need[*]})"
fi
