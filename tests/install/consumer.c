/* SPDX-License-Identifier: MIT */
/*
 * A tiny program built against an installed vswap, once through pkg-config
 * and once through find_package(vswap), shared and static: every public
 * header must compile on its own and the library must link and work.
 */
#include <vswap/handler.h>
#include <vswap/recovery.h>
#include <vswap/store.h>
#include <vswap/version.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what, int err)
{
	fprintf(stderr, "consumer: %s: %s\n", what, vswap_strerror(err));
	return 1;
}

int main(void)
{
	char dir[] = "/tmp/vswap-consumer.XXXXXX", path[64];
	struct vswap_store_opts o = {.durability = VSWAP_DURABILITY_BATCH};
	struct vswap_store *s;
	uint64_t pages = 16;
	long ps = sysconf(_SC_PAGESIZE);
	char *page = malloc((size_t)ps * 2);
	enum vswap_durability d;
	int err, rc = 1;

	if (!page || !mkdtemp(dir))
		return 1;
	/* The library it runs with is the one whose headers it was built with. */
	if (strcmp(vswap_version(), VSWAP_VERSION) ||
	    vswap_version_number() != VSWAP_VERSION_NUMBER) {
		fprintf(stderr, "consumer: library %s, headers %s\n", vswap_version(),
			VSWAP_VERSION);
		return 1;
	}
	/* The staging file goes beside the store, not into /dev/shm. */
	o.staging_dir = dir;
	snprintf(path, sizeof(path), "%s/swap", dir);
	err = vswap_durability_parse("batch", &d);
	if (err || strcmp(vswap_durability_name(d), "batch"))
		goto out;
	if ((err = vswap_store_create(path, &o, &s)))
		return fail("create", err);
	memset(page, 0xa5, (size_t)ps);
	if ((err = vswap_store_set_regions(s, &pages, 1)) ||
	    (err = vswap_store_write(s, 3, 1, page)) || (err = vswap_store_commit(s)) ||
	    (err = vswap_store_read_page(s, 3, page + ps))) {
		vswap_store_close(s);
		vswap_store_destroy(path, &o);
		return fail("store round trip", err);
	}
	rc = memcmp(page, page + ps, (size_t)ps) != 0;
	if ((err = vswap_store_close(s)))
		rc = fail("close", err);
	if ((err = vswap_store_destroy(path, &o)))
		rc = fail("destroy", err);
out:
	rmdir(dir);
	free(page);
	if (!rc)
		printf("consumer: ok (store round trip through the installed library)\n");
	return rc;
}
