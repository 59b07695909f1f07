/* SPDX-License-Identifier: MIT */
/*
 * A bare userfaultfd server doing only what the kernel must do for a fault
 * served from the swap file: read the fault message, read the page's 4 KiB
 * O_DIRECT on io_uring (many in flight), and answer with UFFDIO_COPY when
 * the read completes.  No index, no checksum, no lock, no state machine.
 * With several server threads, each has its own ring, every ring polls the
 * same uffd and whichever thread reads a message serves it.
 *
 * Its rate with 8 faulting threads against its rate with one bounds what
 * any handler can get from concurrency on this machine: the fault entry,
 * the wake-up and the copy are CPU work that more threads do not shrink
 * when the cores are few.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vswap/handler.h>

#include "tools/bench/bare_ring.h"
#include "tools/bench/common.h"

#define DEPTH 64u
#define MAX_SERVERS 4u
#define MAX_FAULTERS 16u
#define TAG_UFFD UINT64_MAX
#define TAG_STOP (UINT64_MAX - 1)

struct server {
	const struct bare *b;
	struct io_uring ring;
	uint8_t *bufs;	       /* DEPTH pages and a spare */
	uintptr_t addr[DEPTH]; /* the fault each buffer's read serves */
	unsigned free[DEPTH], nfree;
	pthread_t t;
	int err;
};

struct bare {
	int uffd, fd, stop_fd;
	size_t ps, pages;
	uint8_t *mem;
	const uint64_t *page_off;
};

static void poll_arm(struct server *s, int fd, uint64_t tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, tag);
}

static void copy_in(struct server *s, uintptr_t addr, const void *src)
{
	const struct bare *b = s->b;
	struct uffdio_copy c = {.dst = addr, .src = (uintptr_t)src, .len = b->ps};
	if (ioctl(b->uffd, UFFDIO_COPY, &c) < 0 && errno == EEXIST) {
		struct uffdio_range r = {.start = addr, .len = b->ps};
		ioctl(b->uffd, UFFDIO_WAKE, &r);
	}
}

/* Each fault message read: its page's read queued (or, with every buffer
 * busy, read and copied at once). */
static void faults_read(struct server *s)
{
	const struct bare *b = s->b;
	struct uffd_msg msgs[16];
	for (;;) {
		ssize_t got = read(b->uffd, msgs, sizeof(msgs));
		if (got <= 0)
			return;
		for (size_t i = 0; i < (size_t)got / sizeof(msgs[0]); i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uintptr_t addr =
			    (uintptr_t)msgs[i].arg.pagefault.address & ~(uintptr_t)(b->ps - 1);
			size_t page = (addr - (uintptr_t)b->mem) / b->ps;
			off_t off = (off_t)b->page_off[page < b->pages ? page : 0];
			if (!s->nfree) { /* more faults than buffers: served at once */
				uint8_t *buf = s->bufs + (size_t)DEPTH * b->ps;
				if (pread(b->fd, buf, b->ps, off) < 0)
					s->err = -errno;
				copy_in(s, addr, buf);
				continue;
			}
			unsigned k = s->free[--s->nfree];
			s->addr[k] = addr;
			struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
			io_uring_prep_read(sqe, b->fd, s->bufs + (size_t)k * b->ps, (unsigned)b->ps,
					   (uint64_t)off);
			io_uring_sqe_set_data64(sqe, k);
		}
	}
}

