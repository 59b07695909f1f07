/* SPDX-License-Identifier: MIT */
/*
 * The page handler's scenarios (the behaviour of crosvm's vmm-swap page
 * handler), through the public commands.  Every guest access runs on another thread under a
 * time limit (tests/helpers/handler_fixture.h), so a missing wake fails.
 * Regions are 3 pages unless a test says otherwise; "r1p1" is region 1's
 * page 1 (regions counted from 1).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "handler/internal.h"
#include "tests/helpers/handler_fixture.h"

static const size_t three[2] = {3, 3};

/* The six pages of two 3-page regions, each page's repeated byte. */
static void expect_six(struct hfx *f, const int want[6])
{
	for (unsigned i = 0; i < 6; i++) {
		int got = hfx_page_byte(f, i / 3, i % 3);
		if (got != want[i])
			fail_msg("r%up%u: got %d, want %d", i / 3 + 1, i % 3, got, want[i]);
	}
}

static struct vswap_status status_of(struct hfx *f)
{
	struct vswap_status st;
	assert_int_equal(vswap_handler_status(f->h, &st), 0);
	return st;
}

/* ---- create ------------------------------------------------------------ */

static void create_rejects_bad_regions(void **state)
{
	(void)state;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	uint8_t *base = (uint8_t *)(64ul << 20);
	struct vswap_region a = {base, 4 * ps, 3, 0};
	struct vswap_region pair[2];
	struct {
		size_t off, len;
		int want;
		const char *what;
	} cases[] = {
	    {4 * ps, 4 * ps, 0, "adjacent"},	{0, 4 * ps, -EEXIST, "identical"},
	    {-2 * ps, 4 * ps, -EEXIST, "left"}, {ps, 2 * ps, -EEXIST, "inside"},
	    {2 * ps, 4 * ps, -EEXIST, "right"}, {-ps, 6 * ps, -EEXIST, "covering"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pair[0] = a;
		pair[1] = (struct vswap_region){base + cases[i].off, cases[i].len, 3, 0};
		int rc = regions_validate(pair, 2, ps);
		if (rc != cases[i].want)
			fail_msg("%s: %d, want %d", cases[i].what, rc, cases[i].want);
	}
	struct vswap_region wrap = {(void *)(UINTPTR_MAX - ps + 1), 2 * ps, 3, 0};
	assert_int_equal(regions_validate(&wrap, 1, ps), -EOVERFLOW);
	struct vswap_region empty = {base, 0, 3, 0};
	assert_int_equal(regions_validate(&empty, 1, ps), -ERANGE);
	struct vswap_region unaligned = {base + 1, ps, 3, 0};
	assert_int_equal(regions_validate(&unaligned, 1, ps), -EINVAL);
	assert_int_equal(regions_validate(&a, 0, ps), -EINVAL);
	/* The public entry point says the same before touching anything. */
	struct vswap_handler *h = NULL;
	struct vswap_handler_opts o = {0};
	pair[1] = a;
	assert_int_equal(vswap_handler_create(pair, 2, &o, &h), -EEXIST);
	assert_null(h);
}

static void create_adjacent_regions_in_one_mapping(void **state)
{
	(void)state;
	struct hfx f;
	const size_t pages[1] = {6};
	assert_int_equal(hfx_setup_memory(&f, pages, 1), 0);
	/* Split the one mapping into two adjacent regions. */
	f.regions[1] = f.regions[0];
	f.regions[0].len = f.regions[1].len = 3 * f.page_size;
	f.regions[1].addr = (uint8_t *)f.regions[0].addr + 3 * f.page_size;
	f.regions[1].offset = 3 * (off_t)f.page_size;
	f.n = 2;
	f.first[1] = 3;
	assert_int_equal(hfx_start(&f, NULL), 0);
	assert_int_equal(hfx_fill(&f, 1, 0, 7), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	int want[6] = {0, 0, 0, 7, 0, 0};
	expect_six(&f, want);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- faults ------------------------------------------------------------ */

static void fault_zero_fill_edges(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, NULL), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	uint8_t *base = f.regions[0].addr;
	size_t len = f.regions[0].len;
	uint8_t b = 0xff;
	assert_int_equal(hfx_read(&b, base, 1, 0, NULL), 0);
	assert_int_equal(b, 0);
	b = 0xff;
	assert_int_equal(hfx_read(&b, base + f.page_size + 1, 1, 0, NULL), 0);
	assert_int_equal(b, 0);
	b = 0xff;
	assert_int_equal(hfx_read(&b, base + len - 1, 1, 0, NULL), 0);
	assert_int_equal(b, 0);
	/* Second access to a page already filled: no fault, no block. */
	assert_int_equal(hfx_read(&b, base + 5, 1, 0, NULL), 0);
	/* One byte outside either side is no region's. */
	assert_null(region_of_addr(f.h, (uintptr_t)base - 1));
	assert_null(region_of_addr(f.h, (uintptr_t)base + len));
	assert_non_null(region_of_addr(f.h, (uintptr_t)base + len - 1));
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.metrics.zeroed_pages, 3);
	assert_int_equal(hfx_teardown(&f), 0);
}

struct blocked_reader {
	const uint8_t *addr;
	uint8_t byte;
	atomic_int tid;
};

static void *blocked_read(void *arg)
{
	struct blocked_reader *r = arg;
	atomic_store(&r->tid, (int)gettid());
	r->byte = *(const volatile uint8_t *)r->addr;
	return NULL;
}

static int child_reads_zero(const struct hfx *f, void *arg)
{
	(void)arg;
	return *(const volatile uint8_t *)hfx_addr(f, 0, 1) == 0 ? 0 : 1;
}

static void fault_same_page_twice_is_redundant(void **state)
{
	(void)state;
	struct hfx f;
	struct hfx_child c;
	assert_int_equal(hfx_setup(&f, three, 2, NULL), 0);
	assert_int_equal(hfx_child_start(&f, child_reads_zero, NULL, &c), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	/* Two processes fault on one page.  Hold the handler's lock until
	 * both wait, so both faults are queued (one per uffd): one is filled,
	 * the other finds the page there, is woken and counted redundant. */
	pthread_mutex_lock(&f.h->lock);
	struct blocked_reader r = {.addr = hfx_addr(&f, 0, 1)};
	atomic_init(&r.tid, 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, blocked_read, &r), 0);
	assert_int_equal(hfx_child_go(&c), 0);
	while (!atomic_load(&r.tid) || !hfx_in_userfault(0, atomic_load(&r.tid)) ||
	       !hfx_in_userfault(c.pid, c.pid))
		sched_yield();
	pthread_mutex_unlock(&f.h->lock);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += HFX_TIMEOUT_MS / 1000;
	assert_int_equal(pthread_timedjoin_np(t, NULL, &until), 0);
	assert_int_equal(r.byte, 0);
	assert_int_equal(hfx_child_wait(&c, 0), 0);
	struct vswap_status st = status_of(&f);
	char js[1024];
	vswap_status_to_json(&st, js, sizeof(js));
	if (st.metrics.zeroed_pages != 1 || st.metrics.redundant_pages != 1)
		fail_msg("one zero-fill and one redundant fault expected: %s", js);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- remove ------------------------------------------------------------ */

static void remove_events(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, NULL), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	uint8_t *p0 = hfx_addr(&f, 0, 0);
	assert_int_equal(hfx_page_byte(&f, 0, 0), 0); /* zero-filled */
	assert_int_equal(hfx_fill(&f, 0, 0, 1), 0);
	/* The balloon's remove: the monitor must read the event or this
	 * madvise() would never return. */
	assert_int_equal(madvise(p0, f.page_size, MADV_REMOVE), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 0), 0);

	/* A staged page and a swapped page are dropped by a remove. */
	assert_int_equal(hfx_fill(&f, 0, 1, 2), 0);
	assert_int_equal(hfx_fill(&f, 1, 1, 3), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(status_of(&f).metrics.swap_pages, 3); /* p0 was zero-filled: data */
	assert_int_equal(madvise(hfx_addr(&f, 0, 1), f.page_size, MADV_REMOVE), 0);
	/* madvise() returns once the event is read; the fault that follows
	 * is served after the event is handled. */
	assert_int_equal(hfx_page_byte(&f, 0, 1), 0);
	assert_int_equal(status_of(&f).metrics.swap_pages, 2);
	assert_int_equal(hfx_page_byte(&f, 1, 1), 3);

	/* Alignment is checked; a whole region is fine. */
	uintptr_t s = (uintptr_t)f.regions[1].addr, e = s + f.regions[1].len;
	assert_int_equal(remove_range(f.h, s + 1, e), -EINVAL);
	assert_int_equal(remove_range(f.h, s, e - 1), -EINVAL);
	assert_int_equal(remove_range(f.h, s, e), 3);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- move to staging ----------------------------------------------------- */

static void move_two_regions_one_memfd(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, &hfx_copy), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 1), 0);
	assert_int_equal(hfx_fill(&f, 1, 1, 2), 0);
	assert_int_equal(hfx_fill(&f, 1, 2, 3), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.state, VSWAP_STATE_PENDING);
	assert_int_equal(st.transition.pages, 3);
	assert_int_equal(st.metrics.staging_pages, 3);
	assert_int_equal(st.metrics.resident_pages, 0);
	int want[6] = {0, 1, 0, 0, 2, 3};
	expect_six(&f, want);
	st = status_of(&f);
	assert_int_equal(st.metrics.copied_from_staging_pages, 3);
	assert_int_equal(st.metrics.zeroed_pages, 3);
	assert_int_equal(st.metrics.staging_pages, 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* Fill [off, off+len) of region @r with a byte per page: page index + 1. */
static void fill_run(struct hfx *f, unsigned r, size_t off, size_t len, uint8_t *shadow)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(((off + i) / f->page_size) % 251 + 1);
	assert_int_equal(hfx_write(hfx_addr(f, r, 0) + off, buf, len, 0), 0);
	memcpy(shadow + off, buf, len);
	free(buf);
}

