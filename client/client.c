/* SPDX-License-Identifier: MIT */
/* The client's public functions: connect, hand over, commands, the end. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/internal.h"

uint64_t client_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void clog_(const struct vswap_client *c, enum vswap_log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	logger_vprintf(&c->log, lvl, fmt, ap);
	va_end(ap);
}

static void client_free(struct vswap_client *c)
{
	if (c->sock >= 0)
		close(c->sock);
	for (unsigned i = 0; i < c->nregions; i++)
		close(c->memfds[i]);
	for (unsigned u = 0; u < c->nuffds; u++)
		close(c->uffds[u].fd);
	if (c->stop_efd >= 0)
		close(c->stop_efd);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->info_lock);
	free(c->store_path);
	free(c->staging_dir);
	free(c);
}

int vswap_client_connect(const char *socket_path, const struct vswap_client_opts *opts,
			 struct vswap_client **out)
{
	static const uint64_t zero[sizeof(opts->reserved) / 8]; /* the options' reserved space */
	if (!socket_path || !opts || !opts->store_path || !*opts->store_path || !out ||
	    memcmp(opts->reserved, zero, sizeof(zero)) != 0)
		return -EINVAL;
	if (strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	if (strlen(opts->store_path) > WIRE_MAX_PATH ||
	    (opts->staging_dir && strlen(opts->staging_dir) > WIRE_MAX_PATH))
		return -ENAMETOOLONG;
	struct vswap_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->sock = -1;
	c->opts = *opts;
	if (!c->opts.reconnect_timeout_ms)
		c->opts.reconnect_timeout_ms = 30000;
	if (c->opts.reply_timeout_ms <= 0)
		c->opts.reply_timeout_ms = 120000;
	c->log = logger_make("client", c->opts.log, c->opts.log_ctx, c->opts.log_level);
	c->addr.sun_family = AF_UNIX;
	strcpy(c->addr.sun_path, socket_path);
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->info_lock, NULL);
	c->store_path = strdup(opts->store_path);
	c->staging_dir = opts->staging_dir ? strdup(opts->staging_dir) : NULL;
	c->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int rc = !c->store_path || (opts->staging_dir && !c->staging_dir) ? -ENOMEM
		 : c->stop_efd < 0					  ? -errno
									  : client_dial(c);
	if (rc < 0) {
		client_free(c);
		return rc;
	}
	/* The daemon refuses a peer it does not trust by closing at once;
	 * that shows at the first request as -ECONNRESET. */
	*out = c;
	return 0;
}

/* A request that survives a restart: on a lost connection, reconnect (the
 * guest resumed) and send it again.  @replay: send the last state command
 * again first where the resumed state shows it unfinished (not when the
 * request is itself a state command: it supersedes the last one). */
static int request_retry(struct vswap_client *c, uint16_t type, const void *p, size_t len,
			 const int *fds, unsigned nfds, struct wire_reply *r, bool replay)
{
	for (;;) {
		int rc = client_request(c, type, p, len, fds, nfds, r);
		if (rc != -ECONNRESET || !c->attached || c->opts.manual_reconnect)
			return rc;
		rc = client_reconnect_locked(c, replay);
		if (rc < 0)
			return rc;
	}
}

static int seal_shrink(int memfd)
{
	int seals = fcntl(memfd, F_GET_SEALS);
	if (seals >= 0 && (seals & F_SEAL_SHRINK))
		return 0;
	if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		return errno == EINVAL ? -EINVAL : -EPERM;
	return 0;
}

