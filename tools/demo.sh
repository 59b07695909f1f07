#!/usr/bin/env bash
# Quick start, part one: install what is missing, build into build/, then run
# vswap-demo with any arguments given here (see vswap-demo --help).
#   bash tools/demo.sh [--size 1G] [--cycles 3] [--json] ...
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$top/tools/build.sh" "$top/build"
exec "$top/build/vswap-demo" "$@"
