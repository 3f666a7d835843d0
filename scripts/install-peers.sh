#!/usr/bin/env bash
# Installs the real third-party peers the interop tests talk to, from Debian's packages.
# Services that the packages would start (sshd, prometheus) are kept from starting: the
# tests run their own instances on loopback with private configuration.
set -euo pipefail

PACKAGES=(
    golang-go
    golang-github-docker-spdystream-dev
    golang-github-hashicorp-yamux-dev
    golang-golang-x-net-dev
    golang-golang-x-crypto-dev
    nghttp2-server
    nghttp2-client
    openssh-server
    openssh-client
    curl
    prometheus
)

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-peers: run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi

echo "install-peers: installing ${missing[*]}" >&2
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
