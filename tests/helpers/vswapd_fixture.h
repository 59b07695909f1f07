/* SPDX-License-Identifier: MIT */
/*
 * Test fixture for vswapd: the daemon run as a child process (the build's
 * vswapd binary, killed and restarted at will), and a VMM side in this
 * process: guest memory in one sealed memfd cut into regions, mapped here,
 * this process's uffd, and a client attached through the daemon's socket.
 * Guest accesses go through hfx_read() / hfx_write() (a thread and a time
 * limit each), so a fault nobody serves fails the test instead of hanging it.
 */
#ifndef VSWAP_TESTS_VSWAPD_FIXTURE_H
#define VSWAP_TESTS_VSWAPD_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vswap/client.h>

#define VDX_MAX_REGIONS 4
/* Waits on the daemon (its start, its end): generous for sanitizer builds. */
#define VDX_TIMEOUT_MS 20000

struct vdx {
	char dir[256];
	char sock[320];
	char store[320];
	pid_t pid;	       /* the daemon, or 0 */
	int listen_fd;	       /* socket activation: the socket every daemon inherits, or -1 */
	int log_fd;	       /* every daemon's stderr (the caller's), or -1: this process's */
	const char *log_level; /* the daemons' --log-level (NULL: error) */
	int memfd;
	size_t page_size;
	unsigned n;
	size_t pages[VDX_MAX_REGIONS];
	struct vswap_region regions[VDX_MAX_REGIONS];
	uint64_t first[VDX_MAX_REGIONS]; /* each region's first page in the store */
	uint64_t total_pages;
	void *map;
	size_t map_len;
	int uffd;
	struct vswap_client *c;
};

/* The build's vswapd. */
const char *vdx_daemon_path(void);
/* Directory, memfd and mapping of @n regions of @pages[i] pages, a uffd. */
int vdx_init(struct vdx *x, const size_t *pages, unsigned n);
/* Listen on x->sock here and hand the socket to every daemon started
 * (systemd's socket activation): clients connect while no daemon runs. */
int vdx_listen(struct vdx *x);
/* Start the daemon on x->sock and wait until it listens. */
int vdx_daemon_start(struct vdx *x);
/* SIGKILL the daemon and reap it. */
int vdx_daemon_kill(struct vdx *x);
/* Connect and attach (opts may be NULL: a fresh store at x->store). */
int vdx_attach(struct vdx *x, const struct vswap_client_opts *opts);
/* Detach if attached, kill the daemon, remove the store and directory. */
void vdx_fini(struct vdx *x);
uint8_t *vdx_addr(const struct vdx *x, unsigned r, uint64_t page);
/* The store page @page's address in this process. */
uint8_t *vdx_page(const struct vdx *x, uint64_t page);
/* vswap-fsck @args ("-n", "-p" or "-y") on the store, run through the
 * library: its exit code (about this store alone). */
int vdx_fsck(const struct vdx *x, const char *args);
/* The number of descriptors process @pid holds, or -errno. */
int vdx_fd_count(pid_t pid);

#endif
