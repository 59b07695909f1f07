/* SPDX-License-Identifier: MIT */
/*
 * vswap client: a VMM's side of vswapd, the page handler run as its own
 * process.  The VMM keeps its guest memory (memfds) and its userfaultfds;
 * it hands them to vswapd over a Unix socket, with the region layout, and
 * sends the commands it would give an in-process handler.  The client is
 * standalone: it speaks vswapd's protocol (docs/PROTOCOL.md) and runs none
 * of the handler.
 *
 * Restart.  If vswapd dies, the guest's faults wait in the kernel (the VMM
 * holds its uffds open).  The client notices the end of file, connects again
 * as soon as a vswapd listens on the socket, and hands its descriptors over
 * again; the new vswapd resumes the guest (vswap_handler_resume()): no byte
 * is lost.  By default a watcher thread does this at once; with
 * opts.manual_reconnect the VMM calls vswap_client_reconnect() itself (a
 * command that finds the connection gone returns -ECONNRESET then).  A
 * command interrupted by the restart is sent again to the new vswapd (it may
 * then answer as that state requires, e.g. -EALREADY), and after a restart
 * between commands the last trim, swap-out or disable is sent again when the
 * resumed state shows it unfinished.  A guest whose pages were all resident
 * comes back in state Ready (enable again: only the VMM can pause the guest),
 * except in the protect mode between an enable and the end of its swap-out:
 * protected again (with the guest running), it comes back Pending, and the
 * trim or swap-out carries on.
 *
 * Functions return 0 on success or a negative errno; every function may be
 * called from any thread but the guest's faulting ones, and calls are
 * serialised on the connection.
 */
#ifndef VSWAP_CLIENT_H
#define VSWAP_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <vswap/handler.h>
#include <vswap/store.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vswap_client;

struct vswap_client_opts {
	/* The guest's store: its swap file path, as vswapd will open it.
	 * Required.  One store per guest (its lock refuses a second). */
	const char *store_path;
	enum vswap_durability durability;
	/* How enable works (vswap_handler_opts.enable_mode); default AUTO. */
	enum vswap_enable_mode enable_mode;
	const char *staging_dir; /* NULL: vswapd's default */
	/* The store exists (a hibernated guest, or a VMM that restarts its
	 * client): open it and resume.  Else a fresh store is created
	 * (-EEXIST if the swap file exists). */
	bool resume;
	/* How long a command, or the watcher, keeps trying to reach a vswapd
	 * again: default (0) 30000 ms; negative: forever. */
	int reconnect_timeout_ms;
	/* How long a request waits for vswapd's reply (a wait for a state
	 * adds its own timeout): default (0) 120000 ms, enough to copy or
	 * swap in a large guest.  A daemon alive but silent for that long
	 * (stopped, stuck) gets -ETIMEDOUT, logged with the request it
	 * waited for; the connection is kept (a late reply is discarded). */
	int reply_timeout_ms;
	/* No watcher thread: call vswap_client_reconnect() after -ECONNRESET. */
	bool manual_reconnect;
	vswap_log_fn log; /* the rule: next to enum vswap_log_level (store.h) */
	void *log_ctx;
	enum vswap_log_level log_level;
	/* Room for options added later without an ABI break (docs/ABI.md):
	 * must be zero (zero-initialise the struct); -EINVAL otherwise. */
	uint64_t reserved[8];
};

/* Connect to vswapd at @socket_path.  -ENOENT / -ECONNREFUSED: nobody
 * listens there; -EACCES: not the daemon's user nor root. */
int vswap_client_connect(const char *socket_path, const struct vswap_client_opts *opts,
			 struct vswap_client **out);

/*
 * Hand over the guest: @n regions (as for vswap_handler_create(), at this
 * process's addresses; a region's memfd must hold [offset, offset + len))
 * and @uffd, created in this process with vswap_uffd_create().  The client
 * keeps duplicates of the descriptors (the caller keeps its own) to hand
 * them over again after a restart.  Each memfd is sealed against shrinking
 * (F_SEAL_SHRINK: vswapd maps it and must never find it short); -EPERM if
 * it cannot be (create it with MFD_ALLOW_SEALING).  The state is Ready, or
 * with opts.resume where the store's pages are.
 */
int vswap_client_attach(struct vswap_client *c, const struct vswap_region *regions, unsigned n,
			int uffd);

/* Another process's uffd (a device process): it maps region i at
 * @bases[i] (NULL: at the same addresses as this process). */
int vswap_client_add_uffd(struct vswap_client *c, int uffd, void *const *bases);

/* The handler's commands, answered by vswapd as vswap_handler_enable() etc.
 * say (enable: the caller pauses the guest meanwhile). */
int vswap_client_enable(struct vswap_client *c);
int vswap_client_trim(struct vswap_client *c);
int vswap_client_swap_out(struct vswap_client *c);
int vswap_client_disable(struct vswap_client *c, bool slow_file_cleanup);
int vswap_client_status(struct vswap_client *c, struct vswap_status *out);
/* vswap_handler_discard() through vswapd: [addr, addr + len) (this
 * process's addresses of the attached regions, page-aligned) reads zeros
 * from now on, committed when it returns.  Call it before freeing guest
 * memory (MADV_REMOVE of a balloon, a hole punch): a REMOVE event alone is
 * lost if vswapd dies between reading it and committing it, and the old
 * bytes would come back.  -EFAULT: outside every region. */
int vswap_client_discard(struct vswap_client *c, void *addr, size_t len);
/* Wait until the state is @st (at most @timeout_ms, 0..60000): -ETIMEDOUT. */
int vswap_client_wait_state(struct vswap_client *c, enum vswap_state st, int timeout_ms);

/* Detach (vswap_handler_detach(): the pages stay in the store, the guest
 * must be stopped) or exit (vswap_handler_destroy(): everything swapped
 * in); then close and free @c, whatever the result. */
int vswap_client_detach(struct vswap_client *c);
int vswap_client_exit(struct vswap_client *c);

/* Connect again and hand everything over (the guest resumed), trying until
 * opts.reconnect_timeout_ms passed (-ETIMEDOUT).  Automatic unless
 * opts.manual_reconnect. */
int vswap_client_reconnect(struct vswap_client *c);

/* Never waits for a request in flight: a monitoring thread may call it
 * while another thread's command (or the watcher's reconnect) runs. */
struct vswap_client_info {
	bool connected;
	uint64_t reconnects;	       /* resumed by a new vswapd */
	uint64_t last_reconnect_us;    /* end of file seen -> guest resumed */
	uint64_t last_resumed_mono_us; /* CLOCK_MONOTONIC at the last resume */
};
int vswap_client_info(struct vswap_client *c, struct vswap_client_info *out);

#ifdef __cplusplus
}
#endif
#endif /* VSWAP_CLIENT_H */
