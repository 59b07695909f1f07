#!/usr/bin/env bash
# A/B comparison of vswap-bench between an older revision (A) and the
# current build (B), on the same machine in the same session:
#   tools/bench/ab.sh [--runs N] [--build DIR] [--keep] [--b-arg ARG]...
#                     REV [-- BENCH-ARGS...]
# REV is built from `git archive` in a temporary directory with the current
# build's compiler, build type and C flags (read from DIR/CMakeCache.txt;
# default DIR is build/), and removed afterwards unless --keep.  The two
# vswap-bench programs then run alternately, A B A B ..., N rounds (default
# 5), each run with --json --runs 1, so that drift of the machine (page
# cache, clocks, other load) falls on both alike.  For every figure that
# both report under the same name and unit (the same-run baselines too,
# which show how much the machine itself moved between A and B; a figure
# renamed since REV is matched by its current name), it prints the median
# of A, the median of B and B/A.
# BENCH-ARGS replace the default groups, --only store-write,store-read,
# handler,faults (store write, store read, swap-out, swap-in, fault latency),
# and are passed to both programs: use options both revisions know.  Each
# --b-arg ARG goes to B alone: against a revision from before the protect
# enable mode (which always copied), --b-arg --enable-mode=copy compares
# swap-out and swap-in like for like.
# Needs what vswap-bench needs (root for the handler and fault groups).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=5
build="$top/build"
keep=0
rev=
b_args=()

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=${2:?--runs needs a number}; shift 2 ;;
	--build) build=$(cd "${2:?--build needs a directory}" && pwd); shift 2 ;;
	--keep) keep=1; shift ;;
	--b-arg) b_args+=("${2:?--b-arg needs an argument}"); shift 2 ;;
	-h | --help) usage ;;
	--) shift; break ;;
	-*) echo "ab.sh: unknown option $1" >&2; usage ;;
	*)
		if [ -n "$rev" ]; then
			runs=$1 # the short form: ab.sh REV RUNS
		else
			rev=$1
		fi
		shift
		;;
	esac
