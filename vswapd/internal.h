/* SPDX-License-Identifier: MIT */
/*
 * vswapd: the page handler as its own process.  One thread per connection
 * (one VMM), one guest (store + handler) per connection; the handler's own
 * threads serve the faults.  Nothing is shared between connections but the
 * daemon's options, so a guest's slow command never holds up another's.
 */
#ifndef VSWAPD_INTERNAL_H
#define VSWAPD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vswap/handler.h>

#include "proto/wire.h"

/* orphans.c: guests served after their connection closed (see there). */
struct orphan {
	struct orphan *next;
	uint64_t id;
	dev_t dev; /* the store's swap file */
	ino_t ino;
	bool taken; /* a new attach waits for its release */
	int efd;    /* written when taken */
};
struct orphans {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* an orphan was released */
	struct orphan *head;
	uint64_t next_id;
};
void orphans_init(struct orphans *r);
/* Link @o, the orphan of the store (@dev, @ino). */
int orphan_enter(struct orphans *r, struct orphan *o, dev_t dev, ino_t ino);
/* The VMM exited: unlink @o and return true, unless it is being taken
 * over (false: release it for the taker). */
bool orphan_leave(struct orphans *r, struct orphan *o);
/* @o, taken, has been released: unlink it and tell the taker. */
void orphan_released(struct orphans *r, struct orphan *o);
/* An attach of the store (@dev, @ino): if an orphan holds it, have it
 * released and wait for that (true). */
bool orphans_take(struct orphans *r, dev_t dev, ino_t ino);

/* timing.c */
uint64_t now_us(void); /* CLOCK_MONOTONIC, comparable across processes */
/* The CPU time of every thread of this process (clock_gettime: cheap
 * enough for each step of a restart). */
uint64_t process_cpu_us(void);
/* The CPU time and run-queue wait of every thread of this process, summed
 * (threads that ended are not counted). */
struct sched_sample {
	uint64_t cpu_ns, wait_ns;
};
void sched_sample_take(struct sched_sample *s);

struct daemon_opts {
	enum vswap_log_level log_level;
	const char *staging_dir; /* default for guests that name none */
	struct orphans *orphans; /* shared by every connection */
	/* From exec to listening, as the scheduler counted it, and when. */
	struct sched_sample start;
	uint64_t listening_us;
};

/* A resumed attach's steps, microseconds (a restart's figures). */
struct attach_times {
	uint64_t accepted_at;	   /* CLOCK_MONOTONIC */
	uint64_t accept_to_attach; /* the client's hand-over on the wire */
	uint64_t map, takeover, open, handler, uffds, resume, total;
	/* The process's CPU time over the steps that may take long. */
	uint64_t open_cpu, handler_cpu, uffds_cpu, resume_cpu;
	struct sched_sample before; /* at the attach's start */
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
	dev_t dev; /* the swap file, for a takeover by a new connection */
	ino_t ino;
	/* Duplicates of the attach's uffds (the VMM's own process), kept to
	 * ask whether its memory still exists (guest_vmm_alive()). */
	unsigned nprobes;
	int probe_fd[WIRE_MAX_UFFDS];
	uintptr_t probe_addr[WIRE_MAX_UFFDS];
	uint64_t attach_us; /* the last attach's time (open, reconcile, register, wake) */
	bool resumed;	    /* the last attach was a resume */
	struct attach_times times;
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
/* The VMM exited without a word: detach (the store keeps every page) and
 * free. */
void guest_abandon(struct guest *g);
/* Stop serving but leave the guest's ranges registered, its faults waiting
 * for the next attach (vswap_handler_release()), and free. */
void guest_release(struct guest *g);
/* Does the VMM's memory still exist?  False once every uffd of the attach
 * belongs to an address space that is gone (its process exited). */
bool guest_vmm_alive(const struct guest *g);
bool guest_attached(const struct guest *g);

/* conn.c */
/* Serve one accepted connection until its end (a thread's body). */
void *conn_main(void *arg);
struct conn_args {
	int fd;
	const struct daemon_opts *d;
	uint64_t accepted_us;
};

/* listen.c */
/* The listening socket: inherited from systemd (LISTEN_FDS) or bound at
 * @path (mode 0600).  *@inherited says which. */
int listen_socket(const char *path, bool *inherited);

#endif
