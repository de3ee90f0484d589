#!/usr/bin/env bash
# Install the programs the test suite runs for real, through apt-get, when they are missing.
# As root (CI, fresh machines) it installs; otherwise it says what is missing and the tests
# that need it skip (or fail under CI=true).
set -euo pipefail

# command -> Debian package
declare -A NEEDS=(
  [php]=php-cli
  [phpunit]=phpunit
  [chromium]=chromium
  [chromedriver]=chromium-driver
  [haproxy]=haproxy
  [promtool]=prometheus
  [phpcs]=php-codesniffer
)

missing=()
for cmd in "${!NEEDS[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${NEEDS[$cmd]}")
  fi
done
# php extensions the PHP tests use (sockets for the seed's exchange(), mbstring for phpunit)
if command -v php >/dev/null 2>&1; then
  php -m | grep -qi '^sockets$' || missing+=(php-cli)
  php -m | grep -qi '^mbstring$' || missing+=(php-mbstring)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "system-deps: missing ${missing[*]}; run as root (or apt-get install them) for the full suite" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" php-mbstring php-xml >/dev/null
