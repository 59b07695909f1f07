/* SPDX-License-Identifier: MIT */
/*
 * The protect enable mode: enable write-protects guest memory in place (no
 * copy, no staging), a guest write takes its page out of the swap-out set,
 * trim and swap-out work on guest memory itself, and no write is lost while
 * guest threads write throughout enable, trim and swap-out.  Forked device
 * processes and the copy mode forced by option are covered too.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/internal.h"
#include "tests/helpers/handler_fixture.h"

/* The tests of protect mode's own behaviour pin it (the suite is not run
 * again with the copy mode forced). */
static const struct vswap_handler_opts protect = {.enable_mode = VSWAP_ENABLE_PROTECT};

static struct vswap_status status_of(struct hfx *f)
{
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f->h, &st), 0);
	return st;
}

static void enable_and_swap_out(struct hfx *f)
{
	assert_int_equal(vswap_handler_enable(f->h), 0);
	assert_int_equal(vswap_handler_swap_out(f->h), 0);
	assert_int_equal(hfx_wait(f, VSWAP_STATE_ACTIVE), 0);
}

/* The mode follows the kernel: AUTO is protect where WP on shmem exists,
 * forcing protect without it is refused, copy is always possible. */
static void mode_resolution(void **state)
{
	(void)state;
	uint64_t wp = UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	assert_int_equal(protect_resolve(VSWAP_ENABLE_AUTO, wp), VSWAP_ENABLE_PROTECT);
	assert_int_equal(protect_resolve(VSWAP_ENABLE_AUTO, 0), VSWAP_ENABLE_COPY);
	assert_int_equal(protect_resolve(VSWAP_ENABLE_COPY, wp), VSWAP_ENABLE_COPY);
	assert_int_equal(protect_resolve(VSWAP_ENABLE_PROTECT, 0), -EOPNOTSUPP);
	assert_int_equal(protect_resolve(VSWAP_ENABLE_PROTECT, wp), VSWAP_ENABLE_PROTECT);
	assert_int_equal(protect_resolve((enum vswap_enable_mode)7, wp), -EINVAL);
	/* This kernel (6.18) has it: the default handler protects. */
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, NULL), 0);
	assert_int_equal(status_of(&f).enable_mode, VSWAP_ENABLE_PROTECT);
	assert_int_equal(hfx_teardown(&f), 0);
	struct vswap_handler_opts bad = {.enable_mode = (enum vswap_enable_mode)7};
	assert_int_equal(hfx_setup(&f, pages, 1, &bad), -EINVAL);
	hfx_teardown(&f);
}

/* Forced copy: enable moves the pages to staging, as crosvm does. */
static void copy_forced(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, &hfx_copy), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 0x11), 0);
	assert_int_equal(hfx_fill(&f, 0, 2, 0x22), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.enable_mode, VSWAP_ENABLE_COPY);
	assert_int_equal(st.metrics.staging_pages, 2);
	assert_int_equal(st.metrics.protected_pages, 0);
	assert_int_equal(st.metrics.resident_pages, 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 0x11);
	assert_int_equal(status_of(&f).metrics.copied_from_staging_pages, 1);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* Enable copies nothing; reading guest memory in Pending takes no fault. */
