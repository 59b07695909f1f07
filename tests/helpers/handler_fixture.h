/* SPDX-License-Identifier: MIT */
/*
 * Test fixture for the page handler: a store in a fresh directory (staging
 * in /dev/shm), guest regions carved from one memfd and mapped shared, a
 * handler over them, and guest accesses run on another thread under a time
 * limit, so that a fault nobody wakes fails the test instead of hanging it.
 * A SIGBUS during such an access is caught and reported.
 */
#ifndef VSWAP_TESTS_HANDLER_FIXTURE_H
#define VSWAP_TESTS_HANDLER_FIXTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vswap/handler.h>

#define HFX_MAX_REGIONS 4
/* The limit on one guest access; generous so sanitizer builds pass, short
 * enough that a missing wake fails fast. */
#define HFX_TIMEOUT_MS 5000
/* The limit on anything else a test waits for (a state, a hook reached). */
#define HFX_DEADLINE_MS 10000

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t hfx_now_ms(void);
/* Yield until @cond(@arg) holds: true, or false once HFX_DEADLINE_MS
 * passed without it. */
bool hfx_wait_for(bool (*cond)(void *), void *arg);
/* The byte the handler suites fill page @p with. */
static inline uint8_t hfx_byte_of(uint64_t p)
{
	return (uint8_t)(0x40 + p);
}

struct hfx {
	char dir[256];
	char path[320];
	struct vswap_store *store;
	struct vswap_handler *h;
	int memfd;
	size_t page_size;
	void *reserve; /* the address range the regions sit in, guard pages apart */
	size_t reserve_len;
	unsigned n;
	struct vswap_region regions[HFX_MAX_REGIONS];
	uint64_t first[HFX_MAX_REGIONS]; /* each region's first page in the store */
};

/* Options of the tests of the copy enable mode's own behaviour (staging,
 * a fault at the first access after enable): the mode pinned. */
extern const struct vswap_handler_opts hfx_copy;

/* NULL if the handler tests can run here, else why not (not root, no
 * userfaultfd). */
const char *hfx_unavailable(void);
/* Exit 77 with a message when hfx_unavailable() says so. */
void hfx_skip_if_unavailable(const char *suite);

/* Store + memfd + regions of @pages[i] pages (offsets end to end, each
 * mapped separately with an unmapped guard page before and after).  @opts may be NULL; its store
 * field is ignored. */
int hfx_setup(struct hfx *f, const size_t *pages, unsigned n,
	      const struct vswap_handler_opts *opts);
/* The same without the handler (for create-error tests). */
int hfx_setup_memory(struct hfx *f, const size_t *pages, unsigned n);
int hfx_start(struct hfx *f, const struct vswap_handler_opts *opts);
/* Destroy the handler (returns its result), close and remove the store. */
int hfx_teardown(struct hfx *f);

/* Host address of page @page of region @r. */
uint8_t *hfx_addr(const struct hfx *f, unsigned r, uint64_t page);

/* Guest accesses on another thread, at most @timeout_ms (0: default).
 * 0, -ETIMEDOUT (a fault was not resolved in time) or -EFAULT (SIGBUS;
 * *bus_at gets the offset where it hit, may be NULL). */
int hfx_read(void *dst, const void *guest, size_t len, int timeout_ms, size_t *bus_at);
int hfx_write(void *guest, const void *src, size_t len, int timeout_ms);
/* Fill / check one page with byte @v through timed accesses. */
int hfx_fill(const struct hfx *f, unsigned r, uint64_t page, uint8_t v);
/* The byte every position of the page holds, or -1 if mixed, -2 timeout,
 * -3 SIGBUS. */
int hfx_page_byte(const struct hfx *f, unsigned r, uint64_t page);

/* Flip one bit of the swap file's copy of page @page of region @r (it must
 * be present).  0 or a negative errno. */
int hfx_corrupt_slot(const struct hfx *f, unsigned r, uint64_t page);

/* The id of the first task of this process whose wchan names @what (say
 * "userfault" or "epoll"), or 0: how a test knows a thread is blocked. */
int hfx_task_waiting_in(const char *what);

/* One guest read of a whole page on a thread of its own, left running
 * while the test acts (a fault held unresolved, a SIGBUS to come). */
struct hfx_reader {
	pthread_t t;
	const struct hfx *f;
	uint64_t page;
	int timeout_ms;
	uint8_t *buf; /* page-sized, filled with 0xaa before the read */
	size_t bus_at;
	int rc; /* hfx_read()'s result once done */
	atomic_bool done;
};
int hfx_reader_start(struct hfx_reader *r, const struct hfx *f, uint64_t page, int timeout_ms);
void hfx_reader_join(struct hfx_reader *r);

/*
 * A forked "device" process: it creates its own uffd and hands it over
 * (SCM_RIGHTS); the parent adds it to the handler.  The child then waits
 * for hfx_child_go() and exits with fn(f, arg)'s value.
 */
struct hfx_child {
	int pid;
	int sock;
	int pidfd;
};
int hfx_child_start(struct hfx *f, int (*fn)(const struct hfx *f, void *arg), void *arg,
		    struct hfx_child *c);
int hfx_child_go(struct hfx_child *c);
/* The child's exit status, or -ETIMEDOUT (it is then killed). */
int hfx_child_wait(struct hfx_child *c, int timeout_ms);
/* True once task @tid of process @pid (0: this one) waits on a userfault. */
bool hfx_in_userfault(int pid, int tid);

/* A thread that balloons [addr, addr + len) with MADV_REMOVE.  On memory
 * the handler watches for removes, it waits in the kernel until the handler
 * reads its REMOVE event. */
struct hfx_remover {
	pthread_t t;
	void *addr;
	size_t len;
	int rc; /* madvise's result, 0 or -errno, once done */
	atomic_int tid;
	atomic_bool done;
};
int hfx_remover_start(struct hfx_remover *m, void *addr, size_t len);
/* Predicates for hfx_wait_for(): waiting on its event; finished. */
bool hfx_remover_blocked(void *m);
bool hfx_remover_done(void *m);

/* Wait for @st (default limit); 0 or -ETIMEDOUT. */
int hfx_wait(const struct hfx *f, enum vswap_state st);

#endif
