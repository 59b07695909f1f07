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

for f in include/vswap/store.h include/vswap/handler.h include/vswap/recovery.h; do
	[ -f "$prefix/$f" ] || die "missing $f"
done
pc=$(find "$prefix" -name vswap.pc -print -quit)
[ -n "$pc" ] || die "missing vswap.pc"
libdir=$(dirname "$(dirname "$pc")")
[ -f "$libdir/libvswap.a" ] || die "missing libvswap.a in $libdir"
[ -e "$libdir/libvswap.so" ] || die "missing libvswap.so in $libdir"
[ -f "$libdir/cmake/vswap/vswapConfig.cmake" ] || die "missing vswapConfig.cmake"
# Captured first: with pipefail, "cmd | grep -q" fails when grep exits early.
syms=$(nm -D --defined-only "$libdir/libvswap.so")
grep -q ' T vswap_store_create$' <<<"$syms" || die "libvswap.so does not export vswap_store_create"
if grep -v ' vswap_' <<<"$syms" | grep -q ' T '; then
	die "libvswap.so exports symbols outside the vswap_ namespace"
fi
for t in "$build"/vswap-*; do
	[ -x "$t" ] && [ -f "$t" ] || continue
	[ -x "$prefix/bin/$(basename "$t")" ] || die "tool $(basename "$t") not installed"
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

step "find_package(vswap), shared and static"
cmake -S "$here" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
	-DCMAKE_C_FLAGS="-Wall -Wextra -Werror ${flags[*]}" -DCMAKE_EXE_LINKER_FLAGS="${flags[*]}" \
	>/dev/null
cmake --build "$tmp/cm" >/dev/null
"$tmp/cm/consumer_shared"
deps=$(ldd "$tmp/cm/consumer_shared")
grep -qF "$libdir/libvswap.so" <<<"$deps" ||
	die "find_package shared consumer did not load the installed libvswap.so"
"$tmp/cm/consumer_static"
step "ok"
