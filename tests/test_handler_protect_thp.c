/* SPDX-License-Identifier: MIT */
/*
 * Protect mode over guest memory held in transparent huge pages (a tmpfs
 * mounted huge=always, as a VMM's memory-backend-file or a memfd under
 * shmem_enabled=always|advise gives).  Swap-out removes 4 KiB runs of a
 * 2 MiB folio; the kernel zeroes such a sub-range in place and then tries
 * to split the folio.  When the split fails (any other reference on the
 * folio at that moment: a device's pin, io_uring fixed buffers over guest
 * RAM, a backend's O_DIRECT from guest memory) fallocate() still
 * returns 0, but the pages stay in the page cache, as zeros: the guest's
 * next access takes no fault and reads zeros where its data was.  The
 * suite runs in the default mode (protect) and with copy forced (whose
 * enable removes whole extents: it passes there).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/helpers/handler_fixture.h"

#define PAGES 1024u /* two 2 MiB folios */

static char mnt[] = "/tmp/vswap-thp-XXXXXX";

/* A private tmpfs with huge=always (in this process's own mount namespace:
 * nothing of the host's mount table changes). */
static int huge_tmpfs(void)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -errno;
	if (!mkdtemp(mnt))
		return -errno;
	if (mount("tmpfs", mnt, "tmpfs", 0, "huge=always,size=16m") < 0) {
		int e = -errno;
		rmdir(mnt);
		return e;
	}
	return 0;
}

/* The fixture's memfd replaced by a file of the huge tmpfs, mapped at the
 * same address, filled by pwrite() so the page cache holds huge folios. */
static void use_huge_file(struct hfx *f)
{
	char path[64];
	snprintf(path, sizeof(path), "%s/guest", mnt);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, (off_t)PAGES * (off_t)f->page_size), 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	if ((size_t)st.st_blksize <= f->page_size) {
		close(fd);
		skip(); /* THP off for tmpfs here (shmem_enabled=deny) */
	}
	void *p = mmap(f->regions[0].addr, f->regions[0].len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED, fd, 0);
	assert_ptr_equal(p, f->regions[0].addr);
	close(f->memfd);
	f->memfd = fd;
	f->regions[0].memfd = fd;
	uint8_t *buf = malloc(f->page_size);
	assert_non_null(buf);
	for (uint64_t pg = 0; pg < PAGES; pg++) {
		memset(buf, (int)(pg % 250 + 1), f->page_size);
		assert_int_equal(pwrite(fd, buf, f->page_size, (off_t)(pg * f->page_size)),
				 (ssize_t)f->page_size);
	}
	free(buf);
}

/* A swapped-out page of a huge folio with another reference on it comes
 * back with its bytes, never zeros. */
static void swap_out_partial_huge_folio(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {PAGES};
	assert_int_equal(hfx_setup_memory(&f, pages, 1), 0);
	use_huge_file(&f);
	/* Another reference on the first folio, held throughout (as a
	 * device's pin or a backend's O_DIRECT in flight would). */
	int pp[2];
	assert_int_equal(pipe(pp), 0);
	struct iovec iov = {hfx_addr(&f, 0, 5), f.page_size};
	assert_int_equal(vmsplice(pp[1], &iov, 1, 0), (ssize_t)f.page_size);
	assert_int_equal(hfx_start(&f, NULL), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	/* One page written: the swap-out's runs now cut the folio. */
	assert_int_equal(hfx_fill(&f, 0, 100, 0xee), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 100), 0xee);
	for (uint64_t pg = 0; pg < PAGES; pg++)
		if (pg != 100)
			assert_int_equal(hfx_page_byte(&f, 0, pg), (int)(pg % 250 + 1));
	close(pp[0]);
	close(pp[1]);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* The handler refuses protect mode on memory that may hold huge folios: a
 * forced PROTECT fails, AUTO runs in copy mode. */
static void protect_refused_on_huge_memory(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {PAGES};
	assert_int_equal(hfx_setup_memory(&f, pages, 1), 0);
	use_huge_file(&f);
	const struct vswap_handler_opts forced = {.enable_mode = VSWAP_ENABLE_PROTECT};
	assert_int_equal(hfx_start(&f, &forced), -EOPNOTSUPP);
	f.h = NULL;
	const struct vswap_handler_opts automatic = {.enable_mode = VSWAP_ENABLE_AUTO};
	assert_int_equal(hfx_start(&f, &automatic), 0);
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f.h, &st), 0);
	assert_int_equal(st.enable_mode, VSWAP_ENABLE_COPY);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* A tmpfs mounted huge=advise gives huge folios where the VMM madvises
 * (which the handler cannot see; st_blksize does not say so either): a
 * forced protect is refused there too. */
static void protect_refused_on_huge_advise_mount(void **state)
{
	(void)state;
	assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT, "huge=advise"), 0);
	struct hfx f;
	const size_t pages[1] = {PAGES};
	assert_int_equal(hfx_setup_memory(&f, pages, 1), 0);
	char path[64];
	snprintf(path, sizeof(path), "%s/guest", mnt);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, (off_t)PAGES * (off_t)f.page_size), 0);
	void *p = mmap(f.regions[0].addr, f.regions[0].len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_FIXED, fd, 0);
	assert_ptr_equal(p, f.regions[0].addr);
	close(f.memfd);
	f.memfd = fd;
	f.regions[0].memfd = fd;
	const struct vswap_handler_opts forced = {.enable_mode = VSWAP_ENABLE_PROTECT};
	int rc = hfx_start(&f, &forced);
	f.h = NULL;
	assert_int_equal(hfx_teardown(&f), 0);
	assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT, "huge=always"), 0);
	assert_int_equal(rc, -EOPNOTSUPP);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_protect_thp");
	int rc = huge_tmpfs();
	if (rc < 0) {
		fprintf(stderr, "handler_protect_thp: no private huge tmpfs: %s\n", strerror(-rc));
		return 77;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(swap_out_partial_huge_folio),
	    cmocka_unit_test(protect_refused_on_huge_memory),
	    cmocka_unit_test(protect_refused_on_huge_advise_mount),
	};
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
	return rc;
}
