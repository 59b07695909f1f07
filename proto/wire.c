/* SPDX-License-Identifier: MIT */
/* Framing of the vswapd protocol: one checked message per packet. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/wire.h"

int wire_send(int sock, struct wire_hdr *hdr, const void *payload, size_t len, const int *fds,
	      unsigned nfds)
{
	if (len > WIRE_MAX_MSG - sizeof(*hdr) || nfds > WIRE_MAX_FDS)
		return -EMSGSIZE;
	hdr->magic = WIRE_MAGIC;
	if (!hdr->version)
		hdr->version = WIRE_VERSION;
	hdr->len = (uint32_t)(sizeof(*hdr) + len);
	hdr->nfds = nfds;
	struct iovec iov[2] = {{hdr, sizeof(*hdr)}, {(void *)payload, len}};
	union {
		char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
	if (nfds) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n >= 0)
			return n == (ssize_t)hdr->len ? 0 : -EMSGSIZE;
		if (errno != EINTR)
			return -errno;
	}
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

/* The descriptors of every SCM_RIGHTS block, up to @maxfds kept; the rest
 * closed (then *over). */
static unsigned take_fds(struct msghdr *mh, int *fds, unsigned maxfds, bool *over)
{
	unsigned n = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const unsigned char *p = CMSG_DATA(c);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, p + i * sizeof(int), sizeof(int));
			if (n < maxfds)
				fds[n++] = fd;
			else {
				close(fd);
				*over = true;
			}
		}
	}
	return n;
}

/* recv() returned 0: the peer's end of file, or a zero-length packet. */
static bool peer_closed(int sock)
{
	struct pollfd p = {.fd = sock, .events = POLLIN | POLLRDHUP};
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP));
}

int wire_recv(int sock, void *buf, int *fds, unsigned maxfds, unsigned *nfds, struct wire_hdr *hdr)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {buf, WIRE_MAX_MSG};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf)};
	*nfds = 0;
	memset(hdr, 0, sizeof(*hdr));
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	bool over = false;
	unsigned got = take_fds(&mh, fds, maxfds, &over);
	int err = 0;
	if (n == 0 && got == 0 && peer_closed(sock))
		return 0;
	if (n == 0)
		err = -ENODATA;
	else if (mh.msg_flags & MSG_TRUNC)
		err = -EMSGSIZE;
	else if ((mh.msg_flags & MSG_CTRUNC) || over)
		err = -ETOOMANYREFS;
	else if ((size_t)n < sizeof(*hdr))
		err = -EBADMSG;
	if (n >= (ssize_t)sizeof(*hdr))
		memcpy(hdr, buf, sizeof(*hdr)); /* seq for the error reply */
	if (!err) {
		if (hdr->magic != WIRE_MAGIC)
			err = -EPROTO;
		else if (hdr->version < WIRE_VERSION_MIN || hdr->version > WIRE_VERSION)
			err = -EPROTONOSUPPORT;
		else if (hdr->len != (uint64_t)n)
			err = -EBADMSG;
		else if (hdr->nfds != got)
			err = -EBADF;
	}
	if (err) {
		close_fds(fds, got);
		return err;
	}
	*nfds = got;
	return (int)n;
}

void wire_status_from(struct wire_status *w, const struct vswap_status *st)
{
	const struct vswap_metrics *m = &st->metrics;
	*w = (struct wire_status){
	    .state = (uint32_t)st->state,
	    .last_error = st->last_error,
	    .uffds = st->uffds,
	    .enable_mode = (uint32_t)st->enable_mode,
	    .nmetrics = WIRE_METRICS,
	    .metrics = {m->resident_pages, m->copied_from_file_pages, m->copied_from_staging_pages,
			m->zeroed_pages, m->redundant_pages, m->staging_pages, m->swap_pages,
			m->checksum_failures, m->poisoned_pages, m->bytes_written, m->bytes_read,
			m->commits, m->protected_pages, m->dirtied_pages},
	    .trans_pages = st->transition.pages,
	    .trans_ms = st->transition.time_ms,
	};
}

void wire_status_to(struct vswap_status *st, const struct wire_status *w)
{
	/* A later version may count more metrics than this one knows, an
	 * earlier one fewer: those it does not send read 0. */
	uint64_t v[WIRE_METRICS] = {0};
	unsigned n = w->nmetrics < WIRE_METRICS ? w->nmetrics : WIRE_METRICS;
	memcpy(v, w->metrics, n * sizeof(v[0]));
	*st = (struct vswap_status){
	    .state = (enum vswap_state)w->state,
	    .metrics = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11],
			v[12], v[13]},
	    .transition = {w->trans_pages, w->trans_ms},
	    .last_error = w->last_error,
	    .uffds = w->uffds,
	    .enable_mode = (enum vswap_enable_mode)w->enable_mode,
	};
}

void wire_status_v1_from(struct wire_status_v1 *w, const struct wire_status *st)
{
	*w = (struct wire_status_v1){
	    .state = st->state,
	    .last_error = st->last_error,
	    .uffds = st->uffds,
	    .enable_mode = st->enable_mode,
	    .trans_pages = st->trans_pages,
	    .trans_ms = st->trans_ms,
	};
	memcpy(w->metrics, st->metrics, sizeof(w->metrics));
}
