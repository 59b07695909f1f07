/* SPDX-License-Identifier: MIT */
/* Starting vswapd the way a small launcher (systemd) does, shared by
 * vswap-bench and the test suites' daemon fixture. */
#ifndef VSWAP_TOOLS_SPAWN_H
#define VSWAP_TOOLS_SPAWN_H

#include <sys/types.h>

/* vfork, then in the child: @lfd (if >= 0) at fd 3 and @w at fd 4 without
 * close-on-exec, @errfd (if >= 0) as its stderr, this child's pid written after "LISTEN_PID=" in
 * @listen_pid, exec @path with @argv and @envp.  vfork, not fork: a fork
 * copies the caller's page tables, tens to hundreds of milliseconds with a
 * 1 GiB guest mapped, which a restart figure would then include.  Returns
 * the child's pid or -1 (errno set). */
pid_t spawn_daemon(const char *path, char *const *argv, char *const *envp, int lfd, int w,
		   int errfd, char *listen_pid);
/* This process's environment (sanitizer options...) with its own
 * LISTEN_PID / LISTEN_FDS replaced by @listen_pid (spawn_daemon() fills it
 * in) and LISTEN_FDS=1: a daemon handed its socket at fd 3.  The array is
 * the caller's to free (its strings are not); NULL when out of memory. */
char **spawn_listen_env(char *listen_pid);

#endif
