/* SPDX-License-Identifier: MIT */
/*
 * vswap's version.  The macros say which headers a program was compiled
 * against; vswap_version() and vswap_version_number() say which library it
 * runs with (they differ when a newer libvswap.so replaces the one a program
 * was built with).  CMakeLists.txt reads its project version from this file,
 * so the two never disagree.
 *
 * The ABI rule (docs/ABI.md): from 1.0 the SOVERSION is the major version
 * and a minor release only adds; before 1.0 each minor release may change
 * the ABI, and the SOVERSION is "0.MINOR".
 */
#ifndef VSWAP_VERSION_H
#define VSWAP_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define VSWAP_VERSION_MAJOR 0
#define VSWAP_VERSION_MINOR 2
#define VSWAP_VERSION_PATCH 0
#define VSWAP_VERSION "0.2.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH, for #if comparisons. */
#define VSWAP_VERSION_NUMBER                                                                       \
	(VSWAP_VERSION_MAJOR * 10000 + VSWAP_VERSION_MINOR * 100 + VSWAP_VERSION_PATCH)

/* The library's version as "MAJOR.MINOR.PATCH". */
const char *vswap_version(void);
/* The library's VSWAP_VERSION_NUMBER. */
int vswap_version_number(void);

#ifdef __cplusplus
}
#endif

#endif /* VSWAP_VERSION_H */
