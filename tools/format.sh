#!/usr/bin/env bash
# Format the tree's C sources with the repository's .clang-format.
#   tools/format.sh           reformat every tracked .c and .h file in place
#   tools/format.sh --check   change nothing; list the files that differ and
#                             exit 1 if any does (tests/run.sh runs this)
#   tools/format.sh [--check] FILE...   only those files
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
check=false
if [ "${1:-}" = --check ]; then
	check=true
	shift
fi
command -v clang-format >/dev/null || {
	echo "format: clang-format is not installed (Debian package clang-format)" >&2
	exit 2
}
if [ $# -gt 0 ]; then
	files=("$@")
elif git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	mapfile -t files < <(git ls-files '*.c' '*.h')
else
	mapfile -t files < <(find store handler recovery util tools tests include vm guest client vswapd proto \
		-name '*.[ch]' 2>/dev/null | sort)
fi
if ! $check; then
	clang-format -i --style=file "${files[@]}"
	exit 0
fi
bad=0
for f in "${files[@]}"; do
	if ! clang-format --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
		echo "format: $f differs from .clang-format (tools/format.sh $f fixes it)"
		bad=$((bad + 1))
	fi
done
if [ $bad -gt 0 ]; then
	echo "format: $bad of ${#files[@]} files differ"
	exit 1
fi
echo "format: ${#files[@]} files follow .clang-format"