done
[ -n "$rev" ] || usage
case $runs in '' | *[!0-9]* | 0) echo "ab.sh: --runs must be a positive number" >&2; exit 2 ;; esac
if [ $# -gt 0 ]; then
	bench_args=("$@")
else
	bench_args=(--only store-write,store-read,handler,faults)
fi

cache="$build/CMakeCache.txt"
[ -f "$cache" ] || { echo "ab.sh: $cache not found: build the current tree first (tools/build.sh build)" >&2; exit 1; }
cached() { sed -n "s/^$1:[A-Z]*=//p" "$cache" | head -n1; }
sanitize=$(cached VSWAP_SANITIZE)
[ -z "$sanitize" ] || echo "ab.sh: warning: $build is a $sanitize sanitizer build; its figures are not the library's" >&2
commit=$(git -C "$top" rev-parse --verify "$rev^{commit}") || { echo "ab.sh: $rev is not a commit" >&2; exit 1; }

tmp=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
cleanup() {
	if [ "$keep" = 1 ]; then
		echo "ab.sh: kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "ab.sh: building A = $rev (${commit:0:12}) in $tmp" >&2
mkdir -p "$tmp/src"
git -C "$top" archive --format=tar "$commit" | tar -x -C "$tmp/src"
flags=(-DCMAKE_BUILD_TYPE="$(cached CMAKE_BUILD_TYPE)" -DCMAKE_C_COMPILER="$(cached CMAKE_C_COMPILER)"
	-DCMAKE_C_FLAGS="$(cached CMAKE_C_FLAGS)" -DVSWAP_SANITIZE="$sanitize")
# Only vswap-bench is built, so the tests' option is off where REV has it
# (an older tree that does not know it ignores it).
cmake -S "$tmp/src" -B "$tmp/build" "${flags[@]}" -DVSWAP_TESTS=OFF -Wno-dev >/dev/null
cmake --build "$tmp/build" --target vswap-bench -j"$(nproc)" >"$tmp/build.log" 2>&1 ||
	{ tail -n 30 "$tmp/build.log" >&2; echo "ab.sh: building $rev failed" >&2; exit 1; }
echo "ab.sh: building B = the current tree in $build" >&2
cmake --build "$build" --target vswap-bench -j"$(nproc)" >"$tmp/build-b.log" 2>&1 ||
	{ tail -n 30 "$tmp/build-b.log" >&2; echo "ab.sh: building the current tree failed" >&2; exit 1; }

bench_a="$tmp/build/vswap-bench"
bench_b="$build/vswap-bench"

# One line per figure of a --json document: "SIDE ROUND NAME UNIT VALUE",
# the baselines named in it included (with the unit of the figure they
# stand beside).  Both revisions print each result as {"name":..,
# "value":..,"unit":..,"baseline":..,"baseline_value":..}.
# Figures renamed since (same measurement, new name): A's old names are
# reported under the current ones.
renames="fault_zero_p50_us=fault_zero_seq_p50_us fault_zero_p99_us=fault_zero_seq_p99_us
fault_staging_p50_us=fault_staging_seq_p50_us fault_staging_p99_us=fault_staging_seq_p99_us
fault_file_cached_p50_us=fault_file_cached_seq_p50_us fault_file_cached_p99_us=fault_file_cached_seq_p99_us
fault_file_p50_us=fault_file_seq_p50_us fault_file_p99_us=fault_file_seq_p99_us"
figures() { # side round json-file
	grep -o '{"name":"[^"]*","value":[^,]*,"unit":"[^"]*","baseline":[^,]*,"baseline_value":[^,}]*' "$3" |
		sed 's/{"name":"\([^"]*\)","value":\([^,]*\),"unit":"\([^"]*\)","baseline":\([^,]*\),"baseline_value":\(.*\)/\1 \2 \3 \4 \5/' |
		awk -v side="$1" -v round="$2" -v renames="$renames" '
		BEGIN {
			n = split(renames, r, /[ \n]+/)
			for (i = 1; i <= n; i++) if (split(r[i], p, "=") == 2) to[p[1]] = p[2]
		}
		function current(name) { return side == "A" && (name in to) ? to[name] : name }
		{
			print side, round, current($1), $3, $2
			if ($4 != "null") { gsub(/"/, "", $4); print side, round, current($4), $3, $5 }
		}'
}

: >"$tmp/figures"
for ((r = 1; r <= runs; r++)); do
	for side in A B; do
		cmd=("$bench_a" --json --runs 1 "${bench_args[@]}")
		[ "$side" = B ] && cmd=("$bench_b" --json --runs 1 "${bench_args[@]}" ${b_args[@]+"${b_args[@]}"})
		echo "ab.sh: round $r/$runs: $side" >&2
		if ! "${cmd[@]}" >"$tmp/out.json" 2>"$tmp/err.log"; then
			tail -n 20 "$tmp/err.log" >&2
			echo "ab.sh: vswap-bench ($side) failed in round $r" >&2
			exit 1
		fi
		figures "$side" "$r" "$tmp/out.json" >>"$tmp/figures"
	done
done

# A figure that appears more than once in one run (beside two baselines,
# or as the baseline of several) has one value there: each run counts it
# once.  Medians over the runs; a null (not measured) is left out.
awk -v runs="$runs" -v rev="$rev" -v bargs="$(printf ' %s' ${b_args[@]+"${b_args[@]}"})" '
function median(list,    n, v, i, j, t) {
	n = split(list, v, " ")
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
			t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
		}
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
$5 != "null" {
	key = $3 " " $4
	if ((($1, $2, key) in seen)) next
	seen[$1, $2, key] = 1
	vals[$1, key] = vals[$1, key] " " $5
	if (!(key in known)) { known[key] = 1; keys[++n] = key }
}
END {
	printf "A = %s, B = the current build%s: medians of %d alternating runs each\n", rev,
	       bargs != "" ? " (with" bargs ")" : "", runs
	printf "%-34s %-6s %12s %12s %7s\n", "figure", "unit", "median A", "median B", "B/A"
	for (i = 1; i <= n; i++) {
		key = keys[i]
		if (!(("A", key) in vals) || !(("B", key) in vals)) continue
		split(key, nu, " ")
		ma = median(vals["A", key]); mb = median(vals["B", key])
		printf "%-34s %-6s %12.4g %12.4g %7s\n", nu[1], nu[2], ma, mb,
		       ma + 0 != 0 ? sprintf("%.3f", mb / ma) : "-"
	}
}' "$tmp/figures"
