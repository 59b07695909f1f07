/* SPDX-License-Identifier: MIT */
/*
 * The staged copies a previous handler left (a resume over a copy-mode
 * store) are checked against their checksums before anything serves them.
 * The store checks each at its first use, under h->lock: a read and a hash,
 * about a millisecond per 2 MiB run that a job (swap-in, trim, swap-out)
 * takes, and every fault waits through it.  So a resume starts this thread,
 * which checks them ahead, holding h->lock only to find the next run and to
 * hand over its checksums (vswap_store_unverified_run() and
 * vswap_store_unverified_checked()); the read and the hash run without it.
 * What a fault or a job reaches first is still checked there, as before:
 * the thread only makes that rarer.  It ends when no copy is left to check,
 * or at the handler's end (verify_stop(), before the store is handed back).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "handler/internal.h"

/* Pages read and hashed per lock-free step. */
#define VERIFY_RUN 256u

struct verifier {
	pthread_t thread;
	atomic_bool stop;
	struct vswap_handler *h;
	uint8_t *buf;
	uint64_t *sums;
};

static void *verify_main(void *arg)
{
	struct verifier *v = arg;
	struct vswap_handler *h = v->h;
	thread_background(h->opts.background_slice_us);
	int fd = vswap_store_staging_fd(h->store);
	uint64_t from = 0;
	while (!atomic_load_explicit(&v->stop, memory_order_relaxed)) {
		uint64_t first, count;
		pthread_mutex_lock(&h->lock);
		int found = vswap_store_unverified_run(h->store, from, VERIFY_RUN, &first, &count);
		pthread_mutex_unlock(&h->lock);
		if (found <= 0)
			break;
		ssize_t k =
		    pread(fd, v->buf, count << h->page_shift, (off_t)(first << h->page_shift));
		uint64_t whole = k > 0 ? (uint64_t)k >> h->page_shift : 0;
		if (whole > count)
			whole = count;
		for (uint64_t i = 0; i < whole; i++)
			v->sums[i] = vswap_store_page_checksum(h->store, first + i,
							       v->buf + (i << h->page_shift));
		if (whole) {
			pthread_mutex_lock(&h->lock);
			vswap_store_unverified_checked(h->store, first, whole, v->sums);
			pthread_mutex_unlock(&h->lock);
		}
		/* Not read (a short file, an error): left for their first use,
		 * which judges them as it did before. */
		from = first + (whole ? whole : count);
	}
	return NULL;
}

int verify_start(struct vswap_handler *h)
{
	if (h->vf)
		return 0;
	struct verifier *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->h = h;
	v->buf = malloc((size_t)VERIFY_RUN << h->page_shift);
	v->sums = malloc(VERIFY_RUN * sizeof(*v->sums));
	int rc = v->buf && v->sums ? pthread_create(&v->thread, NULL, verify_main, v) : ENOMEM;
	if (rc) {
		free(v->buf);
		free(v->sums);
		free(v);
		return -rc;
	}
	h->vf = v;
	return 0;
}

void verify_stop(struct vswap_handler *h)
{
	struct verifier *v = h->vf;
	if (!v)
		return;
	atomic_store_explicit(&v->stop, true, memory_order_relaxed);
	pthread_join(v->thread, NULL);
	free(v->buf);
	free(v->sums);
	free(v);
	h->vf = NULL;
}
