/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "store/checksum.h"
#include "store/layout.h"
#include "store/superblock.h"

/* Byte offsets of the fields; every integer is little-endian. */
enum {
	SB_OFF_MAGIC = 0,
	SB_OFF_VERSION = 8,
	SB_OFF_PAGE_SIZE = 12,
	SB_OFF_UUID = 16,
	SB_OFF_CREATED = 32,
	SB_OFF_FLAGS = 40,
	SB_OFF_CHECKSUM = 48,
};

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}
static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}
static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

void superblock_encode(const struct vswap_superblock *sb, uint8_t *buf)
{
	memset(buf, 0, VSWAP_SB_BYTES);
	memcpy(buf + SB_OFF_MAGIC, VSWAP_SB_MAGIC, 8);
	put32(buf + SB_OFF_VERSION, sb->format_version);
	put32(buf + SB_OFF_PAGE_SIZE, sb->page_size);
	memcpy(buf + SB_OFF_UUID, sb->uuid, 16);
	put64(buf + SB_OFF_CREATED, sb->created_ns);
	put64(buf + SB_OFF_FLAGS, sb->flags);
	put64(buf + SB_OFF_CHECKSUM, vswap_checksum(buf, SB_OFF_CHECKSUM));
}

int superblock_decode(const uint8_t *buf, size_t len, struct vswap_superblock *sb, const char **why)
{
	if (len < VSWAP_SB_BYTES) {
		*why = "file too short for a superblock";
		return -EUCLEAN;
	}
	if (memcmp(buf + SB_OFF_MAGIC, VSWAP_SB_MAGIC, 8) != 0) {
		*why = "bad magic: not a vswap swap file";
		return -EUCLEAN;
	}
	if (get64(buf + SB_OFF_CHECKSUM) != vswap_checksum(buf, SB_OFF_CHECKSUM)) {
		*why = "superblock checksum mismatch";
		return -EUCLEAN;
	}
	sb->format_version = get32(buf + SB_OFF_VERSION);
	sb->page_size = get32(buf + SB_OFF_PAGE_SIZE);
	memcpy(sb->uuid, buf + SB_OFF_UUID, 16);
	sb->created_ns = get64(buf + SB_OFF_CREATED);
	sb->flags = get64(buf + SB_OFF_FLAGS);
	if (sb->format_version != VSWAP_FORMAT_VERSION) {
		*why = sb->format_version == VSWAP_FORMAT_V1
			   ? "format 1 store (written by vswap 0.1.0): convert it with "
			     "vswap-upgrade"
			   : "unknown format version";
		return -EPROTONOSUPPORT;
	}
	if (sb->page_size < 512 || (sb->page_size & (sb->page_size - 1))) {
		*why = "page size is not a power of two";
		return -EUCLEAN;
	}
	*why = NULL;
	return 0;
}

int store_identify_fd(int fd, uint8_t uuid[16], const char **why)
{
	uint8_t buf[VSWAP_SB_BYTES];
	struct vswap_superblock sb;
	ssize_t k;

	do
		k = pread(fd, buf, sizeof(buf), 0);
	while (k < 0 && errno == EINTR);
	if (k < 0) {
		int err = errno;

		*why = strerror(err);
		return -err;
	}
	int ret = superblock_decode(buf, (size_t)k, &sb, why);
	if (ret == 0)
		memcpy(uuid, sb.uuid, 16);
	return ret;
}
