/* SPDX-License-Identifier: MIT */
/* Requests on the connection: framing through proto/, replies matched by
 * their sequence number. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/internal.h"

static void drop(struct vswap_client *c)
{
	if (c->sock >= 0)
		close(c->sock);
	c->sock = -1;
	client_set_connected(c, false);
	if (!c->down_us)
		c->down_us = client_now_us();
}

int client_dial(struct vswap_client *c)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&c->addr, sizeof(c->addr)) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	c->sock = fd;
	c->gen++;
	client_set_connected(c, true);
	return 0;
}

/* What a request is, for a message naming what was waited for. */
static const char *request_name(uint16_t type, const void *payload, size_t len)
{
	static const char *const cmds[] = {
	    "?", "enable", "trim", "swap-out", "disable", "status", "detach", "exit", "wait-state",
	};
	if (type == WIRE_ATTACH)
		return "attach";
	if (type == WIRE_ADD_UFFD)
		return "add-uffd";
	if (type == WIRE_DISCARD)
		return "discard";
	if (type == WIRE_COMMAND && len >= sizeof(struct wire_command)) {
		struct wire_command w;
		memcpy(&w, payload, sizeof(w));
		if (w.cmd < sizeof(cmds) / sizeof(cmds[0]))
			return cmds[w.cmd];
	}
	return "request";
}

/* How long @payload's reply may take: the reply timeout, plus a state
 * wait's own timeout. */
static int reply_budget_ms(const struct vswap_client *c, uint16_t type, const void *payload,
			   size_t len)
{
	int ms = c->opts.reply_timeout_ms;
	if (type == WIRE_COMMAND && len >= sizeof(struct wire_command)) {
		struct wire_command w;
		memcpy(&w, payload, sizeof(w));
		if (w.cmd == WIRE_CMD_WAIT_STATE && w.timeout_ms > 0)
			ms += w.timeout_ms;
	}
	return ms;
}

/* Wait until the socket has something to read, at most until @deadline_us:
 * 0, or -ETIMEDOUT.  Hang-ups count as readable (recvmsg sees them). */
