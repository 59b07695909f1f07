#!/usr/bin/env bash
# The whole test suite: installs missing packages, builds, and runs every
# cmocka suite through ctest three ways: plain, under ASan+UBSan, and the
# threaded suites under ThreadSanitizer.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc)
status=0

run() { # name build-dir ctest-args cmake-args...
	local name=$1 dir=$2 filter=$3
	shift 3
	echo "=== vswap tests: $name ==="
	"$top/tools/build.sh" "$dir" "$@"
	(cd "$dir" && ctest --output-on-failure -j"$jobs" $filter) || status=1
}

run plain "$top/build" ""
run "asan+ubsan" "$top/build-asan" "" -DVSWAP_SANITIZE=address
# TSan: the suites with threads of their own (label "threads").
run tsan "$top/build-tsan" "-L threads" -DVSWAP_SANITIZE=thread -DVSWAP_TOOLS=OFF
exit $status
