/* SPDX-License-Identifier: MIT */
/* Test fixture: a store in a fresh temporary directory. */
#ifndef VSWAP_TESTS_STORE_FIXTURE_H
#define VSWAP_TESTS_STORE_FIXTURE_H

#include <stdint.h>
#include <vswap/store.h>

struct store_fixture {
	char dir[256];
	char path[320];
	struct vswap_store_opts opts;
	uint32_t page_size;
	char last_log[512]; /* the last message the store logged */
};

/* mkdtemp under /var/tmp; the store path is DIR/swap, staging in DIR. */
int fixture_init(struct store_fixture *f);
/* Remove every file in the directory, then the directory. */
void fixture_cleanup(struct store_fixture *f);
/* Fill @buf (one page) with bytes derived from @page and @version. */
void fixture_pattern(void *buf, uint32_t page_size, uint64_t page, uint32_t version);
/* Flip bit @bit of the byte at @off of @path. */
int fixture_flip_bit(const char *path, uint64_t off, unsigned bit);

#endif