static void enable_protects_in_place(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[2] = {8, 8};
	assert_int_equal(hfx_setup(&f, pages, 2, &protect), 0);
	for (unsigned r = 0; r < 2; r++)
		for (uint64_t p = 0; p < 6; p++)
			assert_int_equal(hfx_fill(&f, r, p, (uint8_t)(0x10 * r + p + 1)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.state, VSWAP_STATE_PENDING);
	assert_int_equal(st.transition.pages, 12);
	assert_int_equal(st.metrics.protected_pages, 12);
	assert_int_equal(st.metrics.resident_pages, 12); /* nothing moved */
	assert_int_equal(st.metrics.staging_pages, 0);
	for (unsigned r = 0; r < 2; r++)
		for (uint64_t p = 0; p < 6; p++)
			assert_int_equal(hfx_page_byte(&f, r, p), 0x10 * r + p + 1);
	st = status_of(&f);
	assert_int_equal(st.metrics.copied_from_staging_pages, 0);
	assert_int_equal(st.metrics.copied_from_file_pages, 0);
	assert_int_equal(st.metrics.zeroed_pages, 0);
	assert_int_equal(st.metrics.redundant_pages, 0);
	assert_int_equal(st.metrics.dirtied_pages, 0);
	assert_int_equal(st.metrics.protected_pages, 12);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* The page tables of this process, in KiB (VmPTE). */
static long vm_pte_kib(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPTE: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* Enable protects the resident pages, not whole regions: protecting a
 * shmem range fills a page table entry (a marker) for every page of it,
 * so a 1 GiB guest with 4 pages resident would cost 2 MiB of page tables
 * and milliseconds (a resumed guest, all of whose pages are in the store,
 * would pay it before its first instruction).  The resident pages are
 * protected all the same: a write to one is a write-protect fault. */
static void enable_protects_resident_pages_only(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {262144}; /* 1 GiB */
	assert_int_equal(hfx_setup(&f, pages, 1, &protect), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p * 65536, (uint8_t)(p + 1)), 0);
	long before = vm_pte_kib();
	assert_true(before >= 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	long grown = vm_pte_kib() - before;
	/* Whole-region protection: 262144 entries, 2048 KiB. */
	if (grown > 256)
		fail_msg("enable grew the page tables by %ld KiB", grown);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.metrics.protected_pages, 4);
	assert_int_equal(hfx_fill(&f, 0, 2 * 65536, 0x77), 0);
	st = status_of(&f);
	assert_int_equal(st.metrics.dirtied_pages, 1);
	assert_int_equal(st.metrics.protected_pages, 3);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* Put page @page of region @r in guest memory without mapping it here (as a
 * device process or a write() would): only the page cache holds it. */
static void put_unmapped(const struct hfx *f, unsigned r, uint64_t page, uint8_t v)
{
	uint8_t *buf = malloc(f->page_size);
	assert_non_null(buf);
	memset(buf, v, f->page_size);
	off_t off = f->regions[r].offset + (off_t)(page * f->page_size);
	assert_int_equal(pwrite(f->memfd, buf, f->page_size, off), (ssize_t)f->page_size);
	free(buf);
}

/* Enable finds exactly the resident pages, wherever they are held: mapped
 * in this process, only in the page cache (written through another mapping
 * or with write()), in two regions of one memfd, with holes between; with
 * data beyond the regions too (the memfd's own count then cannot vouch for
 * the holes the scan saw, and each is looked up).  Every resident page is
 * protected (a write to it is a write-protect fault) and swapped out; no
 * hole is filled. */
static void enable_finds_resident_pages(bool data_beyond)
{
	struct hfx f;
	const size_t pages[2] = {1024, 1024};
	assert_int_equal(hfx_setup(&f, pages, 2, &protect), 0);
	static const uint64_t mapped0[] = {0, 1, 2, 3, 700}, unmapped0[] = {100, 101, 512, 1023};
	static const uint64_t mapped1[] = {3}, unmapped1[] = {0, 1000};
	for (size_t i = 0; i < sizeof(mapped0) / sizeof(*mapped0); i++)
		assert_int_equal(hfx_fill(&f, 0, mapped0[i], (uint8_t)(0x10 + i)), 0);
	for (size_t i = 0; i < sizeof(unmapped0) / sizeof(*unmapped0); i++)
		put_unmapped(&f, 0, unmapped0[i], (uint8_t)(0x20 + i));
	assert_int_equal(hfx_fill(&f, 1, mapped1[0], 0x30), 0);
	for (size_t i = 0; i < sizeof(unmapped1) / sizeof(*unmapped1); i++)
		put_unmapped(&f, 1, unmapped1[i], (uint8_t)(0x40 + i));
	if (data_beyond) {
		assert_int_equal(ftruncate(f.memfd, (off_t)(2048 + 8) * (off_t)f.page_size), 0);
		uint8_t page[4096];
		memset(page, 0x5a, sizeof(page));
		assert_int_equal(pwrite(f.memfd, page, sizeof(page), 2050 * (off_t)f.page_size),
				 (ssize_t)sizeof(page));
	}
	struct stat st0;
	assert_int_equal(fstat(f.memfd, &st0), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.transition.pages, 12);
	assert_int_equal(st.metrics.protected_pages, 12);
	/* A page held only in the page cache is protected too. */
	assert_int_equal(hfx_fill(&f, 0, 101, 0x77), 0);
	assert_int_equal(hfx_fill(&f, 1, 1000, 0x78), 0);
	st = status_of(&f);
	assert_int_equal(st.metrics.dirtied_pages, 2);
	assert_int_equal(st.metrics.protected_pages, 10);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	st = status_of(&f);
	assert_int_equal(st.metrics.swap_pages, 10);
	/* No hole was read into memory: what is left is the two written
	 * pages and the data beyond the regions. */
	struct stat st1;
	assert_int_equal(fstat(f.memfd, &st1), 0);
	assert_int_equal(st1.st_blocks * 512, (data_beyond ? 3 : 2) * (off_t)f.page_size);
	for (size_t i = 0; i < sizeof(mapped0) / sizeof(*mapped0); i++)
		assert_int_equal(hfx_page_byte(&f, 0, mapped0[i]), 0x10 + i);
	for (size_t i = 0; i < sizeof(unmapped0) / sizeof(*unmapped0); i++)
		assert_int_equal(hfx_page_byte(&f, 0, unmapped0[i]), i == 1 ? 0x77 : 0x20 + i);
	assert_int_equal(hfx_page_byte(&f, 1, 3), 0x30);
	assert_int_equal(hfx_page_byte(&f, 1, 0), 0x40);
	assert_int_equal(hfx_page_byte(&f, 1, 1000), 0x78);
	assert_int_equal(hfx_page_byte(&f, 0, 50), 0); /* a hole reads as zeros */
	assert_int_equal(hfx_teardown(&f), 0);
}

static void enable_finds_resident_pages_exactly(void **state)
{
	(void)state;
	enable_finds_resident_pages(false);
}

static void enable_finds_resident_pages_data_beyond(void **state)
{
	(void)state;
	enable_finds_resident_pages(true);
}

/* A write goes through at once and keeps its page out of the swap-out; the
 * other pages leave guest memory and come back from the swap file. */
static void write_dirties_page(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {8};
	assert_int_equal(hfx_setup(&f, pages, 1, &protect), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p, (uint8_t)(p + 1)), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(hfx_fill(&f, 0, 2, 0x77), 0);
	assert_int_equal(hfx_fill(&f, 0, 2, 0x78), 0); /* un-protected: no second fault */
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.metrics.dirtied_pages, 1);
	assert_int_equal(st.metrics.protected_pages, 3);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	st = status_of(&f);
	assert_int_equal(st.transition.pages, 3);
	assert_int_equal(st.metrics.swap_pages, 3);
	assert_int_equal(st.metrics.resident_pages, 1); /* the dirtied page */
	assert_int_equal(st.metrics.protected_pages, 0);
	assert_int_equal(hfx_page_byte(&f, 0, 2), 0x78);
	assert_int_equal(status_of(&f).metrics.copied_from_file_pages, 0);
	for (uint64_t p = 0; p < 4; p++)
		if (p != 2)
			assert_int_equal(hfx_page_byte(&f, 0, p), p + 1);
	assert_int_equal(status_of(&f).metrics.copied_from_file_pages, 3);
	/* A page faulted back is not protected: writing it faults no more. */
	assert_int_equal(hfx_fill(&f, 0, 0, 0x55), 0);
	assert_int_equal(status_of(&f).metrics.dirtied_pages, 1);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 0), 0x55);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 2);
	assert_int_equal(hfx_page_byte(&f, 0, 2), 0x78);
	assert_int_equal(hfx_page_byte(&f, 0, 3), 4);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* Trim in place: zero pages and pages equal to their stale slot leave guest
 * memory without a write, after their state is committed. */