static void *server_main(void *arg)
{
	struct server *s = arg;
	const struct bare *b = s->b;
	poll_arm(s, b->uffd, TAG_UFFD);
	poll_arm(s, b->stop_fd, TAG_STOP);
	for (;;) {
		int rc = io_uring_submit_and_wait(&s->ring, 1);
		if (rc < 0 && rc != -EINTR) {
			s->err = rc;
			return NULL;
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		bool stop = false, rearm = false;
		io_uring_for_each_cqe(&s->ring, head, cqe)
		{
			uint64_t tag = io_uring_cqe_get_data64(cqe);
			seen++;
			if (tag == TAG_STOP) {
				stop = true;
			} else if (tag == TAG_UFFD) {
				rearm = true;
			} else {
				unsigned k = (unsigned)tag;
				/* A failed read still answers the fault (with
				 * whatever the buffer holds): never a hang. */
				copy_in(s, s->addr[k], s->bufs + (size_t)k * b->ps);
				s->free[s->nfree++] = k;
			}
		}
		io_uring_cq_advance(&s->ring, seen);
		if (stop)
			return NULL;
		if (rearm) {
			faults_read(s);
			poll_arm(s, b->uffd, TAG_UFFD);
		}
	}
}

struct faulter {
	const struct bare *b;
	const uint64_t *pages;
	size_t n;
	atomic_bool *go;
	pthread_t t;
};

static void *faulter_main(void *arg)
{
	struct faulter *f = arg;
	while (!atomic_load(f->go))
		sched_yield();
	for (size_t i = 0; i < f->n; i++)
		(void)*(volatile uint8_t *)(f->b->mem + f->pages[i] * f->b->ps);
	return NULL;
}

/* Start @n servers; *started says how many run (to stop) even on error. */
static int servers_start(struct bare *b, struct server *s, unsigned n, unsigned *started)
{
	*started = 0;
	for (unsigned i = 0; i < n; i++) {
		s[i] = (struct server){.b = b, .nfree = DEPTH};
		for (unsigned k = 0; k < DEPTH; k++)
			s[i].free[k] = DEPTH - 1 - k;
		int rc = io_uring_queue_init(2 * DEPTH, &s[i].ring, 0);
		if (rc < 0)
			return rc;
		s[i].bufs = aligned_alloc(b->ps, (DEPTH + 1) * b->ps);
		if (s[i].bufs)
			memset(s[i].bufs, 0x5a, (DEPTH + 1) * b->ps);
		if (!s[i].bufs || pthread_create(&s[i].t, NULL, server_main, &s[i]) != 0) {
			free(s[i].bufs);
			io_uring_queue_exit(&s[i].ring);
			return -ENOMEM;
		}
		*started = i + 1;
	}
	return 0;
}

static int servers_stop(struct bare *b, struct server *s, unsigned n)
{
	uint64_t one = 1;
	int err = 0;
	if (write(b->stop_fd, &one, sizeof(one)) < 0)
		err = -errno;
	for (unsigned i = 0; i < n; i++) {
		pthread_join(s[i].t, NULL);
		if (s[i].err && !err)
			err = s[i].err;
		io_uring_queue_exit(&s[i].ring);
		free(s[i].bufs);
	}
	return err;
}

int bare_ring_rate(const char *path, size_t pages, size_t ps, const uint64_t *page_off,
		   const uint64_t *order, size_t n, unsigned faulters, unsigned servers,
		   double *rate)
{
	if (!faulters || faulters > MAX_FAULTERS || !servers || servers > MAX_SERVERS ||
	    n < faulters)
		return -EINVAL;
	struct bare b = {.uffd = -1, .ps = ps, .pages = pages, .page_off = page_off};
	struct server s[MAX_SERVERS];
	struct faulter f[MAX_FAULTERS];
	int memfd = memfd_create("bench-bare-ring", MFD_CLOEXEC);
	b.fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	b.stop_fd = eventfd(0, EFD_CLOEXEC);
	int rc = memfd < 0 || b.fd < 0 || b.stop_fd < 0 ? -errno : 0;
	if (rc == 0 && ftruncate(memfd, (off_t)(pages * ps)) < 0)
		rc = -errno;
	if (rc == 0) {
		b.mem = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		if (b.mem == MAP_FAILED) {
			b.mem = NULL;
			rc = -errno;
		}
	}
	if (rc == 0)
		rc = vswap_uffd_create(&b.uffd);
	if (rc == 0) {
		struct uffdio_register reg = {.range = {(uintptr_t)b.mem, pages * ps},
					      .mode = UFFDIO_REGISTER_MODE_MISSING};
		if (ioctl(b.uffd, UFFDIO_REGISTER, &reg) < 0)
			rc = -errno;
	}
	unsigned started = 0;
	if (rc == 0) {
		rc = servers_start(&b, s, servers, &started);
	}
	if (rc == 0) {
		atomic_bool go;
		atomic_init(&go, false);
		size_t each = n / faulters;
		unsigned made = 0;
		for (; made < faulters; made++) {
			f[made] = (struct faulter){
			    .b = &b, .pages = order + made * each, .n = each, .go = &go};
			if (pthread_create(&f[made].t, NULL, faulter_main, &f[made]) != 0)
				break;
		}
		uint64_t t0 = bench_now_ns();
		atomic_store(&go, true);
		for (unsigned i = 0; i < made; i++)
			pthread_join(f[i].t, NULL);
		double secs = (double)(bench_now_ns() - t0) / 1e9;
		if (made < faulters)
			rc = -EAGAIN;
		else
			*rate = (double)(each * faulters) / secs;
	}
	if (started) {
		int src = servers_stop(&b, s, started);
		if (rc == 0)
			rc = src;
	}
	if (b.uffd >= 0)
		close(b.uffd);
	if (b.mem)
		munmap(b.mem, pages * ps);
	if (memfd >= 0)
		close(memfd);
	if (b.fd >= 0)
		close(b.fd);
	if (b.stop_fd >= 0)
		close(b.stop_fd);
	return rc;
}