static int wait_readable(int sock, uint64_t deadline_us)
{
	for (;;) {
		uint64_t now = client_now_us();
		if (now >= deadline_us)
			return -ETIMEDOUT;
		uint64_t left = (deadline_us - now + 999) / 1000;
		struct pollfd p = {.fd = sock, .events = POLLIN};
		int n = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int client_request(struct vswap_client *c, uint16_t type, const void *payload, size_t len,
		   const int *fds, unsigned nfds, struct wire_reply *r)
{
	if (c->sock < 0)
		return -ECONNRESET;
	struct wire_hdr h = {.type = type, .seq = ++c->seq};
	int rc = wire_send(c->sock, &h, payload, len, fds, nfds);
	if (rc < 0) {
		drop(c);
		return rc == -EPIPE || rc == -ECONNRESET || rc == -ENOTCONN ? -ECONNRESET : rc;
	}
	uint8_t *buf = malloc(WIRE_MAX_MSG);
	if (!buf)
		return -ENOMEM;
	int budget = reply_budget_ms(c, type, payload, len);
	uint64_t deadline = client_now_us() + (uint64_t)budget * 1000u;
	for (;;) {
		int rfds[WIRE_MAX_FDS];
		unsigned n;
		struct wire_hdr rh;
		rc = wait_readable(c->sock, deadline);
		if (rc < 0) {
			/* Alive but silent (stopped, stuck): the caller hears of
			 * it instead of waiting forever.  The connection stays;
			 * the late reply is skipped by its sequence number. */
			clog_(c, VSWAP_LOG_ERROR,
			      "no reply from vswapd to %s (request %llu) in %d ms%s",
			      request_name(type, payload, len), (unsigned long long)h.seq, budget,
			      rc == -ETIMEDOUT ? "" : ": poll failed");
			break;
		}
		rc = wire_recv(c->sock, buf, rfds, WIRE_MAX_FDS, &n, &rh);
		for (unsigned i = 0; i < n; i++) /* a reply carries none */
			close(rfds[i]);
		if (rc <= 0 && rc != -ENODATA && rc != -EBADMSG && rc != -EPROTO &&
		    rc != -EPROTONOSUPPORT && rc != -EMSGSIZE && rc != -ETOOMANYREFS &&
		    rc != -EBADF) {
			/* End of file or a broken socket: vswapd is gone. */
			drop(c);
			rc = -ECONNRESET;
			break;
		}
		if (rc > 0 && rh.type == WIRE_REPLY && rh.version < WIRE_VERSION &&
		    rh.len == sizeof(rh) + sizeof(struct wire_reply_v1)) {
			/* An older daemon: it answers this version's requests
			 * with -EPROTONOSUPPORT in its own. */
			struct wire_reply_v1 r1;
			memcpy(&r1, buf + sizeof(rh), sizeof(r1));
			clog_(c, VSWAP_LOG_ERROR,
			      "vswapd at %s speaks protocol version %u; this client needs %u "
			      "(upgrade vswapd): %s",
			      c->addr.sun_path, rh.version, WIRE_VERSION,
			      vswap_strerror(r1.result));
			drop(c);
			rc = -EPROTONOSUPPORT;
			break;
		}
		if (rc < 0 || rh.type != WIRE_REPLY || rh.version != WIRE_VERSION ||
		    rh.len != sizeof(rh) + sizeof(*r)) {
			/* Not a reply we can read: the daemon speaks
			 * something else.  Drop the connection. */
			clog_(c, VSWAP_LOG_ERROR, "malformed reply from vswapd: %s",
			      rc < 0 ? vswap_strerror(rc) : "wrong type or length");
			drop(c);
			rc = -EPROTO;
			break;
		}
		if (rh.seq != h.seq)
			continue; /* an answer to a request given up on */
		memcpy(r, buf + sizeof(rh), sizeof(*r));
		rc = 0;
		break;
	}
	free(buf);
	return rc;
}

int client_send_attach(struct vswap_client *c, bool resume, struct wire_reply *r)
{
	size_t plen = strlen(c->store_path), slen = c->staging_dir ? strlen(c->staging_dir) : 0;
	struct wire_attach a = {
	    .nregions = c->nregions,
	    .nuffds = c->nuffds,
	    .flags = resume ? WIRE_ATTACH_RESUME : 0,
	    .durability = (uint32_t)c->opts.durability,
	    .path_len = (uint32_t)plen,
	    .staging_len = (uint32_t)slen,
	    .enable_mode = (uint32_t)c->opts.enable_mode,
	};
	size_t len = sizeof(a) + c->nregions * sizeof(struct wire_region) +
		     (size_t)c->nuffds * c->nregions * sizeof(uint64_t) + plen + slen;
	if (len > WIRE_MAX_MSG - sizeof(struct wire_hdr))
		return -ENAMETOOLONG;
	uint8_t *p = malloc(len), *q = p;
	if (!p)
		return -ENOMEM;
	memcpy(q, &a, sizeof(a));
	q += sizeof(a);
	memcpy(q, c->regions, c->nregions * sizeof(struct wire_region));
	q += c->nregions * sizeof(struct wire_region);
	int fds[WIRE_MAX_FDS];
	for (unsigned i = 0; i < c->nregions; i++)
		fds[i] = c->memfds[i];
	for (unsigned u = 0; u < c->nuffds; u++) {
		memcpy(q, c->uffds[u].bases, c->nregions * sizeof(uint64_t));
		q += c->nregions * sizeof(uint64_t);
		fds[c->nregions + u] = c->uffds[u].fd;
	}
	memcpy(q, c->store_path, plen);
	if (slen)
		memcpy(q + plen, c->staging_dir, slen);
	int rc = client_request(c, WIRE_ATTACH, p, len, fds, c->nregions + c->nuffds, r);
	free(p);
	return rc;
}
