/* SPDX-License-Identifier: MIT */
/*
 * What the library's other parts (recovery/, handler/) may know of a store's
 * files beyond include/vswap/store.h.  store/ is the one owner of these
 * facts: nothing outside it decodes a superblock, sizes an index record's
 * group or spells the staging file's name by itself (a slot's byte offset
 * is public: vswap_store_slot_offset()).  docs/FORMAT.md describes the
 * bytes.
 */
#ifndef VSWAP_STORE_LAYOUT_H
#define VSWAP_STORE_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Pages are grouped STORE_GROUP_PAGES to an index record (a page-group or a
 * staging record): one LMDB put covers 64 pages, so the index costs a few
 * puts per 2 MiB chunk instead of 512.  Group g covers pages
 * [g * STORE_GROUP_PAGES, (g + 1) * STORE_GROUP_PAGES).
 */
#define STORE_GROUP_SHIFT 6
#define STORE_GROUP_PAGES (1u << STORE_GROUP_SHIFT)

/* The staging file's name in its directory: "vswap-<uuid>.staging". */
#define STORE_STAGING_NAME_LEN (6 + 36 + 8)
void store_staging_name(const uint8_t uuid[16], char name[STORE_STAGING_NAME_LEN + 1]);

/*
 * Whether @name has the form of a staging file's name (any UUID, lower or
 * upper case hex digits); if so, the UUID as written in it goes to @uuid
 * (36 characters and a NUL) unless @uuid is NULL.
 */
bool store_staging_name_parse(const char *name, char uuid[37]);

/*
 * Whether @path is an absolute path ending in "/" and the staging file's
 * name of @uuid; *@dirlen then receives the length of its directory part
 * (without the last "/").
 */
bool store_staging_path_split(const char *path, const uint8_t uuid[16], size_t *dirlen);

/*
 * Read and verify the superblock (page 0) of the swap file open at @fd and
 * return its UUID in @uuid: 0; -EUCLEAN (too short, not a vswap swap file,
 * checksum mismatch, bad page size) or -EPROTONOSUPPORT (another format
 * version), with @why naming what is wrong; or the read's negative errno
 * (@why its strerror).  Reads only.
 */
int store_identify_fd(int fd, uint8_t uuid[16], const char **why);

#endif
