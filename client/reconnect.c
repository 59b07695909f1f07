/* SPDX-License-Identifier: MIT */
/*
 * After vswapd died: connect again once a vswapd listens, hand the guest
 * over with the resume flag, and send the last command again if the resumed
 * state shows it unfinished.  The watcher thread notices the end of file
 * without a command in flight (a dead daemon serves no fault, so waiting for
 * the next command would leave the guest stalled).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "client/internal.h"

/* Retry interval while nobody listens: short next to a daemon's start. */
#define DIAL_RETRY_MS 2

/* Errors after which trying again may succeed: nobody listens yet, the dead
 * daemon's store lock is not released yet, the new one died too. */
static bool transient(int rc)
{
	return rc == -ENOENT || rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -EAGAIN ||
	       rc == -EBUSY || rc == -EPIPE;
}

/* Wait @ms or until the client is being closed (1). */
static int pause_ms(struct vswap_client *c, int ms)
{
	struct pollfd p = {.fd = c->stop_efd, .events = POLLIN};
	return poll(&p, 1, ms) > 0 ? 1 : 0;
}

static void replay(struct vswap_client *c, const struct wire_status *st)
{
	bool again = false;
	switch (c->last_cmd) {
	case WIRE_CMD_TRIM:
	case WIRE_CMD_SWAP_OUT:
		again = st->state == VSWAP_STATE_PENDING;
		break;
	case WIRE_CMD_DISABLE:
		again = st->state != VSWAP_STATE_READY;
		break;
	default:
		break;
	}
	if (!again)
		return;
	struct wire_command cmd = {.cmd = c->last_cmd, .arg = c->last_arg};
	struct wire_reply r;
	int rc = client_request(c, WIRE_COMMAND, &cmd, sizeof(cmd), NULL, 0, &r);
	if (rc == 0)
		rc = r.result;
	if (rc < 0 && rc != -EALREADY)
		clog_(c, VSWAP_LOG_WARN, "after the restart, command %u again: %s", c->last_cmd,
		      vswap_strerror(rc));
}

int client_reconnect_locked(struct vswap_client *c, bool want_replay)
{
	if (c->sock >= 0) {
		close(c->sock);
		c->sock = -1;
	}
	if (!c->down_us)
		c->down_us = client_now_us();
	int tmo = c->opts.reconnect_timeout_ms;
	uint64_t deadline = tmo < 0 ? UINT64_MAX : client_now_us() + (uint64_t)tmo * 1000u;
	int rc, last = 0;
	uint64_t resumed = 0;
	for (;;) {
		rc = client_dial(c);
		struct wire_reply r;
		if (rc == 0 && c->attached) {
			rc = client_send_attach(c, true, &r);
			if (rc == 0)
				rc = r.result;
			if (rc == 0) {
				/* Served again from here: the command sent again
				 * below is the VMM's, not part of the restart. */
				resumed = client_now_us();
				if (want_replay && r.has_status)
					replay(c, &r.status);
				break;
			}
		} else if (rc == 0) {
			break;
		}
		if (c->sock >= 0) {
			close(c->sock);
			c->sock = -1;
			client_set_connected(c, false);
		}
		if (!transient(rc))
			break;
		if (rc != last)
			clog_(c, VSWAP_LOG_INFO, "waiting for vswapd: %s", vswap_strerror(rc));
		last = rc;
		if (client_now_us() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		if (pause_ms(c, DIAL_RETRY_MS)) {
			rc = -ESHUTDOWN;
			break;
		}
	}
	if (rc < 0) {
		clog_(c, VSWAP_LOG_ERROR, "reconnect to %s: %s", c->addr.sun_path,
		      vswap_strerror(rc));
		return rc;
	}
	uint64_t now = resumed ? resumed : client_now_us();
	pthread_mutex_lock(&c->info_lock);
	c->info.reconnects++;
	c->info.last_reconnect_us = now - c->down_us;
	c->info.last_resumed_mono_us = now;
	pthread_mutex_unlock(&c->info_lock);
	clog_(c, VSWAP_LOG_INFO, "resumed by vswapd after %llu us",
	      (unsigned long long)(now - c->down_us));
	c->down_us = 0;
	return 0;
}

static void *watch_main(void *arg)
{
	struct vswap_client *c = arg;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		if (c->closing) {
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		int fd = c->sock >= 0 ? dup(c->sock) : -1;
		uint64_t gen = c->gen;
		pthread_mutex_unlock(&c->lock);
		/* POLLIN is not asked for: replies belong to the commands. */
		struct pollfd p[2] = {{.fd = c->stop_efd, .events = POLLIN},
				      {.fd = fd, .events = POLLRDHUP}};
		int n = fd >= 0 ? poll(p, 2, -1) : 0;
		if (fd >= 0)
			close(fd);
		if (n < 0 && errno != EINTR)
			return NULL;
		if (p[0].revents)
			return NULL;
		if (fd >= 0 && !(p[1].revents & (POLLHUP | POLLRDHUP | POLLERR)))
			continue;
		pthread_mutex_lock(&c->lock);
		int rc = 0;
		/* A command may have reconnected meanwhile (gen moved on). */
		if (!c->closing && c->gen == gen && c->attached)
			rc = client_reconnect_locked(c, true);
		pthread_mutex_unlock(&c->lock);
		if (rc == -ESHUTDOWN)
			return NULL;
		if (rc < 0 && pause_ms(c, 1000)) /* gave up for now; the next command tries too */
			return NULL;
	}
}

int client_watch_start(struct vswap_client *c)
{
	if (c->opts.manual_reconnect || c->watching)
		return 0;
	int rc = pthread_create(&c->watcher, NULL, watch_main, c);
	if (rc)
		return -rc;
	c->watching = true;
	return 0;
}

void client_watch_stop(struct vswap_client *c)
{
	uint64_t one = 1;
	pthread_mutex_lock(&c->lock);
	c->closing = true;
	pthread_mutex_unlock(&c->lock);
	if (write(c->stop_efd, &one, sizeof(one)) < 0) {
		/* the counter is far from overflow: cannot fail here */
	}
	if (c->watching)
		pthread_join(c->watcher, NULL);
	c->watching = false;
}