static int keep_uffd(struct vswap_client *c, int uffd, void *const *bases)
{
	if (c->nuffds == WIRE_MAX_UFFDS)
		return -E2BIG;
	int fd = fcntl(uffd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct client_uffd *u = &c->uffds[c->nuffds++];
	u->fd = fd;
	for (unsigned i = 0; i < c->nregions; i++)
		u->bases[i] = (uint64_t)(uintptr_t)bases[i];
	return 0;
}

int vswap_client_attach(struct vswap_client *c, const struct vswap_region *regions, unsigned n,
			int uffd)
{
	if (!c || !regions || !n || uffd < 0)
		return -EINVAL;
	if (n > WIRE_MAX_REGIONS)
		return -E2BIG;
	pthread_mutex_lock(&c->lock);
	int rc = c->attached || c->nregions ? -EISCONN : 0;
	void *bases[WIRE_MAX_REGIONS];
	for (unsigned i = 0; i < n && rc == 0; i++) {
		if (regions[i].memfd < 0 || regions[i].offset < 0 || !regions[i].len) {
			rc = -EINVAL;
			break;
		}
		rc = seal_shrink(regions[i].memfd);
		if (rc < 0) {
			clog_(c, VSWAP_LOG_ERROR,
			      "region %u: its memfd cannot be sealed against shrinking "
			      "(create it with MFD_ALLOW_SEALING)",
			      i);
			break;
		}
		int fd = fcntl(regions[i].memfd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
			break;
		}
		c->memfds[c->nregions] = fd;
		c->regions[c->nregions++] =
		    (struct wire_region){regions[i].len, (uint64_t)regions[i].offset};
		bases[i] = regions[i].addr;
	}
	if (rc == 0)
		rc = keep_uffd(c, uffd, bases);
	struct wire_reply r;
	if (rc == 0) {
		rc = client_send_attach(c, c->opts.resume, &r);
		if (rc == -ECONNRESET && !c->opts.manual_reconnect) {
			/* Died during the hand-over: the store may exist now. */
			c->attached = true;
			rc = client_reconnect_locked(c, false);
			if (rc == -ENOENT && !c->opts.resume && client_dial(c) == 0) {
				/* It did not: create it now. */
				rc = client_send_attach(c, false, &r);
				if (rc == 0)
					rc = r.result;
			}
		} else if (rc == 0) {
			rc = r.result;
		}
	}
	if (rc == 0) {
		c->attached = true;
		rc = client_watch_start(c);
	} else {
		c->attached = false;
		for (unsigned i = 0; i < c->nregions; i++)
			close(c->memfds[i]);
		for (unsigned u = 0; u < c->nuffds; u++)
			close(c->uffds[u].fd);
		c->nregions = c->nuffds = 0;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int vswap_client_add_uffd(struct vswap_client *c, int uffd, void *const *bases)
{
	if (!c || uffd < 0)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	void *own[WIRE_MAX_REGIONS];
	for (unsigned i = 0; i < c->nregions; i++)
		own[i] = bases ? bases[i] : (void *)(uintptr_t)c->uffds[0].bases[i];
	int rc = c->attached ? keep_uffd(c, uffd, own) : -ENOTCONN;
	if (rc == 0) {
		struct client_uffd *u = &c->uffds[c->nuffds - 1];
		uint8_t p[sizeof(struct wire_add_uffd) + WIRE_MAX_REGIONS * sizeof(uint64_t)];
		struct wire_add_uffd a = {.nregions = c->nregions};
		memcpy(p, &a, sizeof(a));
		memcpy(p + sizeof(a), u->bases, c->nregions * sizeof(uint64_t));
		struct wire_reply r;
		/* Lost connection: the reconnect's attach hands every kept
		 * uffd over, this one included, so it is not sent again. */
		uint64_t gen = c->gen;
		rc = client_request(c, WIRE_ADD_UFFD, p, sizeof(a) + c->nregions * sizeof(uint64_t),
				    &u->fd, 1, &r);
		if (rc == -ECONNRESET && !c->opts.manual_reconnect)
			rc = client_reconnect_locked(c, false); /* the attach carried it */
		else if (rc == 0)
			rc = r.result;
		if (rc < 0 && c->gen == gen) {
			close(u->fd);
			c->nuffds--;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int command(struct vswap_client *c, uint32_t cmd, uint32_t arg, int timeout_ms,
		   struct vswap_status *st)
{
	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int rc = c->attached ? 0 : -ENOTCONN;
	struct wire_reply r = {0};
	if (rc == 0) {
		bool state_cmd = cmd == WIRE_CMD_TRIM || cmd == WIRE_CMD_SWAP_OUT ||
				 cmd == WIRE_CMD_DISABLE || cmd == WIRE_CMD_ENABLE;
		if (state_cmd) {
			c->last_cmd = cmd;
			c->last_arg = arg;
		}
		struct wire_command w = {.cmd = cmd, .arg = arg, .timeout_ms = timeout_ms};
		rc = request_retry(c, WIRE_COMMAND, &w, sizeof(w), NULL, 0, &r, !state_cmd);
		if (rc == 0)
			rc = r.result;
	}
	if (st && r.has_status)
		wire_status_to(st, &r.status);
	else if (st && rc == 0)
		rc = -ENODATA;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int vswap_client_enable(struct vswap_client *c)
{
	return command(c, WIRE_CMD_ENABLE, 0, 0, NULL);
}

int vswap_client_trim(struct vswap_client *c)
{
	return command(c, WIRE_CMD_TRIM, 0, 0, NULL);
}

int vswap_client_swap_out(struct vswap_client *c)
{
	return command(c, WIRE_CMD_SWAP_OUT, 0, 0, NULL);
}

int vswap_client_disable(struct vswap_client *c, bool slow_file_cleanup)
{
	return command(c, WIRE_CMD_DISABLE, slow_file_cleanup, 0, NULL);
}

int vswap_client_discard(struct vswap_client *c, void *addr, size_t len)
{
	if (!c || !len)
		return -EINVAL;
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)addr;
	if ((a | len) & (ps - 1) || a + len < a)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int rc = c->attached ? 0 : -ENOTCONN;
	/* This process's addresses (the attach's) to the guest's page space,
	 * one request per region the range meets. */
	uint64_t first = 0;
	bool met = false;
	for (unsigned i = 0; i < c->nregions && rc == 0; i++) {
		uintptr_t base = (uintptr_t)c->uffds[0].bases[i], end = base + c->regions[i].len;
		uintptr_t s = a > base ? a : base, e = a + len < end ? a + len : end;
		if (s < e) {
			met = true;
			struct wire_discard d = {first + (s - base) / ps, (e - s) / ps};
			struct wire_reply r;
			rc = request_retry(c, WIRE_DISCARD, &d, sizeof(d), NULL, 0, &r, true);
			if (rc == 0)
				rc = r.result;
		}
		first += c->regions[i].len / ps;
	}
	if (rc == 0 && !met)
		rc = -EFAULT;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int vswap_client_status(struct vswap_client *c, struct vswap_status *out)
{
	if (!out)
		return -EINVAL;
	return command(c, WIRE_CMD_STATUS, 0, 0, out);
}

int vswap_client_wait_state(struct vswap_client *c, enum vswap_state st, int timeout_ms)
{
	if (timeout_ms < 0 || timeout_ms > 60000)
		return -EINVAL;
	return command(c, WIRE_CMD_WAIT_STATE, (uint32_t)st, timeout_ms, NULL);
}

static int finish(struct vswap_client *c, uint32_t cmd)
{
	if (!c)
		return -EINVAL;
	client_watch_stop(c);
	uint64_t v;
	if (read(c->stop_efd, &v, sizeof(v)) < 0) {
		/* nothing to reset: the watcher never ran */
	}
	int rc = c->attached ? command(c, cmd, 0, 0, NULL) : 0;
	client_free(c);
	return rc;
}

int vswap_client_detach(struct vswap_client *c)
{
	return finish(c, WIRE_CMD_DETACH);
}

int vswap_client_exit(struct vswap_client *c)
{
	return finish(c, WIRE_CMD_EXIT);
}

int vswap_client_reconnect(struct vswap_client *c)
{
	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int rc = client_reconnect_locked(c, true);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int vswap_client_info(struct vswap_client *c, struct vswap_client_info *out)
{
	if (!c || !out)
		return -EINVAL;
	pthread_mutex_lock(&c->info_lock);
	*out = c->info;
	pthread_mutex_unlock(&c->info_lock);
	return 0;
}

void client_set_connected(struct vswap_client *c, bool connected)
{
	pthread_mutex_lock(&c->info_lock);
	c->info.connected = connected;
	pthread_mutex_unlock(&c->info_lock);
}