static void move_hugepage_layout(void **state)
{
	(void)state;
	struct hfx f;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), mib = 1u << 20;
	const size_t pages[2] = {10 * mib / ps, 10 * mib / ps};
	assert_int_equal(hfx_setup(&f, pages, 2, &hfx_copy), 0);
	size_t len = 10 * mib;
	uint8_t *shadow[2] = {calloc(1, len), calloc(1, len)};
	assert_non_null(shadow[0]);
	assert_non_null(shadow[1]);
	fill_run(&f, 0, ps, 2 * ps, shadow[0]);			    /* pages 1-2 */
	fill_run(&f, 0, 2 * mib - ps, 2 * ps, shadow[0]);	    /* straddling 2 MiB */
	fill_run(&f, 0, 4 * mib + ps, 2 * mib, shadow[0]);	    /* unaligned 2 MiB */
	fill_run(&f, 1, 2 * mib, 2 * mib, shadow[1]);		    /* aligned 2 MiB */
	fill_run(&f, 1, 4 * mib + ps, 6 * mib - 2 * ps, shadow[1]); /* long, unaligned */
	assert_int_equal(vswap_handler_enable(f.h), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.metrics.resident_pages, 0);
	assert_int_equal(st.transition.pages, (2 + 2 + 512 + 512 + 1536 - 2));
	uint8_t *got = malloc(len);
	assert_non_null(got);
	for (unsigned r = 0; r < 2; r++) {
		assert_int_equal(hfx_read(got, hfx_addr(&f, r, 0), len, 0, NULL), 0);
		assert_memory_equal(got, shadow[r], len);
	}
	free(got);
	free(shadow[0]);
	free(shadow[1]);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- swap out ---------------------------------------------------------- */

