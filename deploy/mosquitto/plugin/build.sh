#!/bin/sh
# Builds diemdanh_auth.so, the mosquitto 2.0 password + lockout plugin
# (diemdanh_auth.c: passwords and callbacks; lockouts.c: the failed-login
# counters and their state file).
# Needs: gcc, mosquitto-dev + libmosquitto-dev (headers), libssl-dev.
# Usage: deploy/mosquitto/plugin/build.sh [OUTPUT.so]   (default: next to this script)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/diemdanh_auth.so}
for h in mosquitto.h mosquitto_broker.h mosquitto_plugin.h openssl/evp.h; do
	if [ ! -f "/usr/include/$h" ]; then
		echo "build.sh: /usr/include/$h missing: apt-get install mosquitto-dev libmosquitto-dev libssl-dev" >&2
		exit 1
	fi
done
${CC:-gcc} -std=gnu11 -O2 -Wall -Wextra -fPIC -shared \
	-o "$out" "$here/diemdanh_auth.c" "$here/lockouts.c" -lcrypto
