#!/usr/bin/env bash
# System packages some tests need. Installed when we can (root + apt); otherwise the
# tests that need them skip with a reason naming the package (and CI=true fails on that).
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/tmp/edgefarm-apt.log 2>&1 \
        || { echo "apt-get failed (see /tmp/edgefarm-apt.log); tests needing ${need[*]} will skip"; exit 0; }
else
    echo "not root or no apt-get: tests needing ${need[*]} will skip (install: apt-get install ${need[*]})"
fi
