#!/usr/bin/env bash
# ctest "self_contained": nothing in the repository refers to a document
# outside it.  The design lives in docs/DESIGN.md, the format in
# docs/FORMAT.md; a comment that sends the reader to a file the tree does not
# hold (a design note, a tracker's issue number, a section of some other
# text) is a dead end for every later maintainer.
set -euo pipefail
top=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$top"
self=tests/tree/self_contained.sh

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	mapfile -t files < <(git ls-files --cached --others --exclude-standard | grep -vxF "$self")
else
	mapfile -t files < <(find . -path './build*' -prune -o -path ./.git -prune -o -type f -print |
		sed 's|^\./||' | grep -vxF "$self")
fi

# One extended regex per kind of dangling reference.
patterns=(
	'(^|[^/[:alnum:]_])DESIGN\.md'  # a DESIGN.md that is not docs/DESIGN.md
	'peers\.md|limits\.md|kvm\.md|vmm-swap-behaviour'
	'/work/|shared/reference'
	'§'
	'\b[Ii]ssues? #?[0-9]+'
	'\bthe reference\b'
)
bad=0
for p in "${patterns[@]}"; do
	# Binary files and files removed from the work tree are skipped.
	if out=$(for f in "${files[@]}"; do [ -f "$f" ] && printf '%s\0' "$f"; done |
		xargs -0 grep -nIE -- "$p" 2>/dev/null); then
		printf '%s\n' "$out" | sed "s#^#outside reference: #"
		bad=1
	fi
done
[ $bad = 0 ] && echo "self_contained: ${#files[@]} files, no reference outside the repository"
exit $bad
