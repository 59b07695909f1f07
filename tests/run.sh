#!/usr/bin/env bash
# The whole test suite: installs missing packages, builds, and runs every
# cmocka suite through ctest three ways: plain, under ASan+UBSan, and the
# threaded suites under ThreadSanitizer.  Then it builds (without running)
# the configurations a packager meets: gcc Release, clang, and the library
# alone.  Warnings are errors in every build here (VSWAP_WERROR), and the
# sources must follow .clang-format (tools/format.sh --check).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc)
status=0
export VSWAP_EXTRA_PACKAGES="clang clang-format"

run() { # name build-dir ctest-args cmake-args...
	local name=$1 dir=$2 filter=$3
	shift 3
	echo "=== vswap tests: $name ==="
	"$top/tools/build.sh" "$dir" -DVSWAP_WERROR=ON "$@"
	# env -u: in the long mode these runs stay the CI ones; the long
	# variants run below, outside ctest's 300 s timeout.
	(cd "$dir" && env -u VSWAP_LONG ctest --output-on-failure -j"$jobs" $filter) || status=1
}

build_only() { # name build-dir cmake-args...
	local name=$1 dir=$2
	shift 2
	echo "=== vswap build: $name ==="
	"$top/tools/build.sh" "$dir" -DVSWAP_WERROR=ON "$@" || status=1
}

run plain "$top/build" ""
run "asan+ubsan" "$top/build-asan" "" -DVSWAP_SANITIZE=address
# TSan: the suites with threads of their own (label "threads"), the client
# and vswapd suites among them (vswapd is built for the tests without the tools).
run tsan "$top/build-tsan" "-L threads" -DVSWAP_SANITIZE=thread -DVSWAP_TOOLS=OFF
# gcc at -O2 finds what the default -O2 -g does not (maybe-uninitialized);
# clang warns about other things; the library alone must not need the
# tools' or the tests' dependencies.
build_only "gcc Release" "$top/build-release" -DCMAKE_BUILD_TYPE=Release
build_only "clang" "$top/build-clang" -DCMAKE_C_COMPILER=clang
build_only "library alone" "$top/build-lib" -DVSWAP_TOOLS=OFF -DVSWAP_TESTS=OFF
echo "=== vswap format: tools/format.sh --check ==="
"$top/tools/format.sh" --check || status=1

# Long mode (VSWAP_LONG=1), added to the runs above: the kill test with its
# 1,000 kills, the power-loss test's long workloads, the flips acceptance
# test with a new seed, vswapd's two kill tests with 1,000 kills each (a
# VMM process with guest threads, and a KVM guest: it skips without KVM)
# (all plain build), and
# the libFuzzer target over fsck's parsing (tests/fuzz_fsck.c; clang with
# libclang-rt) for VSWAP_FUZZ_SECONDS (default 120).  Without VSWAP_LONG
# nothing here runs.
if [ "${VSWAP_LONG:-0}" != 0 ]; then
	long() { # name command...
		echo "=== vswap tests: long: $1 ==="
		shift
		"$@" || status=1
	}
	export VSWAP_BUILD_DIR="$top/build"
	long "kill" "$top/build/test_kill"
	long "powerloss" "$top/build/test_powerloss"
	long "flips (a new seed, 5,000 random bytes a file)" "$top/build/test_flips"
	long "vswapd kill (1,000 kills)" "$top/build/test_vswapd_kill"
	long "vswapd kill under KVM (1,000 kills)" bash -c \
		'"$0"; rc=$?; [ "$rc" = 77 ] && rc=0; exit "$rc"' "$top/build/test_vm_vswapd_kill"
	fuzz=$top/build-fuzz
	mkdir -p "$fuzz/corpus"
	rm -f "$fuzz/fuzz_fsck" # never run a stale build
	long "fuzz_fsck build" clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
		-I"$top" -I"$top/include" "$top/tests/fuzz_fsck.c" "$top/tests/helpers/recovery_fixture.c" \
		"$top"/store/*.c "$top"/recovery/*.c -llmdb -lxxhash -luring -o "$fuzz/fuzz_fsck"
	[ -x "$fuzz/fuzz_fsck" ] && long "fuzz_fsck (${VSWAP_FUZZ_SECONDS:-120} s)" \
		"$fuzz/fuzz_fsck" -max_total_time="${VSWAP_FUZZ_SECONDS:-120}" -timeout=10 "$fuzz/corpus"
fi
exit $status
