/* SPDX-License-Identifier: MIT */
/*
 * Orphans: guests whose VMM is alive but whose connection closed without a
 * detach.  A closed connection is not a detach: unregistering the guest's
 * ranges would let its next fault map a zero page where data was.  So the
 * connection's thread keeps serving the guest until either its VMM attaches
 * the same store again (that attach takes the orphan over: the orphan is
 * released, its faults wait in the kernel, and the attach resumes it) or
 * the VMM exits (its guest is freed).  The registry is the daemon's one
 * piece of state shared between connections; its lock is held only to
 * link, unlink and find.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vswapd/internal.h"

void orphans_init(struct orphans *r)
{
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->head = NULL;
	r->next_id = 1;
}

int orphan_enter(struct orphans *r, struct orphan *o, dev_t dev, ino_t ino)
{
	o->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (o->efd < 0)
		return -errno;
	o->dev = dev;
	o->ino = ino;
	o->taken = false;
	pthread_mutex_lock(&r->mu);
	o->id = r->next_id++;
	o->next = r->head;
	r->head = o;
	pthread_mutex_unlock(&r->mu);
	return 0;
}

/* Unlink @o, lock held. */
static void unlink_locked(struct orphans *r, const struct orphan *o)
{
	for (struct orphan **pp = &r->head; *pp; pp = &(*pp)->next)
		if (*pp == o) {
			*pp = o->next;
			return;
		}
}

bool orphan_leave(struct orphans *r, struct orphan *o)
{
	pthread_mutex_lock(&r->mu);
	bool mine = !o->taken;
	if (mine)
		unlink_locked(r, o);
	pthread_mutex_unlock(&r->mu);
	return mine;
}

void orphan_released(struct orphans *r, struct orphan *o)
{
	pthread_mutex_lock(&r->mu);
	unlink_locked(r, o);
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* Is the orphan numbered @id still linked?  Lock held.  By number, not by
 * address: the taker must not read an orphan its thread has freed. */
static bool linked_locked(const struct orphans *r, uint64_t id)
{
	for (const struct orphan *o = r->head; o; o = o->next)
		if (o->id == id)
			return true;
	return false;
}

bool orphans_take(struct orphans *r, dev_t dev, ino_t ino)
{
	pthread_mutex_lock(&r->mu);
	struct orphan *o = r->head;
	while (o && (o->taken || o->dev != dev || o->ino != ino))
		o = o->next;
	if (!o) {
		pthread_mutex_unlock(&r->mu);
		return false;
	}
	o->taken = true;
	uint64_t id = o->id;
	if (eventfd_write(o->efd, 1) < 0) {
		/* A counter of one never overflows: cannot fail. */
	}
	while (linked_locked(r, id))
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	return true;
}
