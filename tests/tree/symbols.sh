#!/usr/bin/env bash
# ctest "symbols": the public API is exactly what the libraries export.
#   symbols.sh SOURCE_DIR [LIBVSWAP_SO LIBVSWAP_A]
# 1. The functions declared in include/vswap/*.h are exactly the names
#    vswap.map lists (a new public function that is not in the map would be
#    missing from libvswap.so; a name in the map that no header declares is
#    an internal helper exported by mistake).
# 2. Given the libraries: libvswap.so exports exactly those names, each with
#    a VSWAP_* version, and libvswap.a defines exactly those as globals
#    (every internal name local, so none can collide with a program's own).
set -euo pipefail
src=$1
so=${2:-}
ar=${3:-}
tmp=$(mktemp -d /tmp/vswap-symbols.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
compare() { # what expected-file actual-file
	if ! diff -u "$2" "$3" >"$tmp/diff"; then
		echo "symbols: $1 differ from vswap.map ('-' only in the map, '+' only in $1):"
		tail -n +3 "$tmp/diff" | grep '^[-+]' || true
		fail=1
	fi
}

# The map's names: lines "<tab><tab>vswap_name;" of its version nodes.
sed -n 's/^[[:space:]]*\(vswap_[a-z0-9_]*\);.*$/\1/p' "$src/vswap.map" | sort >"$tmp/map"
[ -s "$tmp/map" ] || { echo "symbols: no names in $src/vswap.map"; exit 1; }
if sort "$tmp/map" | uniq -d | grep -q .; then
	echo "symbols: names listed twice in vswap.map"
	fail=1
fi

# Declared functions: comments stripped (perl is in every Debian system),
# then every vswap_name( -- a function-pointer type is "(*vswap_name)(".
perl -0777 -pe 's{/\*.*?\*/}{ }gs; s{//[^\n]*}{}g' "$src"/include/vswap/*.h |
	grep -oE '\bvswap_[a-z0-9_]+[[:space:]]*\(' | grep -oE 'vswap_[a-z0-9_]+' |
	sort -u >"$tmp/headers"
compare "the functions declared in include/vswap/*.h" "$tmp/map" "$tmp/headers"

if [ -n "$so" ]; then
	nm -D --defined-only "$so" >"$tmp/so.nm"
	# "ADDR T name@@VSWAP_0.1"; the version nodes themselves are absolute.
	awk '$2 != "A" { print $3 }' "$tmp/so.nm" | sed 's/@.*//' | sort >"$tmp/so"
	compare "the symbols $so exports" "$tmp/map" "$tmp/so"
	if awk '$2 != "A" && $3 !~ /@@?VSWAP_[0-9.]+$/' "$tmp/so.nm" | grep -q .; then
		echo "symbols: $so exports names without a VSWAP_* version:"
		awk '$2 != "A" && $3 !~ /@@?VSWAP_[0-9.]+$/ { print "  " $3 }' "$tmp/so.nm"
		fail=1
	fi
fi
if [ -n "$ar" ]; then
	nm -g --defined-only "$ar" | awk 'NF == 3 { print $3 }' | sort >"$tmp/ar"
	compare "the globals $ar defines" "$tmp/map" "$tmp/ar"
fi
[ $fail = 0 ] && echo "symbols: $(wc -l <"$tmp/map") public functions; headers, map${so:+, .so}${ar:+, .a} agree"
exit $fail
