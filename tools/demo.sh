#!/usr/bin/env bash
# Quick start, part one: install what is missing, build into build/, then run
# the main job with any arguments given here: vswap-vm (a KVM guest whose
# memory vswap swaps) where KVM can run it, else vswap-demo (the same cycles
# with threads standing in for the guest).  See vswap-vm --help and
# vswap-demo --help; both take --size, --cycles, --store, --keep,
# --durability and --json.
#   bash tools/demo.sh [--size 1G] [--cycles 3] [--json] ...
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$top/tools/build.sh" "$top/build"
if why=$("$top/build/vswap-vm" --check-kvm 2>&1); then
	exec "$top/build/vswap-vm" "$@"
fi
echo "tools/demo.sh: ${why:-KVM is not usable here}; running vswap-demo instead" >&2
exec "$top/build/vswap-demo" "$@"
