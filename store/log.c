/* SPDX-License-Identifier: MIT */
/* Logging through the handle's logger (util/log.h), and the names of things. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store/internal.h"

void store_log(const struct vswap_store *s, enum vswap_log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	logger_vprintf(&s->log, lvl, fmt, ap);
	va_end(ap);
}

const char *vswap_durability_name(enum vswap_durability d)
{
	switch (d) {
	case VSWAP_DURABILITY_FULL:
		return "full";
	case VSWAP_DURABILITY_BATCH:
		return "batch";
	case VSWAP_DURABILITY_NONE:
		return "none";
	}
	return "unknown";
}

int vswap_durability_parse(const char *name, enum vswap_durability *out)
{
	static const enum vswap_durability all[] = {VSWAP_DURABILITY_FULL, VSWAP_DURABILITY_BATCH,
						    VSWAP_DURABILITY_NONE};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(name, vswap_durability_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return -EINVAL;
}

const char *vswap_page_state_name(enum vswap_page_state st)
{
	switch (st) {
	case VSWAP_PAGE_NONE:
		return "none";
	case VSWAP_PAGE_PRESENT:
		return "present";
	case VSWAP_PAGE_STALE:
		return "stale";
	case VSWAP_PAGE_LOST:
		return "lost";
	}
	return "unknown";
}

const char *vswap_strerror(int err)
{
	switch (-err) {
	case 0:
		return "success";
	case EUCLEAN:
		return "damaged or foreign store file (the log names it and what is wrong)";
	case EPROTONOSUPPORT:
		return "another vswap on-disk format version (format 1: convert with "
		       "vswap-upgrade)";
	case EMEDIUMTYPE:
		return "index and swap file belong to different stores (UUID mismatch)";
	case EXDEV:
		return "store page size differs from the system's";
	case EBUSY:
		return "busy: another handle holds the store, or another operation is running";
	case EBADMSG:
		return "page failed its checksum";
	case ENODATA:
		return "page has no copy in the store";
	case E2BIG:
		return "more pages than the store can address";
	default:
		return strerror(-err);
	}
}

void vswap_uuid_format(const uint8_t u[16], char *buf)
{
	snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}
