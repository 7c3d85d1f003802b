#!/usr/bin/env bash
# Install redis-server, memcached and postgresql from Debian when missing (dynalite is an npm dev dependency); the test setup starts its own
# instances on free loopback ports, so nothing here is started or configured.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
# Debian keeps the server binaries off PATH, in /usr/lib/postgresql/<version>/bin.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || command -v postgres >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "The store tests need ${missing[*]}; install them (Debian: apt-get install -y redis-server memcached postgresql)." >&2
  exit 1
fi
echo "Installing ${missing[*]} from Debian packages ..." >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
