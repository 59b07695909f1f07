/* SPDX-License-Identifier: MIT */
/*
 * vswapd: the page handler as its own process.  One thread per connection
 * (one VMM), one guest (store + handler) per connection; the handler's own
 * threads serve the faults.  Nothing is shared between connections but the
 * daemon's options, so a guest's slow command never holds up another's.
 */
#ifndef VSWAPD_INTERNAL_H
#define VSWAPD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vswap/handler.h>

#include "proto/wire.h"

struct daemon_opts {
	enum vswap_log_level log_level;
	const char *staging_dir; /* default for guests that name none */
};

/* One VMM's guest, owned by its connection's thread. */
struct guest {
	const struct daemon_opts *d;
	struct vswap_store *store;
	struct vswap_handler *h;
	unsigned n;
	int memfd[WIRE_MAX_REGIONS];
	void *map[WIRE_MAX_REGIONS];
	size_t len[WIRE_MAX_REGIONS];
	char path[WIRE_MAX_PATH + 1];
	uint64_t attach_us; /* the last attach's time (open, reconcile, register, wake) */
};

/* log.c */
void dlog(enum vswap_log_level min, enum vswap_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A vswap_log_fn for the store and handler; ctx is the guest. */
void guest_log(void *ctx, enum vswap_log_level lvl, const char *msg);

/* guest.c */
/* ATTACH: validate, map the memfds, open or create the store, create the
 * handler, add the uffds (at the VMM's addresses), resume.  Takes ownership
 * of @fds whatever happens. */
int guest_attach(struct guest *g, const void *payload, size_t len, int *fds, unsigned nfds);
/* ADD_UFFD; takes ownership of @fd. */
int guest_add_uffd(struct guest *g, const void *payload, size_t len, int fd);
/* DISCARD (version 2): the pages read zeros, durably, when it returns. */
int guest_discard(struct guest *g, const struct wire_discard *d);
/* COMMAND; the guest is freed after DETACH and EXIT. */
int guest_command(struct guest *g, const struct wire_command *c);
/* The VMM went away without a word: detach (the store keeps every page)
 * and free. */
void guest_abandon(struct guest *g);
bool guest_attached(const struct guest *g);

/* conn.c */
/* Serve one accepted connection until its end (a thread's body). */
void *conn_main(void *arg);
struct conn_args {
	int fd;
	const struct daemon_opts *d;
};

/* listen.c */
/* The listening socket: inherited from systemd (LISTEN_FDS) or bound at
 * @path (mode 0600).  *@inherited says which. */
int listen_socket(const char *path, bool *inherited);

#endif
