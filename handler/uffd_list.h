/* SPDX-License-Identifier: MIT */
/*
 * The uffds the monitor serves, one per process.  Index 0 is the handler's
 * own process.  Each uffd sits in the monitor's epoll with the token
 * UFFD_TOKEN_BASE + index.  After the static count N is known, a uffd added
 * when the list already holds N + 1 entries is *dynamic* (a hot-plugged
 * device): the dead-uffd checker page is registered on it, and gc drops it
 * once its process is gone.  Static uffds are never dropped (only skipped).
 */
#ifndef VSWAP_HANDLER_UFFD_LIST_H
#define VSWAP_HANDLER_UFFD_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UFFD_TOKEN_BASE 16u

struct uffd_entry {
	int fd;
	bool dynamic;
	bool dead; /* its process is gone: skipped */
	/* Where each region starts in this uffd's process (owned), or NULL:
	 * at the handler's own addresses (a forked child). */
	uintptr_t *bases;
	/* Faults read on it and left unanswered on purpose (handler/sweep.c). */
	uint64_t parked;
};

struct uffd_list {
	struct uffd_entry *v;
	unsigned n;
	size_t cap;
	long static_count; /* -1 until set */
	uintptr_t dummy;   /* the dead-uffd checker page (shared anonymous) */
	size_t page_size;
	int epfd; /* -1: no epoll (tests) */
};

int uffd_list_init(struct uffd_list *l, int epfd, size_t page_size);
/* Close every uffd and free (also unmaps the checker page). */
void uffd_list_fini(struct uffd_list *l);
/* Add @fd (the list takes ownership); *index gets its position. */
int uffd_list_add(struct uffd_list *l, int fd, unsigned *index);
/* Add @fd of a process that maps region i at @bases[i] (the list takes
 * ownership of both; never dynamic: the checker page is not mapped there). */
int uffd_list_add_at(struct uffd_list *l, int fd, uintptr_t *bases, unsigned *index);
/* Set the static count once: -EALREADY the second time. */
int uffd_list_set_static(struct uffd_list *l, unsigned count);
/* True if the entry's process is gone (checked with ZEROPAGE on the
 * checker page for dynamic uffds, which is the only sure test). */
bool uffd_list_is_dead(struct uffd_list *l, unsigned i);
/* Drop dead dynamic uffds, re-keying moved entries in epoll.  Returns the
 * number dropped or -errno. */
int uffd_list_gc(struct uffd_list *l);
/* Index of token @tok, or -1. */
static inline int uffd_list_index(const struct uffd_list *l, uint64_t tok)
{
	return tok >= UFFD_TOKEN_BASE && tok - UFFD_TOKEN_BASE < l->n ? (int)(tok - UFFD_TOKEN_BASE)
								      : -1;
}

#endif
