#!/usr/bin/env bash
# Shared by the two quick-start commands: install the Debian packages vswap
# needs (only those missing), then configure and build one build tree.
#   tools/build.sh BUILD_DIR [extra cmake args...]
# VSWAP_EXTRA_PACKAGES: more Debian packages the caller needs (tests/run.sh
# asks for clang and clang-format).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:?usage: build.sh BUILD_DIR [cmake args]}
shift

need=()
# shellcheck disable=SC2086 # a list of package names
for pkg in build-essential cmake pkg-config liblmdb-dev libxxhash-dev liburing-dev libcmocka-dev \
	${VSWAP_EXTRA_PACKAGES:-}; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "vswap: installing ${need[*]}" >&2
	if [ "$(id -u)" -ne 0 ]; then
		echo "vswap: missing packages and not root; run as root or install: ${need[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cmake -S "$top" -B "$build" "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
