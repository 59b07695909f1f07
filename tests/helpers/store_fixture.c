/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/helpers/store_fixture.h"

/* Keep test output quiet, and keep the last message so tests can check
 * that an error names its problem. */
static void fixture_log(void *ctx, enum vswap_log_level level, const char *msg)
{
	struct store_fixture *f = ctx;
	(void)level;
	snprintf(f->last_log, sizeof(f->last_log), "%s", msg);
	if (getenv("VSWAP_TEST_VERBOSE"))
		fprintf(stderr, "vswap: %s\n", msg);
}

int fixture_init(struct store_fixture *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/var/tmp/vswap-test-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/swap", f->dir);
	f->opts.staging_dir = f->dir;
	f->opts.log_level = VSWAP_LOG_WARN;
	f->opts.log = fixture_log;
	f->opts.log_ctx = f;
	f->page_size = (uint32_t)sysconf(_SC_PAGESIZE);
	return 0;
}

void fixture_cleanup(struct store_fixture *f)
{
	DIR *d = opendir(f->dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char p[640];
			snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(f->dir);
}

void fixture_pattern(void *buf, uint32_t page_size, uint64_t page, uint32_t version)
{
	uint64_t *w = buf;
	uint64_t x = (page + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)version << 32);
	for (uint32_t i = 0; i < page_size / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x;
	}
}

int fixture_flip_bit(const char *path, uint64_t off, unsigned bit)
{
	int fd = open(path, O_RDWR);
	if (fd < 0)
		return -1;
	unsigned char c;
	int ret = -1;
	if (pread(fd, &c, 1, (off_t)off) == 1) {
		c ^= (unsigned char)(1u << bit);
		ret = pwrite(fd, &c, 1, (off_t)off) == 1 ? 0 : -1;
	}
	close(fd);
	return ret;
}