static const struct vswap_handler_opts one_mib_chunks = {.chunk_pages = 256};
/* For the tests of the copy mode's own behaviour (staging, faults after enable). */
static const struct vswap_handler_opts one_mib_copy = {.chunk_pages = 256,
						       .enable_mode = VSWAP_ENABLE_COPY};

static void swap_out_and_fault_back(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, &one_mib_chunks), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 1), 0);
	assert_int_equal(hfx_fill(&f, 1, 1, 2), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.transition.pages, 2);
	assert_int_equal(st.metrics.swap_pages, 2);
	assert_int_equal(st.metrics.staging_pages, 0);
	int want[6] = {0, 1, 0, 0, 2, 0};
	expect_six(&f, want);
	st = status_of(&f);
	assert_int_equal(st.metrics.copied_from_file_pages, 2);
	assert_int_equal(st.metrics.swap_pages, 0);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void swap_out_keeps_page_faulted_before(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, &one_mib_copy), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 1), 0);
	assert_int_equal(hfx_fill(&f, 1, 1, 2), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 1);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(status_of(&f).transition.pages, 1);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 1);
	assert_int_equal(hfx_teardown(&f), 0);
}

static void swap_out_twice_with_writes_between(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, &one_mib_chunks), 0);
	assert_int_equal(hfx_fill(&f, 0, 0, 1), 0);
	assert_int_equal(hfx_fill(&f, 0, 2, 2), 0);
	assert_int_equal(hfx_fill(&f, 1, 0, 3), 0);
	assert_int_equal(hfx_fill(&f, 1, 2, 4), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	for (unsigned p = 0; p < 3; p++) /* fault region 1 in */
		assert_true(hfx_page_byte(&f, 0, p) >= 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 5), 0);
	assert_int_equal(hfx_fill(&f, 0, 2, 6), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	/* The rewritten pages reuse their stale slots: 4 slots in all. */
	struct vswap_store_stats ss;
	pthread_mutex_lock(&f.h->lock);
	assert_int_equal(vswap_store_stats(f.store, &ss), 0);
	pthread_mutex_unlock(&f.h->lock);
	assert_int_equal(ss.slots_used, 5);
	int want[6] = {1, 5, 6, 3, 0, 4};
	expect_six(&f, want);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- swap in ----------------------------------------------------------- */

static void swap_in_all(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, &one_mib_copy), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 1), 0);
	assert_int_equal(hfx_fill(&f, 1, 1, 2), 0);
	assert_int_equal(hfx_fill(&f, 1, 2, 3), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	assert_int_equal(hfx_page_byte(&f, 0, 1), 1);
	assert_int_equal(hfx_page_byte(&f, 1, 1), 2);
	assert_int_equal(hfx_fill(&f, 1, 1, 4), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0); /* region 2's page 1 staged */
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	struct vswap_status st = status_of(&f);
	/* r1p1 and r2p1 staged by the second enable, r2p2 from the file. */
	assert_int_equal(st.transition.pages, 3);
	assert_int_equal(st.metrics.resident_pages, 3);
	assert_int_equal(st.metrics.swap_pages, 0);
	int want[6] = {0, 1, 0, 0, 4, 3};
	expect_six(&f, want);
	assert_int_equal(hfx_teardown(&f), 0);
}

