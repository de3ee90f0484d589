#!/usr/bin/env bash
# Start the Python side and the PHP page; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")"
PPY=${PPY:-ppy}
"$PPY" serve app &
SERVER=$!
trap 'kill $SERVER' EXIT
echo "open http://127.0.0.1:8080/?name=Zoë&numbers=3,4,5"
php -S 127.0.0.1:8080 -t public
