/* SPDX-License-Identifier: MIT */
/*
 * The listening socket.  Under systemd socket activation the socket is
 * inherited: LISTEN_PID is this process and LISTEN_FDS counts descriptors
 * from 3 on (sd_listen_fds(3)'s protocol, read without libsystemd); the
 * first that is a Unix SOCK_SEQPACKET listening socket is taken.  Otherwise
 * the socket is bound at the path given, mode 0600, a stale socket file
 * (nobody listening) replaced.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vswapd/internal.h"

#define LISTEN_FDS_START 3

static int inherited_socket(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	if (!pid || !fds)
		return -ENOENT;
	char *end;
	long p = strtol(pid, &end, 10);
	if (*end || p != (long)getpid())
		return -ENOENT;
	long n = strtol(fds, &end, 10);
	if (*end || n <= 0 || n > 64)
		return -ENOENT;
	/* Not for children: the variables name this process. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + n; fd++) {
		int type = 0, acc = 0;
		socklen_t l = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0 || type != SOCK_SEQPACKET)
			continue;
		l = sizeof(acc);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0 || !acc)
			continue;
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		return fd;
	}
	return -ENOTSOCK;
}

/* Is somebody listening at @sa?  Then the path is not ours to replace. */
static bool in_use(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	bool used = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	close(fd);
	return used;
}

int listen_socket(const char *path, bool *inherited)
{
	int fd = inherited_socket();
	*inherited = fd >= 0;
	if (fd >= 0)
		return fd;
	if (!path)
		return -EINVAL;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	struct stat st;
	if (lstat(path, &st) == 0) {
		/* Only a socket nobody answers on is removed. */
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		if (in_use(&sa))
			return -EADDRINUSE;
		if (unlink(path) < 0)
			return -errno;
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* 0600 from the start: no window where another user could connect. */
	mode_t old = umask(0177);
	int rc = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc == 0)
		rc = listen(fd, 64);
	if (rc < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}
