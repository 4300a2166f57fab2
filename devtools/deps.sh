#!/usr/bin/env bash
# What `make demo`, `make test` and .ci/run need from Debian, in one place. Installs the missing
# packages when run as root where apt-get exists; otherwise prints the exact command and exits 2.
# --engine: what the tests need besides: start the Docker engine (TESTING.md: no bridge, loopback), and
# install Chromium and its driver (the site's status page is checked in a real browser).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(docker.io docker-registry skopeo git gnupg busybox-static dpkg-dev rpm createrepo-c dnf containerd systemd nginx openssh-server openssh-client iproute2 curl libisal2)
if [ "${1:-}" = "--engine" ]; then  # the tests also load the site's pages in a real browser
  PACKAGES+=(chromium chromium-driver)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "error: missing Debian packages: ${missing[*]}" >&2
    echo "hint: run as root: apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
fi

if [ "${1:-}" = "--engine" ] && ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
    echo "starting the Docker engine (log: /var/log/dockerd.log)" >&2
    dockerd --storage-driver=vfs --iptables=false --bridge=none >/var/log/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "error: dockerd did not start:" >&2; tail -20 /var/log/dockerd.log >&2; exit 1; }
  else
    echo "warning: no Docker engine answers; the tests that need one are skipped (start dockerd as root)" >&2
  fi
fi
