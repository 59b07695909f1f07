/* SPDX-License-Identifier: MIT */
/*
 * vswap's version.  The macros say which headers a program was compiled
 * against; vswap_version() and vswap_version_number() say which library it
 * runs with (they differ when a newer libvswap.so replaces the one a program
 * was built with).  CMakeLists.txt reads its project version from this file,
 * so the two never disagree.
 *
 * The ABI rule (docs/ABI.md): the SOVERSION is the major version; within
 * one major version functions, enum values and option fields are only
 * added (a minor version), never changed or removed.
 */
#ifndef VSWAP_VERSION_H
#define VSWAP_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define VSWAP_VERSION_MAJOR 0
#define VSWAP_VERSION_MINOR 1
#define VSWAP_VERSION_PATCH 0
#define VSWAP_VERSION "0.1.0"
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