static void trim_in_place(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {8};
	assert_int_equal(hfx_setup(&f, pages, 1, &protect), 0);
	assert_int_equal(hfx_fill(&f, 0, 0, 0), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 1), 0);
	assert_int_equal(hfx_fill(&f, 0, 2, 2), 0);
	assert_int_equal(hfx_fill(&f, 0, 3, 3), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_trim(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.transition.pages, 1); /* the zero page */
	assert_int_equal(st.metrics.resident_pages, 3);
	assert_int_equal(st.metrics.protected_pages, 3);
	enable_and_swap_out(&f);
	uint64_t written = status_of(&f).metrics.bytes_written;
	/* Every page back (stale copies on disk), then page 2 changed. */
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), p);
	assert_int_equal(hfx_fill(&f, 0, 2, 0x22), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_trim(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
	st = status_of(&f);
	assert_int_equal(st.transition.pages, 3); /* 1 zero + 2 clean */
	assert_int_equal(st.metrics.swap_pages, 2);
	assert_int_equal(st.metrics.resident_pages, 1); /* page 2 */
	assert_int_equal(st.metrics.protected_pages, 1);
	assert_int_equal(st.metrics.bytes_written, written);
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, 1, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_PRESENT);
	assert_int_equal(vswap_handler_page_info(f.h, 0, &pi), 0);
	assert_int_equal(pi.state, VSWAP_PAGE_NONE);
	assert_int_equal(hfx_page_byte(&f, 0, 0), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 1);
	assert_int_equal(hfx_page_byte(&f, 0, 3), 3);
	st = status_of(&f);
	assert_int_equal(st.metrics.copied_from_file_pages, 2);
	assert_int_equal(st.metrics.zeroed_pages, 1);
	assert_int_equal(hfx_page_byte(&f, 0, 2), 0x22);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* A balloon discarding a protected page (REMOVE event) takes it out of the
 * swap-out set: it is not written, and reads back as zeros. */
static void *discard_page(void *arg)
{
	madvise(arg, (size_t)sysconf(_SC_PAGESIZE), MADV_REMOVE);
	return NULL;
}

static void remove_event_leaves_set(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {4};
	assert_int_equal(hfx_setup(&f, pages, 1, &protect), 0);
	assert_int_equal(hfx_fill(&f, 0, 0, 1), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 2), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	pthread_t t; /* the monitor must read the event: not on this thread */
	assert_int_equal(pthread_create(&t, NULL, discard_page, hfx_addr(&f, 0, 1)), 0);
	pthread_join(t, NULL);
	/* The remover resumed once its event was read; the event is handled
	 * before the monitor takes the next command. */
	assert_int_equal(vswap_handler_gc(f.h), 0);
	assert_int_equal(status_of(&f).metrics.protected_pages, 1);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.transition.pages, 1);
	assert_int_equal(st.metrics.resident_pages, 0);
	assert_int_equal(hfx_page_byte(&f, 0, 0), 1);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- a large enable, protected in pieces ---------------------------------- */

/* 128 MiB of 4 KiB pages: enable protects it in four pieces of 32 MiB,
 * taken in turn by the monitor and a worker (handler/protect.c,
 * protect_split()). */
#define SPLIT_PAGES 32768u
#define SPLIT_PIECE 8192u
#define SPLIT_PROBES 5u

static void split_setup(struct hfx *f)
{
	const size_t pages[1] = {SPLIT_PAGES};
	const struct vswap_handler_opts o = {.enable_mode = VSWAP_ENABLE_PROTECT, .workers = 2};
	assert_int_equal(hfx_setup(f, pages, 1, &o), 0);
	if (f->page_size != 4096)
		skip(); /* the pieces are counted in 4 KiB pages */
	for (uint64_t p = 0; p < SPLIT_PAGES; p++)
		memset(hfx_addr(f, 0, p), (int)hfx_byte_of(p), f->page_size);
}

/* The first page of every piece and the last page of the last one. */
static uint64_t split_probe(unsigned i)
{
	return i + 1 < SPLIT_PROBES ? (uint64_t)i * SPLIT_PIECE : SPLIT_PAGES - 1;
}

/* A write to each probe page is a write-protect fault: every piece was
 * protected, whoever protected it. */
static void split_probes_written(struct hfx *f, uint8_t v)
{
	struct vswap_status st0 = status_of(f);
	for (unsigned i = 0; i < SPLIT_PROBES; i++)
		assert_int_equal(hfx_fill(f, 0, split_probe(i), v), 0);
	struct vswap_status st = status_of(f);
	assert_int_equal(st.metrics.dirtied_pages - st0.metrics.dirtied_pages, SPLIT_PROBES);
	assert_int_equal(st.metrics.protected_pages, st0.metrics.protected_pages - SPLIT_PROBES);
}

static void enable_protects_every_piece(void **state)
{
	(void)state;
	struct hfx f;
	split_setup(&f);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(status_of(&f).metrics.protected_pages, SPLIT_PAGES);
	split_probes_written(&f, 0xee);
	assert_int_equal(hfx_page_byte(&f, 0, 1), hfx_byte_of(1));
	assert_int_equal(hfx_teardown(&f), 0);
}

/* A remove event waiting unread while enable protects: the kernel refuses
 * every protection through that uffd (EAGAIN) until the event is read,
 * which only the monitor does; a piece a worker was refused is protected
 * again on the monitor, so enable still protects everything (but the
 * removed page, which reads as zeros). */
static void remove_waits_during_split_enable(void **state)
{
	(void)state;
	struct hfx f;
	split_setup(&f);
	const uint64_t victim = SPLIT_PIECE + 7;
	assert_int_equal(vswap_handler_enable(f.h), 0);
	/* Written, so no longer protected: only the enable below protects
	 * them again, whichever piece a worker is refused. */
	split_probes_written(&f, 0xdd);
	/* Registered now: the next remove raises an event, left unread. */
	atomic_store(&f.h->m.hold_events, true);
	struct hfx_remover rm;
	assert_int_equal(hfx_remover_start(&rm, hfx_addr(&f, 0, victim), f.page_size), 0);
	assert_true(hfx_wait_for(hfx_remover_blocked, &rm));
	assert_int_equal(vswap_handler_enable(f.h), 0); /* protects again, all of it */
	atomic_store(&f.h->m.hold_events, false);
	assert_true(hfx_wait_for(hfx_remover_done, &rm));
	pthread_join(rm.t, NULL);
	assert_int_equal(rm.rc, 0);
	assert_int_equal(status_of(&f).metrics.protected_pages, SPLIT_PAGES - 1);
	split_probes_written(&f, 0xee);
	assert_int_equal(hfx_page_byte(&f, 0, victim), 0);
	assert_int_equal(hfx_page_byte(&f, 0, SPLIT_PIECE), 0xee);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- several processes ---------------------------------------------------- */

struct child_write {
	unsigned r;
	uint64_t p;
	uint8_t v;
};

static int child_writes(const struct hfx *f, void *arg)
{
	const struct child_write *c = arg;
	memset(hfx_addr(f, c->r, c->p), c->v, f->page_size);
	return 0;
}

/* Protection covers every process's page tables: a forked device's write
 * (added before or after enable) is seen and its page kept resident. */
static void forked_writers_seen(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {8};
	assert_int_equal(hfx_setup(&f, pages, 1, &protect), 0);
	for (uint64_t p = 0; p < 6; p++)
		assert_int_equal(hfx_fill(&f, 0, p, (uint8_t)(p + 1)), 0);
	struct child_write w1 = {0, 1, 0x61}, w2 = {0, 4, 0x64};
	struct hfx_child a, b;
	assert_int_equal(hfx_child_start(&f, child_writes, &w1, &a), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(hfx_child_start(&f, child_writes, &w2, &b), 0);
	assert_int_equal(hfx_child_go(&a), 0);
	assert_int_equal(hfx_child_wait(&a, 0), 0);
	assert_int_equal(hfx_child_go(&b), 0);
	assert_int_equal(hfx_child_wait(&b, 0), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.metrics.dirtied_pages, 2);
	assert_int_equal(st.metrics.protected_pages, 4);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(status_of(&f).metrics.resident_pages, 2);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 0x61);
	assert_int_equal(hfx_page_byte(&f, 0, 4), 0x64);
	for (uint64_t p = 0; p < 6; p++)
		if (p != 1 && p != 4)
			assert_int_equal(hfx_page_byte(&f, 0, p), p + 1);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- the two races of a write with swap-out ---------------------------------- */

struct racer {
	struct hfx *f;
	uint64_t page;
	int where; /* the hook call that starts the write */
	uint8_t v;
	pthread_t t;
	atomic_int tid;
	atomic_bool started, done;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	atomic_store(&r->tid, (int)syscall(SYS_gettid));
	/* One byte: the rest of the page must keep what the guest had. */
	*(volatile uint8_t *)hfx_addr(r->f, 0, r->page) = r->v;
	atomic_store(&r->done, true);
	return NULL;
}

/* On the swap-out's thread, at the hook call @r->where, without the lock:
 * start the guest write.  While the page's write is in flight or after its
 * end (before the commit), the write goes through (the monitor serves its
 * write-protect fault meanwhile) before the hook returns.  After the commit,
 * the monitor leaves the fault's message unread until the removals the
 * commit allows are done: the writer blocked before the removal, its
 * message is read after it. */
static void racer_hook(void *ctx, int where)
{
	struct racer *r = ctx;
	if (where != r->where || atomic_load(&r->started))
		return;
	atomic_store(&r->started, true);
	struct vswap_handler *h = r->f->h;
	bool hold = where == SWAP_OUT_HOOK_COMMITTED;
	if (hold)
		atomic_store(&h->m.hold_events, true);
	if (pthread_create(&r->t, NULL, racer_main, r)) {
		atomic_store(&h->m.hold_events, false);
		return;
	}
	uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
	for (;;) {
		int tid = atomic_load(&r->tid);
		if (atomic_load(&r->done) || hfx_now_ms() > until)
			break;
		if (hold && tid && hfx_in_userfault(0, tid))
			break;
		if (where == SWAP_OUT_HOOK_REMOVING && atomic_load(&h->wp.removal_waits))
			break;
		sched_yield();
	}
	if (hold) {
		protect_remove_start(h, true);
		protect_remove_wait(h);
		atomic_store(&h->m.hold_events, false);
	}
}

static void race(int where)
{
	struct hfx f;
	const size_t pages[1] = {8};
	struct vswap_handler_opts o = {.chunk_pages = 8, .enable_mode = VSWAP_ENABLE_PROTECT};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	for (uint64_t p = 0; p < 8; p++)
		assert_int_equal(hfx_fill(&f, 0, p, (uint8_t)(p + 1)), 0);
	struct racer r = {.f = &f, .page = 3, .where = where, .v = 0x99};
	atomic_init(&r.tid, 0);
	atomic_init(&r.started, false);
	atomic_init(&r.done, false);
	f.h->swap_out_hook_ctx = &r;
	f.h->swap_out_hook = racer_hook;
	enable_and_swap_out(&f);
	uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
	while (!atomic_load(&r.done) && hfx_now_ms() < until)
		sched_yield();
	assert_true(atomic_load(&r.started));
	assert_true(atomic_load(&r.done));
	pthread_join(r.t, NULL);
	f.h->swap_out_hook = NULL;
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.metrics.swap_pages, 7);
	struct vswap_page_info pi;
	assert_int_equal(vswap_handler_page_info(f.h, 3, &pi), 0);
	if (where == SWAP_OUT_HOOK_IN_FLIGHT) {
		/* Its write cancelled: it never had a copy in the store. */
		assert_int_equal(pi.state, VSWAP_PAGE_NONE);
	} else {
		/* Its slot keeps the old bytes as a stale copy: never
		 * present. */
		assert_int_equal(pi.state, VSWAP_PAGE_STALE);
	}
	if (where == SWAP_OUT_HOOK_REMOVING)
		assert_int_equal(atomic_load(&f.h->wp.removal_waits), 1);
	if (where != SWAP_OUT_HOOK_COMMITTED && where != SWAP_OUT_HOOK_REMOVING) {
		/* Let through before the commit: never removed. */
		assert_int_equal(st.metrics.dirtied_pages, 1);
		assert_int_equal(st.metrics.copied_from_file_pages, 0);
	} else {
		/* Removed while the write waited: it faulted the committed
		 * copy back and wrote on it. */
		assert_int_equal(st.metrics.dirtied_pages, 0);
		assert_int_equal(st.metrics.copied_from_file_pages, 1);
	}
	assert_int_equal(st.metrics.resident_pages, 1);
	uint8_t got[2];
	assert_int_equal(hfx_read(got, hfx_addr(&f, 0, 3), 2, 0, NULL), 0);
	assert_int_equal(got[0], 0x99);
	assert_int_equal(got[1], 4);
	for (uint64_t p = 0; p < 8; p++)
		if (p != 3)
			assert_int_equal(hfx_page_byte(&f, 0, p), p + 1);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	const uint8_t *pg = hfx_addr(&f, 0, 3);
	assert_int_equal(pg[0], 0x99);
	for (size_t i = 1; i < f.page_size; i++)
		if (pg[i] != 4)
			fail_msg("byte %zu of the written page is %#x, not 4", i, pg[i]);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* Race (a): a write let through after the page's swap-out write and
 * before its commit. */
static void write_between_write_and_commit(void **state)
{
	(void)state;
	race(SWAP_OUT_HOOK_WRITTEN);
}

/* Race (c): a write let through while the page's swap-out write is in
 * flight: the page's write is cancelled, its new slot given back. */
static void write_while_written(void **state)
{
	(void)state;
	race(SWAP_OUT_HOOK_IN_FLIGHT);
}

/* Race (b): a write that blocked before the page's removal and whose fault
 * message is read after it. */
static void write_blocked_across_removal(void **state)
{
	(void)state;
	race(SWAP_OUT_HOOK_COMMITTED);
}

/* A write to a page while the pool punches it out of guest memory (the
 * punch runs without the bitmap's lock): its fault waits for the punch,
 * then the writer refaults the committed copy and writes on it. */
static void write_during_removal(void **state)
{
	(void)state;
	race(SWAP_OUT_HOOK_REMOVING);
}

/* ---- removals across holes ------------------------------------------------ */

/* A 64-page region, one batch and one worker (one removal task, one piece
 * unless cut): every fourth page written (a byte of its own), the others
 * holes. */
static void setup_scattered(struct hfx *f)
{
	const size_t pages[1] = {64};
	struct vswap_handler_opts o = {
	    .chunk_pages = 64, .workers = 1, .enable_mode = VSWAP_ENABLE_PROTECT};
	assert_int_equal(hfx_setup(f, pages, 1, &o), 0);
	for (uint64_t p = 0; p < 64; p += 4)
		assert_int_equal(hfx_fill(f, 0, p, hfx_byte_of(p)), 0);
}

static void check_scattered(struct hfx *f, uint64_t written, uint8_t v)
{
	for (uint64_t p = 0; p < 64; p++)
		assert_int_equal(hfx_page_byte(f, 0, p), p == written ? v
							 : p % 4      ? 0
								      : hfx_byte_of(p));
}

/* Scattered swapped-out pages leave guest memory in one punch across the
 * holes between them, not one per page; a page between them that holds
 * data (written after enable: resident, not protected) cuts the punch and
 * keeps its bytes. */
static void removal_spans_holes(void **state)
{
	(void)state;
	struct hfx f;
	setup_scattered(&f);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(hfx_fill(&f, 0, 30, 0x77), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.metrics.swap_pages, 16);
	assert_int_equal(st.metrics.resident_pages, 1);
	/* [0, 28] and [32, 60]: page 30 stays. */
	assert_int_equal(atomic_load(&f.h->wp.punches), 2);
	check_scattered(&f, 30, 0x77);
	assert_int_equal(hfx_teardown(&f), 0);
}

struct filler {
	struct hfx *f;
	uint64_t page;
	int where; /* the swap-out hook call that starts the write */
	pthread_t t;
	atomic_bool started, done, in_fill, removing;
};

static void *filler_main(void *arg)
{
	struct filler *w = arg;
	memset(hfx_addr(w->f, 0, w->page), 0x77, w->f->page_size);
	atomic_store(&w->done, true);
	return NULL;
}

static bool filler_done(void *arg)
{
	return atomic_load(&((struct filler *)arg)->done);
}

static void filler_start(struct filler *w)
{
	atomic_store(&w->started, true);
	assert_int_equal(pthread_create(&w->t, NULL, filler_main, w), 0);
}

/*
 * The hooks of both fill races.  At SWAP_OUT_HOOK_PIECE (before the marks)
 * or SWAP_OUT_HOOK_REMOVING (marks set, the holes looked up, not yet
 * punched): start the write to the hole.  At SWAP_OUT_HOOK_REMOVING the
 * removal goes on only once the write is done or its fill waits for the
 * marks: a fill that got in between the look-up and the punch would be
 * punched away, and the write with it.
 */
static void filler_hook(void *ctx, int where)
{
	struct filler *w = ctx;
	struct vswap_handler *h = w->f->h;
	if (where == w->where && !atomic_load(&w->started)) {
		filler_start(w);
		if (where == SWAP_OUT_HOOK_PIECE) { /* the fill has begun */
			uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
			while (!atomic_load(&w->in_fill) && hfx_now_ms() < until)
				sched_yield();
		}
	}
	if (where == SWAP_OUT_HOOK_REMOVING && atomic_load(&w->started)) {
		atomic_store(&w->removing, true);
		uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
		while (!atomic_load(&w->done) && !atomic_load(&h->wp.fill_waits) &&
		       hfx_now_ms() < until)
			sched_yield();
	}
}

/* On the monitor, lock held, the fill counted and not yet copied: hold it
 * until the removal that marked its hole waits for it (or, were it not
 * waited for, until the removal is past its look-up). */
static void fill_held(void *ctx, uint64_t page)
{
	struct filler *w = ctx;
	struct vswap_handler *h = w->f->h;
	if (page != w->page || atomic_load(&w->in_fill))
		return;
	atomic_store(&w->in_fill, true);
	uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
	while (!atomic_load(&h->wp.drain_waits) && !atomic_load(&w->removing) &&
	       hfx_now_ms() < until)
		sched_yield();
}

static void fill_race(int where)
{
	struct hfx f;
	setup_scattered(&f);
	struct filler w = {.f = &f, .page = 2, .where = where};
	atomic_init(&w.started, false);
	atomic_init(&w.done, false);
	atomic_init(&w.in_fill, false);
	atomic_init(&w.removing, false);
	f.h->swap_out_hook_ctx = &w;
	f.h->swap_out_hook = filler_hook;
	if (where == SWAP_OUT_HOOK_PIECE) {
		f.h->wp.fill_hook_ctx = &w;
		f.h->wp.fill_hook = fill_held;
	}
	enable_and_swap_out(&f);
	assert_true(hfx_wait_for(filler_done, &w));
	pthread_join(w.t, NULL);
	f.h->swap_out_hook = NULL;
	f.h->wp.fill_hook = NULL;
	struct vswap_status st = status_of(&f);
	/* The write landed (a punch across the filled page would have taken
	 * it: read back as zeros). */
	check_scattered(&f, 2, 0x77);
	assert_int_equal(st.metrics.swap_pages, 16);
	assert_int_equal(st.metrics.zeroed_pages, 1);
	assert_int_equal(st.metrics.resident_pages, 1);
	if (where == SWAP_OUT_HOOK_REMOVING) {
		/* Filled after the punch: the removal ran across it. */
		assert_int_equal(atomic_load(&f.h->wp.fill_waits), 1);
		assert_int_equal(atomic_load(&f.h->wp.punches), 1);
	} else {
		/* Filled before the look-up: the punch is cut around it. */
		assert_int_equal(atomic_load(&f.h->wp.drain_waits), 1);
		assert_int_equal(atomic_load(&f.h->wp.punches), 2);
	}
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	check_scattered(&f, 2, 0x77);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* A hole between two removed pages is faulted in while their punch runs
 * across it: the fill waits for the punch, and the write lands. */
static void fill_during_removal(void **state)
{
	(void)state;
	fill_race(SWAP_OUT_HOOK_REMOVING);
}

/* The same hole's fill began before the removal marked its piece: the
 * removal waits for the copy before it looks at the holes, so it sees the
 * page and punches around it. */
static void fill_before_removal(void **state)
{
	(void)state;
	fill_race(SWAP_OUT_HOOK_PIECE);
}

struct trim_reader {
	struct hfx *f;
	int byte; /* what a fault outside the piece read, meanwhile */
	unsigned calls;
};

/* Trim's removal, marks set, without the lock: a fault elsewhere (which
 * needs h->lock) is served meanwhile. */
static void trim_reader_hook(void *ctx, int where)
{
	struct trim_reader *t = ctx;
	if (where != SWAP_OUT_HOOK_REMOVING || t->calls++)
		return;
	t->byte = hfx_page_byte(t->f, 0, 12);
}

/* Trim punches the pages it dropped without h->lock: faults are served
 * while it punches. */
static void trim_removal_unlocked(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {16};
	assert_int_equal(hfx_setup(&f, pages, 1, &protect), 0);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_fill(&f, 0, p, 0), 0);
	assert_int_equal(hfx_fill(&f, 0, 4, 0x44), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct trim_reader t = {.f = &f, .byte = -1};
	f.h->swap_out_hook_ctx = &t;
	f.h->swap_out_hook = trim_reader_hook;
	assert_int_equal(vswap_handler_trim(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
	f.h->swap_out_hook = NULL;
	assert_int_equal(t.calls, 1);
	assert_int_equal(t.byte, 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.transition.pages, 4);
	assert_int_equal(st.metrics.resident_pages, 2); /* page 4, and page 12 read */
	assert_int_equal(atomic_load(&f.h->wp.punches), 1);
	for (uint64_t p = 0; p < 4; p++)
		assert_int_equal(hfx_page_byte(&f, 0, p), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 4), 0x44);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- detach ---------------------------------------------------------------- */

struct detacher {
	struct vswap_handler *h;
	pthread_t t;
	unsigned chunks;
	atomic_bool started;
	int rc;
};

static void *detacher_main(void *arg)
{
	struct detacher *d = arg;
	d->rc = vswap_handler_detach(d->h);
	return NULL;
}

/* On the monitor, after the third chunk's write: a detach is asked for
 * (queued; the monitor takes it between two chunks). */
static void detach_hook(void *ctx, int where)
{
	struct detacher *d = ctx;
	if (where != SWAP_OUT_HOOK_WRITTEN || ++d->chunks != 3)
		return;
	if (pthread_create(&d->t, NULL, detacher_main, d) == 0)
		atomic_store(&d->started, true);
}

/*
 * Detach in the middle of a protect-mode swap-out, a chunk of 4 pages at a
 * time: wherever it is cut, every page the guest wrote is exactly in one
 * place with its bytes: still in guest memory, or present in the store
 * (verified) and gone from guest memory; never neither.
 */
static void detach_during_swap_out(void **state)
{
	(void)state;
	struct hfx f;
	enum { N = 64 };
	const size_t pages[1] = {N};
	struct vswap_handler_opts o = {.chunk_pages = 4, .enable_mode = VSWAP_ENABLE_PROTECT};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	for (uint64_t p = 0; p < N; p++)
		memset(hfx_addr(&f, 0, p), (int)(0x40 + p), f.page_size);
	struct detacher d = {.h = f.h};
	atomic_init(&d.started, false);
	f.h->swap_out_hook_ctx = &d;
	f.h->swap_out_hook = detach_hook;
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	/* The detach frees the handler; until it is asked, wait for it. */
	uint64_t until = hfx_now_ms() + HFX_DEADLINE_MS;
	while (!atomic_load(&d.started) && hfx_now_ms() < until)
		sched_yield();
	assert_true(atomic_load(&d.started));
	pthread_join(d.t, NULL);
	assert_int_equal(d.rc, 0);
	f.h = NULL;
	uint8_t *buf = aligned_alloc(f.page_size, f.page_size);
	assert_non_null(buf);
	unsigned in_memory = 0, in_store = 0;
	for (uint64_t p = 0; p < N; p++) {
		off_t off = (off_t)(p * f.page_size);
		bool resident = lseek(f.memfd, off, SEEK_DATA) == off;
		struct vswap_page_info pi;
		assert_int_equal(vswap_store_page(f.store, p, &pi), 0);
		if (resident) {
			/* pread: reading a hole through the mapping would fill it */
			assert_int_equal(pread(f.memfd, buf, f.page_size, off),
					 (ssize_t)f.page_size);
			in_memory++;
		} else {
			if (pi.state != VSWAP_PAGE_PRESENT)
				fail_msg("page %llu rests nowhere", (unsigned long long)p);
			assert_int_equal(vswap_store_read_page(f.store, p, buf), 0);
			in_store++;
		}
		for (size_t i = 0; i < f.page_size; i++)
			if (buf[i] != (uint8_t)(0x40 + p))
				fail_msg("page %llu byte %zu: %#x", (unsigned long long)p, i,
					 buf[i]);
	}
	free(buf);
	print_message("detach cut the swap-out at %u in memory, %u in the store\n", in_memory,
		      in_store);
	assert_true(in_store >= 12); /* the three chunks before the detach */
	struct vswap_store_stats ss;
	assert_int_equal(vswap_store_stats(f.store, &ss), 0);
	assert_int_equal(ss.pages_staged, 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- writers throughout ----------------------------------------------------- */

#define WRITERS 3
#define WRITER_PAGES 32
#define STATIC_PAGES 32 /* written once, trimmed clean after the first round */
#define ZERO_PAGES 16	/* zeros written: trimmed as zero */
#define CYCLES 6

struct writer {
	struct hfx *f;
	uint64_t first; /* its pages: [first, first + WRITER_PAGES) of region 0 */
	uint64_t last[WRITER_PAGES];
	atomic_bool *stop;
	uint64_t writes;
};

static void page_set(uint8_t *page, size_t ps, uint64_t v)
{
	uint64_t *w = (uint64_t *)page;
	for (size_t i = 0; i < ps / sizeof(*w); i++)
		w[i] = v;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t v = 0;
	while (!atomic_load(w->stop)) {
		for (unsigned i = 0; i < WRITER_PAGES; i++) {
			v++;
			uint64_t tagged = (w->first + i) << 40 | v;
			page_set(hfx_addr(w->f, 0, w->first + i), w->f->page_size, tagged);
			w->last[i] = tagged;
			w->writes++;
		}
	}
	return NULL;
}

/* Guest threads write their pages without pause while the handler enables,
 * trims and swaps out, round after round: every page ends with the last
 * value written to it, whole, and the untouched pages are intact. */
static void writers_throughout(void **state)
{
	(void)state;
	struct hfx f;
	/* The last page is this thread's own. */
	const size_t total = WRITERS * WRITER_PAGES + STATIC_PAGES + ZERO_PAGES;
	const size_t pages[1] = {total + 1};
	struct vswap_handler_opts o = {
	    .chunk_pages = 8, .trim_batch_pages = 16, .enable_mode = VSWAP_ENABLE_PROTECT};
	assert_int_equal(hfx_setup(&f, pages, 1, &o), 0);
	const uint64_t stat0 = WRITERS * WRITER_PAGES, zero0 = stat0 + STATIC_PAGES;
	for (uint64_t p = stat0; p < zero0; p++)
		page_set(hfx_addr(&f, 0, p), f.page_size, 0x5a5a000000000000ULL | p);
	for (uint64_t p = zero0; p < total; p++)
		page_set(hfx_addr(&f, 0, p), f.page_size, 0);
	atomic_bool stop = false;
	struct writer w[WRITERS];
	pthread_t t[WRITERS];
	for (unsigned i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){.f = &f, .first = i * WRITER_PAGES, .stop = &stop};
		assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	uint64_t dirtied = 0, from_file = 0;
	for (unsigned c = 0; c < CYCLES; c++) {
		assert_int_equal(vswap_handler_enable(f.h), 0);
		/* A write of this thread's own, so each round has one. */
		page_set(hfx_addr(&f, 0, total), f.page_size, c + 1);
		dirtied += status_of(&f).metrics.dirtied_pages;
		assert_int_equal(vswap_handler_trim(f.h), 0);
		assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
		assert_int_equal(vswap_handler_swap_out(f.h), 0);
		assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
		struct vswap_status st = status_of(&f);
		from_file += st.metrics.copied_from_file_pages;
		assert_int_equal(st.metrics.staging_pages, 0);
	}
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	atomic_store(&stop, true);
	uint64_t writes = 0;
	for (unsigned i = 0; i < WRITERS; i++) {
		pthread_join(t[i], NULL);
		writes += w[i].writes;
	}
	print_message("%llu writes, %llu pages dirtied, %llu faulted back from the file\n",
		      (unsigned long long)writes, (unsigned long long)dirtied,
		      (unsigned long long)from_file);
	assert_true(dirtied >= CYCLES);
	uint64_t lost = 0;
	for (unsigned i = 0; i < WRITERS; i++)
		for (unsigned k = 0; k < WRITER_PAGES; k++) {
			const uint64_t *pw = (const uint64_t *)hfx_addr(&f, 0, w[i].first + k);
			for (size_t j = 0; j < f.page_size / 8; j++)
				if (pw[j] != w[i].last[k]) {
					lost++;
					break;
				}
		}
	for (uint64_t p = stat0; p < total; p++) {
		const uint64_t *pw = (const uint64_t *)hfx_addr(&f, 0, p);
		uint64_t want = p < zero0 ? 0x5a5a000000000000ULL | p : 0;
		for (size_t j = 0; j < f.page_size / 8; j++)
			if (pw[j] != want) {
				lost++;
				break;
			}
	}
	const uint64_t *mine = (const uint64_t *)hfx_addr(&f, 0, total);
	assert_int_equal(mine[0], CYCLES);
	assert_int_equal(lost, 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	hfx_skip_if_unavailable("handler_protect");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(mode_resolution),
	    cmocka_unit_test(copy_forced),
	    cmocka_unit_test(enable_protects_in_place),
	    cmocka_unit_test(enable_protects_resident_pages_only),
	    cmocka_unit_test(enable_finds_resident_pages_exactly),
	    cmocka_unit_test(enable_finds_resident_pages_data_beyond),
	    cmocka_unit_test(write_dirties_page),
	    cmocka_unit_test(trim_in_place),
	    cmocka_unit_test(remove_event_leaves_set),
	    cmocka_unit_test(enable_protects_every_piece),
	    cmocka_unit_test(remove_waits_during_split_enable),
	    cmocka_unit_test(forked_writers_seen),
	    cmocka_unit_test(write_between_write_and_commit),
	    cmocka_unit_test(write_blocked_across_removal),
	    cmocka_unit_test(write_during_removal),
	    cmocka_unit_test(write_while_written),
	    cmocka_unit_test(removal_spans_holes),
	    cmocka_unit_test(fill_during_removal),
	    cmocka_unit_test(fill_before_removal),
	    cmocka_unit_test(trim_removal_unlocked),
	    cmocka_unit_test(detach_during_swap_out),
	    cmocka_unit_test(writers_throughout),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
