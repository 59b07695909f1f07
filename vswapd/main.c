/* SPDX-License-Identifier: MIT */
/*
 * vswapd: serves guests' page faults over a Unix socket (vswapd(8)).
 *   vswapd --socket PATH [--staging-dir DIR] [--log-level LEVEL] [--ready-fd FD]
 * A VMM connects with the client (include/vswap/client.h), hands over its
 * memfds, region layout and uffds, and sends commands.  Killed at any
 * instant, the daemon loses nothing: the VMM keeps its descriptors, its
 * faults wait in the kernel, and the next vswapd resumes every guest whose
 * client reconnects.  Stopping it (SIGTERM) is the same as killing it.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tools/common/cli.h"
#include "vswapd/internal.h"

static const struct cli_tool tool = {
    .name = "vswapd",
    .synopsis = "--socket PATH [--staging-dir DIR] [--log-level LEVEL] [--ready-fd FD]\n",
    .help = "Serve guests' page faults over a Unix socket (vswapd(8)).\n\n"
	    "  -s, --socket PATH       the socket to listen on (mode 0600); under systemd\n"
	    "                          socket activation the inherited socket is used and\n"
	    "                          --socket may be left out\n"
	    "  -d, --staging-dir DIR   where the staging files of guests that name none go\n"
	    "                          (default /dev/shm)\n"
	    "  -l, --log-level LEVEL   error, warn, info (default) or debug, on stderr\n"
	    "  -r, --ready-fd FD       write one byte to FD once listening\n" CLI_STANDARD_HELP
	    "\nExit: 1 when the socket cannot be had, 2 usage error; it runs until killed.\n",
    .usage_exit = CLI_EXIT_USAGE,
};

static int parse_level(const char *s, enum vswap_log_level *out)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	for (unsigned i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum vswap_log_level)i;
			return 0;
		}
	return -EINVAL;
}

static int serve(int lfd, const struct daemon_opts *d)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
			    errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				if (errno != EINTR && errno != ECONNABORTED)
					dlog(d->log_level, VSWAP_LOG_ERROR, "accept: %s",
					     strerror(errno));
				continue;
			}
			dlog(d->log_level, VSWAP_LOG_ERROR, "accept: %s", strerror(errno));
			return 1;
		}
		struct conn_args *a = malloc(sizeof(*a));
		pthread_t t;
		if (a) {
			*a = (struct conn_args){fd, d, now_us()};
			if (pthread_create(&t, &attr, conn_main, a) == 0)
				continue;
			free(a);
		}
		dlog(d->log_level, VSWAP_LOG_ERROR, "no thread for a connection: refused");
		close(fd);
	}
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"staging-dir", required_argument, NULL, 'd'},
	    {"log-level", required_argument, NULL, 'l'},
	    {"ready-fd", required_argument, NULL, 'r'},
	    CLI_STANDARD_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	struct orphans orphans;
	orphans_init(&orphans);
	struct daemon_opts d = {.log_level = VSWAP_LOG_INFO, .orphans = &orphans};
	const char *path = NULL;
	int ready_fd = -1, c;
	while ((c = getopt_long(argc, argv, "s:d:l:r:h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'd':
			d.staging_dir = optarg;
			break;
		case 'l':
			if (parse_level(optarg, &d.log_level) < 0)
				return cli_usage_error(&tool,
						       "--log-level error, warn, info or debug");
			break;
		case 'r': {
			uint64_t v;
			if (cli_opt_range(&tool, "ready-fd", optarg, 0, 65535, &v))
				return tool.usage_exit;
			ready_fd = (int)v;
			break;
		}
		default:
			c = cli_standard_option(&tool, c);
			if (c)
				return c > 0 ? CLI_EXIT_OK : tool.usage_exit;
			return cli_usage_error(&tool, "unknown option");
		}
	}
	if (cli_no_operands(&tool, argc, argv))
		return tool.usage_exit;
	/* A VMM that closes its end mid-reply is an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	bool inherited;
	int lfd = listen_socket(path, &inherited);
	if (lfd < 0) {
		fprintf(stderr, "vswapd: socket %s: %s\n", path ? path : "(none given)",
			vswap_strerror(lfd));
		return 1;
	}
	sched_sample_take(&d.start);
	d.listening_us = now_us();
	dlog(d.log_level, VSWAP_LOG_INFO, "listening on %s",
	     inherited ? "the inherited socket" : path);
	if (ready_fd >= 0) {
		if (write(ready_fd, "R", 1) != 1)
			dlog(d.log_level, VSWAP_LOG_WARN, "--ready-fd %d: %s", ready_fd,
			     strerror(errno));
		close(ready_fd);
	}
	return serve(lfd, &d);
}
