/* SPDX-License-Identifier: MIT */
/*
 * One connection: its peer's credentials checked, then requests answered in
 * order until end of file.  Every request gets exactly one reply, an error
 * for anything malformed (the connection stays usable).  The end of file
 * is not a detach: a VMM that exited has its guest freed, and a VMM whose
 * memory lives on (it closed its connection, or the process that connected
 * was not the one that owns the memory) keeps its guest served as an
 * orphan (orphans.c).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vswapd/internal.h"

/* Same user as the daemon, or root. */
static int peer_allowed(int fd, const struct daemon_opts *d)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	if (cr.uid == 0 || cr.uid == geteuid())
		return 0;
	dlog(d->log_level, VSWAP_LOG_WARN, "refused pid %ld uid %ld: not root or uid %ld",
	     (long)cr.pid, (long)cr.uid, (long)geteuid());
	return -EACCES;
}

/* The reply to request @seq, in the request's @version (a version-1 peer
 * gets version 1's twelve metrics). */
static int reply(int fd, uint64_t seq, uint16_t version, int result, const struct guest *g)
{
	struct wire_reply r = {.result = result};
	struct vswap_status st;
	if (g->h && vswap_handler_status(g->h, &st) == 0) {
		wire_status_from(&r.status, &st);
		r.has_status = 1;
	}
	struct wire_hdr h = {.type = WIRE_REPLY, .seq = seq, .version = version};
	if (version >= 2)
		return wire_send(fd, &h, &r, sizeof(r), NULL, 0);
	struct wire_reply_v1 r1 = {.result = r.result, .has_status = r.has_status};
	wire_status_v1_from(&r1.status, &r.status);
	return wire_send(fd, &h, &r1, sizeof(r1), NULL, 0);
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

static int dispatch(struct guest *g, const struct wire_hdr *h, const uint8_t *msg, int *fds,
		    unsigned nfds)
{
	const uint8_t *payload = msg + sizeof(*h);
	size_t len = h->len - sizeof(*h);
	switch (h->type) {
	case WIRE_ATTACH:
		sched_sample_take(&g->times.before);
		return guest_attach(g, payload, len, fds, nfds);
	case WIRE_ADD_UFFD:
		if (nfds != 1) {
			close_fds(fds, nfds);
			return -EBADF;
		}
		return guest_add_uffd(g, payload, len, fds[0]);
	case WIRE_COMMAND: {
		close_fds(fds, nfds);
		if (nfds)
			return -EBADF;
		struct wire_command c;
		if (len != sizeof(c))
			return -EBADMSG;
		memcpy(&c, payload, sizeof(c));
		return guest_command(g, &c);
	}
	case WIRE_DISCARD: {
		close_fds(fds, nfds);
		if (h->version < 2) /* no such type in version 1 */
			return -EOPNOTSUPP;
		if (nfds)
			return -EBADF;
		struct wire_discard d;
		if (len != sizeof(d))
			return -EBADMSG;
		memcpy(&d, payload, sizeof(d));
		return guest_discard(g, &d);
	}
	default:
		close_fds(fds, nfds);
		return -EOPNOTSUPP;
	}
}

/*
 * A resume's figures, after its reply (reading the scheduler's counts is
 * not part of the restart): each step's wall time, and the CPU time and
 * run-queue wait of all the daemon's threads over the attach and over its
 * start.  One line, for the operator and for the kill tests, which
 * attribute a slow restart with it.
 */
static void log_restart(const struct conn_args *a, const struct guest *g, uint64_t replied_us)
{
	struct sched_sample now;
	sched_sample_take(&now);
	const struct attach_times *t = &g->times;
	const struct sched_sample *s = &a->d->start;
	dlog(a->d->log_level, VSWAP_LOG_INFO,
	     "%s: restart figures: pid %d, start cpu %llu us wait %llu us, accept->attach %llu "
	     "us, attach %llu us (map %llu, takeover %llu, open %llu, handler %llu, uffds %llu, "
	     "resume %llu), attach cpu %llu us wait %llu us, step cpu (open %llu, handler %llu, "
	     "uffds %llu, resume %llu), at (listening %llu, accepted %llu, replied %llu)",
	     g->path, (int)getpid(), (unsigned long long)(s->cpu_ns / 1000),
	     (unsigned long long)(s->wait_ns / 1000), (unsigned long long)t->accept_to_attach,
	     (unsigned long long)t->total, (unsigned long long)t->map,
	     (unsigned long long)t->takeover, (unsigned long long)t->open,
	     (unsigned long long)t->handler, (unsigned long long)t->uffds,
	     (unsigned long long)t->resume,
	     (unsigned long long)((now.cpu_ns - t->before.cpu_ns) / 1000),
	     (unsigned long long)((now.wait_ns - t->before.wait_ns) / 1000),
	     (unsigned long long)t->open_cpu, (unsigned long long)t->handler_cpu,
	     (unsigned long long)t->uffds_cpu, (unsigned long long)t->resume_cpu,
	     (unsigned long long)a->d->listening_us, (unsigned long long)t->accepted_at,
	     (unsigned long long)replied_us);
}

/* How often an orphan asks whether its VMM still exists: an exit raises no
 * event on a uffd, and a dead VMM's guest only holds memory meanwhile. */
#define ORPHAN_PROBE_MS 1000

/* The connection closed with the guest attached. */
static void guest_orphaned(const struct daemon_opts *d, struct guest *g)
{
	if (!guest_vmm_alive(g)) {
		guest_abandon(g);
		return;
	}
	struct orphan o;
	if (orphan_enter(d->orphans, &o, g->dev, g->ino) < 0) {
		dlog(d->log_level, VSWAP_LOG_WARN,
		     "%s: the VMM closed its connection without detaching: its faults wait for "
		     "its next attach",
		     g->path);
		guest_release(g);
		return;
	}
	dlog(d->log_level, VSWAP_LOG_WARN,
	     "%s: the VMM closed its connection without detaching: its guest is still served "
	     "until it attaches again or exits",
	     g->path);
	for (;;) {
		struct pollfd p = {.fd = o.efd, .events = POLLIN};
		int n = poll(&p, 1, ORPHAN_PROBE_MS);
		if (n > 0) {
			guest_release(g);
			orphan_released(d->orphans, &o);
			break;
		}
		if (!guest_vmm_alive(g) && orphan_leave(d->orphans, &o)) {
			guest_abandon(g);
			break;
		}
	}
	close(o.efd);
}

void *conn_main(void *arg)
{
	struct conn_args a = *(struct conn_args *)arg;
	free(arg);
	uint8_t *msg = malloc(WIRE_MAX_MSG);
	struct guest *g = calloc(1, sizeof(*g));
	if (!msg || !g || peer_allowed(a.fd, a.d) < 0)
		goto out;
	g->d = a.d;
	unsigned nreq = 0;
	for (;;) {
		int fds[WIRE_MAX_FDS];
		unsigned nfds;
		struct wire_hdr h;
		int n = wire_recv(a.fd, msg, fds, WIRE_MAX_FDS, &nfds, &h);
		if (n == 0)
			break;
		if (!nreq++) {
			g->times.accepted_at = a.accepted_us;
			g->times.accept_to_attach = now_us() - a.accepted_us;
		}
		int rc;
		if (n < 0) {
			if (n == -ECONNRESET || n == -ENOTCONN)
				break;
			dlog(a.d->log_level, VSWAP_LOG_WARN, "malformed request: %s",
			     vswap_strerror(n));
			rc = n;
		} else {
			rc = dispatch(g, &h, msg, fds, nfds);
		}
		/* An unreadable version is answered in the oldest, which
		 * every peer reads. */
		uint16_t v = h.version >= WIRE_VERSION_MIN && h.version <= WIRE_VERSION
				 ? h.version
				 : WIRE_VERSION_MIN;
		bool resumed = n > 0 && h.type == WIRE_ATTACH && rc == 0 && g->resumed;
		if (reply(a.fd, h.seq, v, rc, g) < 0)
			break;
		if (resumed)
			log_restart(&a, g, now_us());
	}
	if (guest_attached(g))
		guest_orphaned(a.d, g);
out:
	close(a.fd);
	free(g);
	free(msg);
	return NULL;
}
