/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tools/common/spawn.h"

/* noinline: the child runs in this function's frame until the exec. */
__attribute__((noinline)) pid_t spawn_daemon(const char *path, char *const *argv, char *const *envp,
					     int lfd, int w, int errfd, char *listen_pid)
{
	pid_t pid = vfork();
	if (pid != 0)
		return pid;
	/* The parent's death ends its daemon (no daemon left behind). */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Out of the way of 3 and 4 first, then into place without
	 * close-on-exec (dup2 clears it; the copies close at exec). */
	int r = fcntl(w, F_DUPFD_CLOEXEC, 10);
	int l = lfd >= 0 ? fcntl(lfd, F_DUPFD_CLOEXEC, 10) : -1;
	int e = errfd >= 0 ? fcntl(errfd, F_DUPFD_CLOEXEC, 10) : -1;
	if (r < 0 || (lfd >= 0 && (l < 0 || dup2(l, 3) != 3)) || dup2(r, 4) != 4 ||
	    (errfd >= 0 && (e < 0 || dup2(e, 2) != 2)))
		_exit(126);
	pid_t me = (pid_t)syscall(SYS_getpid);
	char digits[16];
	int n = 0;
	do
		digits[n++] = (char)('0' + me % 10);
	while ((me /= 10) && n < 15);
	char *q = listen_pid + strlen("LISTEN_PID=");
	while (n)
		*q++ = digits[--n];
	*q = 0;
	execve(path, argv, envp);
	_exit(127);
}

char **spawn_listen_env(char *listen_pid)
{
	extern char **environ;
	size_t ne = 0;
	while (environ[ne])
		ne++;
	char **envp = calloc(ne + 3, sizeof(*envp));
	if (!envp)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < ne; i++)
		if (strncmp(environ[i], "LISTEN_PID=", 11) &&
		    strncmp(environ[i], "LISTEN_FDS=", 11))
			envp[k++] = environ[i];
	envp[k++] = listen_pid;
	envp[k++] = "LISTEN_FDS=1";
	return envp;
}
