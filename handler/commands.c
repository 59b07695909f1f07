/* SPDX-License-Identifier: MIT */
/* The public commands: queued for the monitor, answered through qdone. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "handler/internal.h"

int cmd_submit(struct vswap_handler *h, struct cmd *c)
{
	c->done = false;
	c->next = NULL;
	pthread_mutex_lock(&h->qlock);
	if (h->dead) {
		pthread_mutex_unlock(&h->qlock);
		return -ESHUTDOWN;
	}
	if (h->qtail)
		h->qtail->next = c;
	else
		h->qhead = c;
	h->qtail = c;
	h->waiters++;
	pthread_mutex_unlock(&h->qlock);
	/* Fails only when the counter is already far from zero: the monitor
	 * wakes anyway, and the queue says what to do. */
	uint64_t one = 1;
	if (write(h->m.cmd_efd, &one, sizeof(one)) < 0) {
	}
	pthread_mutex_lock(&h->qlock);
	while (!c->done)
		pthread_cond_wait(&h->qdone, &h->qlock);
	if (--h->waiters == 0)
		pthread_cond_broadcast(&h->qdone);
	pthread_mutex_unlock(&h->qlock);
	return c->result;
}

void cmd_refuse_all(struct vswap_handler *h)
{
	pthread_mutex_lock(&h->qlock);
	h->dead = true;
	for (struct cmd *c = h->qhead; c;) {
		struct cmd *next = c->next;
		c->result = -ESHUTDOWN;
		c->done = true;
		c = next;
	}
	h->qhead = h->qtail = NULL;
	pthread_cond_broadcast(&h->qdone);
	pthread_mutex_unlock(&h->qlock);
}

void cmd_wait_callers(struct vswap_handler *h)
{
	pthread_mutex_lock(&h->qlock);
	while (h->waiters)
		pthread_cond_wait(&h->qdone, &h->qlock);
	pthread_mutex_unlock(&h->qlock);
}

static int simple(struct vswap_handler *h, enum cmd_type type)
{
	if (!h)
		return -EINVAL;
	struct cmd c = {.type = type};
	return cmd_submit(h, &c);
}

int vswap_handler_enable(struct vswap_handler *h)
{
	return simple(h, CMD_ENABLE);
}

int vswap_handler_trim(struct vswap_handler *h)
{
	return simple(h, CMD_TRIM);
}

int vswap_handler_swap_out(struct vswap_handler *h)
{
	return simple(h, CMD_SWAP_OUT);
}

int vswap_handler_gc(struct vswap_handler *h)
{
	return simple(h, CMD_GC);
}

int vswap_handler_disable(struct vswap_handler *h, bool slow_file_cleanup)
{
	if (!h)
		return -EINVAL;
	struct cmd c = {.type = CMD_DISABLE, .slow = slow_file_cleanup};
	return cmd_submit(h, &c);
}

int vswap_handler_add_uffd(struct vswap_handler *h, int uffd)
{
	if (!h || uffd < 0)
		return -EINVAL;
	struct cmd c = {.type = CMD_ADD_UFFD, .fd = uffd};
	return cmd_submit(h, &c);
}

int vswap_handler_set_static_uffds(struct vswap_handler *h, unsigned count)
{
	if (!h)
		return -EINVAL;
	struct cmd c = {.type = CMD_SET_STATIC, .count = count};
	return cmd_submit(h, &c);
}

int vswap_handler_add_uffd_at(struct vswap_handler *h, int uffd, void *const *bases)
{
	if (!bases)
		return vswap_handler_add_uffd(h, uffd);
	if (!h || uffd < 0)
		return -EINVAL;
	uintptr_t *v = calloc(h->nregions, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (unsigned i = 0; i < h->nregions; i++) {
		uintptr_t a = (uintptr_t)bases[i];
		uintptr_t len = h->regions[i].end - h->regions[i].start;
		if (!a || (a & (h->page_size - 1)) || a + len < a) {
			free(v);
			return -EINVAL;
		}
		v[i] = a;
	}
	struct cmd c = {.type = CMD_ADD_UFFD, .fd = uffd, .bases = v};
	int rc = cmd_submit(h, &c);
	if (rc < 0) /* the list took it only on success */
		free(v);
	return rc;
}
