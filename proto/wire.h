/* SPDX-License-Identifier: MIT */
/*
 * The vswapd wire protocol, shared by the daemon (vswapd/) and the client
 * (client/).  A Unix SOCK_SEQPACKET socket: one message per packet, so a
 * message's descriptors (SCM_RIGHTS) arrive with it and a short packet is a
 * truncated message, never the start of the next.  docs/PROTOCOL.md
 * describes it for other implementations.
 *
 * Every message starts with struct wire_hdr; all integers are in the host's
 * byte order (both ends are on one machine).  The receiver checks, in this
 * order, and answers a request that fails with a reply carrying the error
 * (the connection stays usable):
 *   a zero-length packet                      -ENODATA
 *   a packet longer than WIRE_MAX_MSG         -EMSGSIZE (MSG_TRUNC)
 *   more descriptors than the receiver takes  -ETOOMANYREFS (MSG_CTRUNC)
 *   shorter than the header                   -EBADMSG
 *   wrong magic                               -EPROTO
 *   a version outside [WIRE_VERSION_MIN, WIRE_VERSION]  -EPROTONOSUPPORT
 *   hdr.len other than the packet's length    -EBADMSG
 *   hdr.nfds other than the descriptors sent  -EBADF
 * then the type's own checks (payload length exactly as its counts say,
 * counts within their limits, values in range): -EINVAL, -E2BIG, -EBADMSG.
 * Descriptors of a refused message are closed.
 *
 * Versions.  Each message says its version; a reply has its request's (an
 * unreadable request's: WIRE_VERSION_MIN).  Version 2 added the full
 * status (struct wire_status: every metric the handler has, counted) and
 * DISCARD; version 1's reply carries twelve metrics (struct
 * wire_reply_v1).  The daemon answers both; the client speaks 2 and names
 * a daemon that answers only 1.
 */
#ifndef VSWAP_PROTO_WIRE_H
#define VSWAP_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <vswap/handler.h>

#define WIRE_MAGIC 0x44575356u /* "VSWD" */
#define WIRE_VERSION 2u	       /* the newest; the client's */
#define WIRE_VERSION_MIN 1u    /* the oldest the daemon answers */
#define WIRE_MAX_MSG 65536u
#define WIRE_MAX_REGIONS 64u
#define WIRE_MAX_UFFDS 16u
#define WIRE_MAX_FDS (WIRE_MAX_REGIONS + WIRE_MAX_UFFDS)
#define WIRE_MAX_PATH 4095u

enum wire_type {
	WIRE_ATTACH = 1,   /* guest memory and uffds; opens or creates the store */
	WIRE_ADD_UFFD = 2, /* one more process's uffd */
	WIRE_COMMAND = 3,  /* enable, trim, ... (struct wire_command) */
	WIRE_DISCARD = 4,  /* version 2: pages dropped durably (struct wire_discard) */
	WIRE_REPLY = 0x80, /* every request gets exactly one, same seq */
};

struct wire_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type; /* enum wire_type */
	uint32_t len;  /* bytes, header included */
	uint32_t nfds; /* descriptors attached */
	uint64_t seq;  /* the request's number, echoed by its reply */
};

/* ATTACH flags. */
#define WIRE_ATTACH_RESUME 1u /* open the existing store and resume (else create) */

/*
 * ATTACH payload: struct wire_attach, then nregions struct wire_region, then
 * nuffds * nregions uint64 addresses (uffd u maps region r at
 * bases[u * nregions + r]), then the store path (path_len bytes, no NUL),
 * then the staging directory (staging_len bytes, may be 0).  Descriptors:
 * nregions memfds, then nuffds uffds.
 */
struct wire_attach {
	uint32_t nregions, nuffds;
	uint32_t flags;
	uint32_t durability; /* enum vswap_durability */
	uint32_t path_len, staging_len;
	uint32_t enable_mode; /* enum vswap_enable_mode */
	uint32_t pad;
};

struct wire_region {
	uint64_t len, offset; /* of the memfd; page-aligned, len > 0 */
};

/* ADD_UFFD payload: struct wire_add_uffd, then nregions uint64 addresses;
 * one descriptor. */
struct wire_add_uffd {
	uint32_t nregions, pad;
};

/* DISCARD payload: pages [first, first + count) of the guest's page space
 * (the regions end to end) read zeros from now on, committed before the
 * reply (vswap_handler_discard(), made durable). */
struct wire_discard {
	uint64_t first, count;
};

enum wire_cmd {
	WIRE_CMD_ENABLE = 1,
	WIRE_CMD_TRIM = 2,
	WIRE_CMD_SWAP_OUT = 3,
	WIRE_CMD_DISABLE = 4, /* arg: 1 = slow file cleanup */
	WIRE_CMD_STATUS = 5,
	WIRE_CMD_DETACH = 6,	 /* leave the pages in the store, free the guest */
	WIRE_CMD_EXIT = 7,	 /* swap everything in, unregister, free the guest */
	WIRE_CMD_WAIT_STATE = 8, /* arg: the state; timeout_ms at most 60000 */
};

struct wire_command {
	uint32_t cmd;
	uint32_t arg;
	int32_t timeout_ms;
	uint32_t pad;
};

/* The metrics, in struct vswap_metrics's order. */
#define WIRE_METRICS 14u
#define WIRE_METRICS_V1 12u /* version 1: up to commits */

struct wire_status {
	uint32_t state;
	int32_t last_error;
	uint32_t uffds;
	uint32_t enable_mode; /* enum vswap_enable_mode: COPY or PROTECT */
	uint32_t nmetrics;    /* metrics[] meaningful: WIRE_METRICS */
	uint32_t pad;
	uint64_t metrics[WIRE_METRICS];
	uint64_t trans_pages, trans_ms;
};

struct wire_reply {
	int32_t result; /* 0 or a negative errno */
	uint32_t has_status;
	struct wire_status status;
};

/* Version 1's status and reply. */
struct wire_status_v1 {
	uint32_t state;
	int32_t last_error;
	uint32_t uffds;
	uint32_t enable_mode;
	uint64_t metrics[WIRE_METRICS_V1];
	uint64_t trans_pages, trans_ms;
};

struct wire_reply_v1 {
	int32_t result;
	uint32_t has_status;
	struct wire_status_v1 status;
};

/* Send one message; @hdr's magic, len and nfds are filled in, and its
 * version if 0 (WIRE_VERSION).
 * MSG_NOSIGNAL: a closed peer is -EPIPE, never SIGPIPE. */
int wire_send(int sock, struct wire_hdr *hdr, const void *payload, size_t len, const int *fds,
	      unsigned nfds);

/*
 * Receive one message into @buf (WIRE_MAX_MSG bytes) and its descriptors
 * into @fds (at most @maxfds, close-on-exec).  Returns the message's length
 * with the header checked, 0 at end of file, or one of the errors above
 * (the descriptors already closed; *@hdr filled as far as it could be read,
 * hdr->seq 0 if not even that).
 */
int wire_recv(int sock, void *buf, int *fds, unsigned maxfds, unsigned *nfds, struct wire_hdr *hdr);

void wire_status_from(struct wire_status *w, const struct vswap_status *st);
void wire_status_to(struct vswap_status *st, const struct wire_status *w);
/* Version 1's twelve metrics. */
void wire_status_v1_from(struct wire_status_v1 *w, const struct wire_status *st);

#endif