/* ---- trim ---------------------------------------------------------------- */

static void trim_zero_and_clean(void **state)
{
	(void)state;
	struct hfx f;
	assert_int_equal(hfx_setup(&f, three, 2, &one_mib_copy), 0);
	assert_int_equal(hfx_fill(&f, 0, 0, 0), 0);
	assert_int_equal(hfx_fill(&f, 0, 1, 1), 0);
	assert_int_equal(hfx_fill(&f, 1, 0, 0), 0);
	assert_int_equal(hfx_fill(&f, 1, 1, 2), 0);
	assert_int_equal(hfx_fill(&f, 1, 2, 3), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(status_of(&f).transition.pages, 5);
	assert_int_equal(vswap_handler_trim(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
	struct vswap_status st = status_of(&f);
	assert_int_equal(st.transition.pages, 2); /* the two zero pages */
	assert_int_equal(st.metrics.staging_pages, 3);
	assert_int_equal(vswap_handler_swap_out(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_ACTIVE), 0);
	st = status_of(&f);
	assert_int_equal(st.transition.pages, 3);
	uint64_t written = st.metrics.bytes_written;
	int want1[6] = {0, 1, 0, 0, 2, 3};
	expect_six(&f, want1); /* every page resident again */
	assert_int_equal(hfx_fill(&f, 1, 1, 4), 0);
	assert_int_equal(vswap_handler_enable(f.h), 0);
	assert_int_equal(status_of(&f).transition.pages, 6);
	assert_int_equal(vswap_handler_trim(f.h), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_PENDING), 0);
	st = status_of(&f);
	assert_int_equal(st.transition.pages, 5);   /* 2 clean + 3 zero */
	assert_int_equal(st.metrics.swap_pages, 2); /* clean: present, no write */
	assert_int_equal(st.metrics.staging_pages, 1);
	assert_int_equal(st.metrics.bytes_written, written);
	assert_int_equal(vswap_handler_disable(f.h, false), 0);
	assert_int_equal(hfx_wait(&f, VSWAP_STATE_READY), 0);
	int want2[6] = {0, 1, 0, 0, 4, 3};
	expect_six(&f, want2);
	assert_int_equal(hfx_teardown(&f), 0);
}

int main(void)
{
	hfx_skip_if_unavailable("handler");
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(create_rejects_bad_regions),
	    cmocka_unit_test(create_adjacent_regions_in_one_mapping),
	    cmocka_unit_test(fault_zero_fill_edges),
	    cmocka_unit_test(fault_same_page_twice_is_redundant),
	    cmocka_unit_test(remove_events),
	    cmocka_unit_test(move_two_regions_one_memfd),
	    cmocka_unit_test(move_hugepage_layout),
	    cmocka_unit_test(swap_out_and_fault_back),
	    cmocka_unit_test(swap_out_keeps_page_faulted_before),
	    cmocka_unit_test(swap_out_twice_with_writes_between),
	    cmocka_unit_test(swap_in_all),
	    cmocka_unit_test(trim_zero_and_clean),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
