#!/usr/bin/env bash
# No suite leaves a staging file behind: ctest runs "shm_mark" (touch MARK)
# before every other test and this after them all.  A vswap-<uuid>.staging
# file in DIR (the stores' default staging directory) written since the mark
# that no process has open or mapped is a store a test made and did not
# destroy.  Files of stores still in use (another process's) are left out.
# The directory is shared: on a machine where other test runs go on at the
# same time their leftovers cannot be told from this run's, so a leak fails
# the test under CI (CI set, as .ci/run's caller sets it: one run on the
# machine) and is reported as a warning otherwise.
#   shm_leaks.sh MARK [DIR]
set -euo pipefail
mark=${1:?usage: shm_leaks.sh MARK [DIR]}
dir=${2:-/dev/shm}
if [ ! -e "$mark" ]; then
	echo "shm_leaks: $mark is missing (the shm_mark test did not run)" >&2
	exit 1
fi
# Staging files some process holds: open descriptors and mappings.
held=$( {
	find /proc/[0-9]*/fd -maxdepth 1 -lname "$dir/vswap-*.staging" -printf '%l\n' 2>/dev/null || true
	cat /proc/[0-9]*/maps 2>/dev/null | grep -o "$dir/vswap-[^ ]*\.staging" || true
} | sort -u)
leaks=0
while IFS= read -r -d '' f; do
	if grep -qxF -- "$f" <<<"$held"; then
		continue
	fi
	echo "shm_leaks: $f ($(stat -c %s "$f") bytes) was left by a test: a store it made and did not destroy" >&2
	leaks=$((leaks + 1))
done < <(find "$dir" -maxdepth 1 -type f -name 'vswap-*.staging' -newer "$mark" -print0 2>/dev/null)
if [ "$leaks" -gt 0 ]; then
	echo "shm_leaks: $leaks staging file(s) left in $dir" >&2
	if [ -n "${CI:-}" ]; then
		exit 1
	fi
	echo "shm_leaks: CI is not set: reported, not failed (another run may have left them)" >&2
fi
echo "shm_leaks: no staging file left in $dir"
