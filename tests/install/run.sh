#!/usr/bin/env bash
# ctest "install": install the build tree into a temporary prefix, check the
# files a packager expects, then build and run a tiny consumer against the
# installed copy both ways (pkg-config and find_package), shared and static.
#   run.sh BUILD_DIR C_COMPILER [SANITIZE]
set -euo pipefail
build=$1
cc=$2
san=${3:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d /tmp/vswap-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

step() { echo "install test: $*"; }
die() { echo "install test: FAIL: $*" >&2; exit 1; }

step "cmake --install into $prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
version=$(sed -n 's/^#define VSWAP_VERSION "\(.*\)"$/\1/p' "$prefix/include/vswap/version.h")
[ -n "$version" ] || die "no VSWAP_VERSION in the installed version.h"

for f in include/vswap/store.h include/vswap/handler.h include/vswap/recovery.h include/vswap/version.h \
	share/doc/vswap/LICENSE share/doc/vswap/NEWS; do
	[ -f "$prefix/$f" ] || die "missing $f"
done
pc=$(find "$prefix" -name vswap.pc -print -quit)
[ -n "$pc" ] || die "missing vswap.pc"
libdir=$(dirname "$(dirname "$pc")")
[ -f "$libdir/libvswap.a" ] || die "missing libvswap.a in $libdir"
[ -e "$libdir/libvswap.so" ] || die "missing libvswap.so in $libdir"
[ -f "$libdir/cmake/vswap/vswapConfig.cmake" ] || die "missing vswapConfig.cmake"
# Exactly the public API, in both libraries (tests/tree/symbols.sh).
bash "$here/../tree/symbols.sh" "$here/../.." "$(readlink -f "$libdir/libvswap.so")" "$libdir/libvswap.a" ||
	die "the installed libraries do not export exactly the public API"
for t in "$build"/vswap-*; do
	[ -x "$t" ] && [ -f "$t" ] || continue
	name=$(basename "$t")
	[ -x "$prefix/bin/$name" ] || die "tool $name not installed"
	# An installed tool runs from the prefix: it finds the libvswap.so
	# installed beside it, whose version it reports.
	v=$(env -u LD_LIBRARY_PATH "$prefix/bin/$name" --version) || die "$name --version failed"
	[ "$v" = "$name $version" ] || die "$name --version says '$v', not '$name $version'"
	# An ordinary program: the library is not linked into it.
	if nm --defined-only "$prefix/bin/$name" 2>/dev/null | grep -q ' T vswap_store_open$'; then
		die "$name carries its own copy of the library"
	fi
	loaded=$(env -u LD_LIBRARY_PATH ldd "$prefix/bin/$name" | awk '/libvswap/ { print $3 }')
	[ -n "$loaded" ] && [ "$(readlink -f "$loaded")" = "$(readlink -f "$libdir/libvswap.so")" ] ||
		die "$name does not load the installed libvswap.so (it loads '$loaded')"
done
if [ -x "$build/vswapd" ]; then
	[ -x "$prefix/bin/vswapd" ] || die "vswapd not installed"
	for u in vswapd.service vswapd.socket; do
		[ -f "$prefix/lib/systemd/system/$u" ] || die "missing systemd unit $u"
	done
	grep -qx "ExecStart=$prefix/bin/vswapd --socket /run/vswapd.sock" \
		"$prefix/lib/systemd/system/vswapd.service" || die "vswapd.service does not run the installed vswapd"
	[ -f "$prefix/include/vswap/client.h" ] || die "missing include/vswap/client.h"
fi
for m in "$here"/../../docs/*.[1-8]; do
	[ -f "$m" ] || continue
	sec=${m##*.}
	[ -f "$prefix/share/man/man$sec/$(basename "$m")" ] || die "man page $(basename "$m") not installed"
done

flags=()
if [ "$san" = address ]; then
	flags=(-fsanitize=address,undefined)
elif [ "$san" = thread ]; then
	flags=(-fsanitize=thread)
fi

export PKG_CONFIG_PATH=$libdir/pkgconfig
step "pkg-config, shared"
# shellcheck disable=SC2046 # word splitting of pkg-config output is wanted
"$cc" -std=gnu11 -Wall -Wextra -Werror "${flags[@]}" "$here/consumer.c" -o "$tmp/pc_shared" \
	$(pkg-config --cflags --libs vswap)
LD_LIBRARY_PATH=$libdir "$tmp/pc_shared"
deps=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/pc_shared")
grep -qF "$libdir/libvswap.so" <<<"$deps" ||
	die "pkg-config shared consumer did not load the installed libvswap.so"

step "pkg-config, static"
# -l:libvswap.a: the archive even though libvswap.so sits beside it.
# shellcheck disable=SC2046
"$cc" -std=gnu11 -Wall -Wextra -Werror "${flags[@]}" "$here/consumer.c" -o "$tmp/pc_static" \
	$(pkg-config --cflags vswap) $(pkg-config --static --libs vswap | sed 's/-lvswap\b/-l:libvswap.a/')
"$tmp/pc_static"
deps=$(ldd "$tmp/pc_static")
if grep -q libvswap <<<"$deps"; then
	die "static consumer depends on libvswap.so"
fi

step "static, beside a program that defines the library's internal names"
# Every name the library's files share among themselves (now_ms, bit_set,
# index_open, ...), taken from the build, defined again by the program: a
# collision is a link error.  Names the C library also defines are left out
# (the program must not replace those).
libc=$("$cc" -print-file-name=libc.so.6)
nm -D --defined-only "$libc" | awk '{ sub(/@.*/, "", $3); print $3 }' | sort -u >"$tmp/libc.names"
nm -g --defined-only "$build/libvswap-all.o" | awk 'NF == 3 && $3 !~ /^vswap_/ { print $3 }' |
	sort -u | comm -23 - "$tmp/libc.names" >"$tmp/internal.names"
[ "$(wc -l <"$tmp/internal.names")" -gt 50 ] || die "too few internal names found in the build"
grep -qx now_ms "$tmp/internal.names" || die "now_ms is not among the library's internal names"
{
	echo "/* generated by tests/install/run.sh */"
	sed 's/.*/int &(void);\nint &(void) { return 0; }/' "$tmp/internal.names"
} >"$tmp/collide.c"
# shellcheck disable=SC2046
"$cc" -std=gnu11 "${flags[@]}" "$here/consumer.c" "$tmp/collide.c" -o "$tmp/collide_static" \
	$(pkg-config --cflags vswap) $(pkg-config --static --libs vswap | sed 's/-lvswap\b/-l:libvswap.a/') ||
	die "a program defining the library's internal names does not link with libvswap.a"
"$tmp/collide_static"

step "find_package(vswap), shared and static"
cmake -S "$here" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DVSWAP_WANT_VERSION="$version" \
	-DCMAKE_C_FLAGS="-Wall -Wextra -Werror ${flags[*]}" -DCMAKE_EXE_LINKER_FLAGS="${flags[*]}" \
	>/dev/null
cmake --build "$tmp/cm" >/dev/null
"$tmp/cm/consumer_shared"
deps=$(ldd "$tmp/cm/consumer_shared")
grep -qF "$libdir/libvswap.so" <<<"$deps" ||
	die "find_package shared consumer did not load the installed libvswap.so"
"$tmp/cm/consumer_static"
step "ok"
