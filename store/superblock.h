/* SPDX-License-Identifier: MIT */
/* The swap file's superblock (page 0); layout in docs/FORMAT.md. */
#ifndef VSWAP_STORE_SUPERBLOCK_H
#define VSWAP_STORE_SUPERBLOCK_H

#include <stdint.h>

#define VSWAP_SB_MAGIC "VSWAPSB\0"
#define VSWAP_FORMAT_VERSION 2u
/* What vswap 0.1.0 wrote: refused by name, converted by vswap-upgrade. */
#define VSWAP_FORMAT_V1 1u
#define VSWAP_SB_BYTES 56u /* encoded bytes; the rest of page 0 is zero */

struct vswap_superblock {
	uint32_t format_version;
	uint32_t page_size;
	uint8_t uuid[16];
	uint64_t created_ns;
	uint64_t flags;
};

/* Encode into @buf (>= VSWAP_SB_BYTES), checksum included. */
void superblock_encode(const struct vswap_superblock *sb, uint8_t *buf);

/*
 * Decode and verify @len bytes.  -EUCLEAN: too short, wrong magic or wrong
 * checksum; -EPROTONOSUPPORT: another version (sb->format_version says
 * which, so a caller can name format 1's conversion).  @why receives a
 * short reason for the log.
 */
int superblock_decode(const uint8_t *buf, size_t len, struct vswap_superblock *sb,
		      const char **why);

#endif
