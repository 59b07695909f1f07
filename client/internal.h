/* SPDX-License-Identifier: MIT */
/* Internals of client/: the handle, its connection and what it replays. */
#ifndef VSWAP_CLIENT_INTERNAL_H
#define VSWAP_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include <vswap/client.h>

#include "proto/wire.h"
#include "util/log.h"

struct client_uffd {
	int fd; /* the client's own duplicate */
	uint64_t bases[WIRE_MAX_REGIONS];
};

struct vswap_client {
	struct sockaddr_un addr;
	struct vswap_client_opts opts;
	struct logger log;
	char *store_path, *staging_dir; /* copies */

	/* lock serialises the connection: one request and its reply at a
	 * time, and a reconnect. */
	pthread_mutex_t lock;
	int sock;     /* -1 while disconnected */
	uint64_t gen; /* bumped by every (re)connection */
	uint64_t seq;
	bool attached; /* the guest was handed over (reconnects hand it again) */
	bool closing;

	/* What is handed over again after a restart. */
	unsigned nregions;
	struct wire_region regions[WIRE_MAX_REGIONS];
	int memfds[WIRE_MAX_REGIONS];
	unsigned nuffds;
	struct client_uffd uffds[WIRE_MAX_UFFDS];

	/* The last trim / swap-out / disable, replayed after a restart. */
	uint32_t last_cmd, last_arg;

	/* watcher thread */
	bool watching;
	pthread_t watcher;
	int stop_efd;

	/* info_lock guards info alone, so that vswap_client_info() never
	 * waits for a request (lock is held across a whole request). */
	pthread_mutex_t info_lock;
	struct vswap_client_info info;
	uint64_t down_us; /* when the connection was found gone */
};

void clog_(const struct vswap_client *c, enum vswap_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t client_now_us(void);
/* Set info.connected (lock held). */
void client_set_connected(struct vswap_client *c, bool connected);

/* request.c */
/* One request and its reply on the current connection, lock held.  A lost
 * connection is -ECONNRESET (the socket closed). */
int client_request(struct vswap_client *c, uint16_t type, const void *payload, size_t len,
		   const int *fds, unsigned nfds, struct wire_reply *r);
/* Connect the socket (no hand-over), lock held. */
int client_dial(struct vswap_client *c);
/* Hand the guest over on the current connection, lock held. */
int client_send_attach(struct vswap_client *c, bool resume, struct wire_reply *r);

/* reconnect.c */
/* Reconnect and resume, lock held; @replay: send the last command again if
 * the resumed state shows it unfinished. */
int client_reconnect_locked(struct vswap_client *c, bool replay);
int client_watch_start(struct vswap_client *c);
void client_watch_stop(struct vswap_client *c);

#endif
