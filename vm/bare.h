/* SPDX-License-Identifier: MIT */
/* A bare userfaultfd handler serving guest RAM from a flat file (vm/bare.c). */
#ifndef VSWAP_VM_BARE_H
#define VSWAP_VM_BARE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define BARE_PAGE 4096
#define BARE_THREAD_NAME "vswap-bare-uffd"

struct bare_uffd {
	void *ram;
	uint64_t len;
	int file_fd, uffd, stop_fd;
	void *buf;
	pthread_t thread;
	bool running;
	uint64_t served; /* faults answered (read after bare_stop) */
};

/* Register @ram (@len bytes) on a new uffd and serve its faults from
 * @file_fd on a thread of its own. */
int bare_start(struct bare_uffd *b, void *ram, uint64_t len, int file_fd);
void bare_stop(struct bare_uffd *b);

#endif
