/* SPDX-License-Identifier: MIT */
#include "tests/helpers/recovery_fixture.h"

#include <vswap/recovery.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

extern char **environ;

static void quiet_log(void *ctx, enum vswap_log_level level, const char *msg)
{
	(void)ctx;
	(void)level;
	(void)msg;
}

int rfx_init(struct rfx_store *fx, const char *tag)
{
	memset(fx, 0, sizeof(*fx));
	snprintf(fx->dir, sizeof(fx->dir), "/var/tmp/vswap-%s-XXXXXX", tag);
	if (!mkdtemp(fx->dir))
		return -errno;
	snprintf(fx->path, sizeof(fx->path), "%s/store.swap", fx->dir);
	snprintf(fx->index, sizeof(fx->index), "%s.idx", fx->path);
	fx->page_size = (uint32_t)sysconf(_SC_PAGESIZE);
	return 0;
}

void rfx_pattern(uint64_t page, uint32_t page_size, void *buf)
{
	uint64_t *w = buf;
	uint64_t x = page * 0x9e3779b97f4a7c15ull + 0x1234567;

	for (uint32_t i = 0; i < page_size / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x | 1;
	}
}

int rfx_open(const struct rfx_store *fx, bool read_only, struct vswap_store **out)
{
	struct vswap_store_opts o = {
	    .read_only = read_only, .staging_dir = fx->dir, .log = quiet_log};

	return vswap_store_open(fx->path, &o, out);
}

static int write_pages(struct vswap_store *s, uint64_t first, uint64_t count, uint32_t ps)
{
	uint8_t *buf = malloc(64 * (size_t)ps);
	int ret = buf ? 0 : -ENOMEM;

	for (uint64_t p = first; !ret && p < first + count; p += 64) {
		uint32_t n = (uint32_t)(first + count - p < 64 ? first + count - p : 64);

		for (uint32_t i = 0; i < n; i++)
			rfx_pattern(p + i, ps, buf + (size_t)i * ps);
		ret = vswap_store_write(s, p, n, buf);
	}
	free(buf);
	return ret;
}

/* Log ahead, then copy (invariant 5): mark, commit, write the bytes. */
static int stage_pages(struct vswap_store *s, uint64_t first, uint64_t count, uint32_t ps)
{
	uint8_t *buf = malloc(ps);
	int fd = vswap_store_staging_fd(s);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = vswap_store_stage_mark(s, first, count);
	if (!ret)
		ret = vswap_store_commit(s);
	for (uint64_t p = first; !ret && p < first + count; p++) {
		rfx_pattern(p ^ 0x5555, ps, buf);
		if (pwrite(fd, buf, ps, (off_t)(p * ps)) != (ssize_t)ps)
			ret = -EIO;
	}
	/* Then the copies' checksums, committed by the caller. */
	if (!ret)
		ret = vswap_store_stage_seal(s, first, count);
	free(buf);
	return ret;
}

int rfx_build(struct rfx_store *fx, const struct rfx_shape *sh)
{
	struct vswap_store_opts o = {
	    .durability = sh->durability, .staging_dir = fx->dir, .log = quiet_log};
	uint64_t regions[2] = {sh->total_pages / 2, sh->total_pages - sh->total_pages / 2};
	struct vswap_store *s;
	int ret = vswap_store_create(fx->path, &o, &s);

	if (ret)
		return ret;
	fx->total_pages = sh->total_pages;
	ret = vswap_store_set_regions(s, regions, 2);
	if (!ret && sh->written)
		ret = write_pages(s, 0, sh->written, fx->page_size);
	if (!ret)
		ret = vswap_store_commit(s);
	if (!ret && sh->stale_count)
		ret = vswap_store_mark_stale(s, sh->stale_first, sh->stale_count) < 0 ? -EINVAL : 0;
	if (!ret && sh->staged_count)
		ret = stage_pages(s, sh->staged_first, sh->staged_count, fx->page_size);
	if (!ret)
		ret = vswap_store_commit(s);
	int cret = vswap_store_close(s);
	return ret ? ret : cret;
}

void rfx_cleanup(struct rfx_store *fx)
{
	DIR *d = opendir(fx->dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	rmdir(fx->dir);
}

int rfx_flip_bit(const char *path, uint64_t off, unsigned bit)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t b;
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (pread(fd, &b, 1, (off_t)off) != 1) {
		ret = -EIO;
	} else {
		b ^= (uint8_t)(1u << (bit & 7));
		if (pwrite(fd, &b, 1, (off_t)off) != 1)
			ret = -EIO;
	}
	close(fd);
	return ret;
}

int rfx_fill(const char *path, uint64_t off, int byte, size_t len)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t *buf = malloc(len);
	int ret = 0;

	if (fd < 0 || !buf)
		ret = fd < 0 ? -errno : -ENOMEM;
	else if (pwrite(fd, memset(buf, byte, len), len, (off_t)off) != (ssize_t)len)
		ret = -EIO;
	free(buf);
	if (fd >= 0)
		close(fd);
	return ret;
}

uint64_t rfx_hash_file(const char *path)
{
	XXH3_state_t *st = XXH3_createState();
	uint8_t buf[65536];
	struct stat sb;
	uint64_t h = 0;
	ssize_t k;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || !st || fstat(fd, &sb) != 0)
		goto out;
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, &sb.st_size, sizeof(sb.st_size));
	for (off_t pos = 0;; pos = lseek(fd, pos, SEEK_HOLE)) {
		pos = lseek(fd, pos, SEEK_DATA);
		if (pos < 0)
			break;
		XXH3_64bits_update(st, &pos, sizeof(pos)); /* the allocation map */
	}
	lseek(fd, 0, SEEK_SET);
	while ((k = read(fd, buf, sizeof(buf))) > 0)
		XXH3_64bits_update(st, buf, (size_t)k);
	h = XXH3_64bits_digest(st);
out:
	if (fd >= 0)
		close(fd);
	XXH3_freeState(st);
	return h;
}

uint64_t rfx_hash_store(const struct rfx_store *fx)
{
	DIR *d = opendir(fx->dir);
	struct dirent *e;
	uint64_t h = 0;
	char p[PATH_MAX + 300];

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);

		if (e->d_name[0] == '.' || (n > 5 && !strcmp(e->d_name + n - 5, "-lock")))
			continue;
		snprintf(p, sizeof(p), "%s/%s", fx->dir, e->d_name);
		h ^= rfx_hash_file(p) * 31 + XXH3_64bits(e->d_name, n); /* order-free */
	}
	closedir(d);
	return h;
}

/* Read all of @fd into a malloc'ed NUL-terminated string. */
static char *slurp(int fd)
{
	size_t len = 0, cap = 4096;
	char *s = malloc(cap);
	ssize_t k;

	if (!s)
		return NULL;
	while ((k = read(fd, s + len, cap - len - 1)) > 0) {
		len += (size_t)k;
		if (cap - len < 2) {
			char *t = realloc(s, cap * 2);

			if (!t)
				break;
			s = t;
			cap *= 2;
		}
	}
	s[len] = '\0';
	return s;
}

static char *capture_file(FILE *fp)
{
	char *s;

	fflush(fp);
	lseek(fileno(fp), 0, SEEK_SET);
	s = slurp(fileno(fp));
	fclose(fp);
	return s;
}

/* The tool's path in the build directory and its argument vector (at most
 * 31 words, NULL-terminated). */
static void tool_argv(const char *tool, const char *const *args, char exe[PATH_MAX],
		      const char *argv[32])
{
	const char *bd = getenv("VSWAP_BUILD_DIR");
	int n = 0;

#ifdef VSWAP_BUILD_DIR
	if (!bd)
		bd = VSWAP_BUILD_DIR;
#endif
	snprintf(exe, PATH_MAX, "%s/%s", bd ? bd : ".", tool);
	argv[n++] = exe;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
}

int rfx_require_tool(const char *tool)
{
	char exe[PATH_MAX];
	const char *argv[32], *none[] = {NULL};

	tool_argv(tool, none, exe, argv);
	if (access(exe, X_OK) == 0)
		return 0;
	fprintf(stderr, "%s is not built (a build with -DVSWAP_TOOLS=OFF): skipping the suite\n",
		exe);
	return 77;
}

int rfx_run_tool(const char *tool, const char *const *args, char **out, char **err)
{
	char exe[PATH_MAX];
	const char *argv[32];
	posix_spawn_file_actions_t fa;
	FILE *fo = tmpfile(), *fe = tmpfile();
	pid_t pid;
	int status = 0, ret;

	tool_argv(tool, args, exe, argv);
	if (!fo || !fe)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fileno(fo), 1);
	posix_spawn_file_actions_adddup2(&fa, fileno(fe), 2);
	ret = posix_spawn(&pid, exe, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (ret == 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	if (out)
		*out = capture_file(fo);
	else
		fclose(fo);
	if (err)
		*err = capture_file(fe);
	else
		fclose(fe);
	if (ret)
		return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int rfx_run_tool_as(uid_t uid, unsigned timeout_s, const char *tool, const char *const *args,
		    char **out)
{
	char exe[PATH_MAX], path[] = "/tmp/vswap-tool-out-XXXXXX";
	const char *argv[32];
	int fd = mkstemp(path), status = 0;
	pid_t pid;

	if (fd < 0)
		return -1;
	unlink(path);
	tool_argv(tool, args, exe, argv);
	pid = fork();
	if (pid < 0) {
		close(fd);
		return -1;
	}
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		if (uid &&
		    (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid)))
			_exit(126);
		alarm(timeout_s); /* survives exec: a hang dies of SIGALRM */
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (out) {
		lseek(fd, 0, SEEK_SET);
		*out = slurp(fd);
	}
	close(fd);
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

int rfx_setup(void **state, const char *tag, const struct rfx_shape *shape)
{
	struct rfx_store *fx = calloc(1, sizeof(*fx));

	if (!fx || rfx_init(fx, tag) != 0) {
		free(fx);
		return -1;
	}
	if (rfx_build(fx, shape) != 0) {
		rfx_cleanup(fx);
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

int rfx_teardown(void **state)
{
	rfx_cleanup(*state);
	free(*state);
	return 0;
}

int rfx_rebuild(struct rfx_store *fx, const char *tag, const struct rfx_shape *shape)
{
	rfx_cleanup(fx);
	if (rfx_init(fx, tag) != 0)
		return -1;
	return rfx_build(fx, shape);
}

int rfx_fsck(const struct rfx_store *fx, const char *flag, char **out, char **err)
{
	const char *args[] = {flag, "--json", "--no-progress", fx->path, NULL};

	return rfx_run_tool("vswap-fsck", args, out, err);
}

int rfx_fsck_orphans(const struct rfx_store *fx, const char *flag, char **out, char **err)
{
	const char *args[] = {flag, "--orphans", "--json", "--no-progress", fx->path, NULL};

	return rfx_run_tool("vswap-fsck", args, out, err);
}

pid_t rfx_holder_start(const struct rfx_store *fx)
{
	int pipefd[2];
	char c = 0;
	pid_t parent = getpid(), pid;

	if (pipe2(pipefd, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		struct vswap_store *s;
		int ok;

		/* Dies with the test: a failed assertion skips the stop, and a
		 * holder left behind would keep ctest's output pipe open, so
		 * that ctest waited for it until its timeout. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
			_exit(1);
		ok = rfx_open(fx, false, &s) == 0;

		c = ok ? 'y' : 'n';
		if (write(pipefd[1], &c, 1) != 1 || !ok)
			_exit(1);
		for (;;)
			pause();
	}
	close(pipefd[1]);
	if (pid < 0 || read(pipefd[0], &c, 1) != 1 || c != 'y') {
		if (pid > 0)
			rfx_holder_stop(pid);
		pid = -1;
	}
	close(pipefd[0]);
	return pid;
}

void rfx_holder_stop(pid_t pid)
{
	int status;

	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
}

/* ---- the crash harness ---- */

struct verify_ctx {
	struct vswap_store *s;
	uint8_t *buf;
	struct rfx_crash_result *r;
};

static int verify_record(void *arg, const struct vswap_page_record *rec)
{
	struct verify_ctx *c = arg;

	if (rec->corrupt) {
		c->r->bad++;
		return 0;
	}
	if (rec->state == VSWAP_PAGE_LOST) {
		c->r->lost++;
		return 0;
	}
	if (vswap_store_read_page(c->s, rec->page, c->buf) == 0)
		c->r->verified++;
	else
		c->r->bad++;
	return 0;
}

/* vswap-fsck @flag on the store, then (when that is 0 or 1) with
 * --orphans for the staging directory: the worse of the two codes. */
static int fsck_exit(const char *path, const char *index_path, const char *flag)
{
	const char *args[8] = {flag, "--no-progress"};
	int n = 2;

	if (index_path) {
		args[n++] = "--index";
		args[n++] = index_path;
	}
	args[n++] = path;
	args[n] = NULL;
	int store = rfx_run_tool("vswap-fsck", args, NULL, NULL);
	if (store != 0 && store != 1)
		return store;
	args[n - 1] = "--orphans";
	args[n] = path;
	args[n + 1] = NULL;
	int orphans = rfx_run_tool("vswap-fsck", args, NULL, NULL);
	return orphans > store ? orphans : store;
}

int rfx_check_after_crash(const char *path, const char *index_path, struct rfx_crash_result *r)
{
	struct vswap_store_opts o = {.read_only = true, .index_path = index_path, .log = quiet_log};
	struct verify_ctx c = {.r = r};
	int ret;

	memset(r, 0, sizeof(*r));
	r->repair_exit = fsck_exit(path, index_path, "-y");
	if (r->repair_exit != 0 && r->repair_exit != 1) {
		snprintf(r->why, sizeof(r->why), "vswap-fsck -y exited %d", r->repair_exit);
		return -1;
	}
	r->check_exit = fsck_exit(path, index_path, "-n");
	if (r->check_exit != 0) {
		snprintf(r->why, sizeof(r->why), "second run vswap-fsck -n exited %d",
			 r->check_exit);
		return -1;
	}
	ret = vswap_store_open(path, &o, &c.s);
	if (ret) {
		snprintf(r->why, sizeof(r->why), "store does not open after repair: %s",
			 vswap_strerror(ret));
		return -1;
	}
	c.buf = malloc(vswap_store_page_size(c.s));
	ret = c.buf ? vswap_store_foreach_page(c.s, verify_record, &c) : -ENOMEM;
	free(c.buf);
	vswap_store_close(c.s);
	if (ret || r->bad) {
		snprintf(r->why, sizeof(r->why), "%llu surviving pages fail to verify (%s)",
			 (unsigned long long)r->bad, ret ? vswap_strerror(ret) : "read");
		return -1;
	}
	return 0;
}

bool rfx_has_problem(const struct vswap_fsck *f, enum vswap_problem_kind kind, uint64_t page,
		     uint64_t slot, int repaired)
{
	for (size_t i = 0; i < vswap_fsck_problem_count(f); i++) {
		const struct vswap_problem *p = vswap_fsck_problem(f, i);

		if (p->kind != kind)
			continue;
		if (page != UINT64_MAX && (!p->has_page || p->page != page))
			continue;
		if (slot != UINT64_MAX && (!p->has_slot || p->slot != slot))
			continue;
		if (repaired >= 0 && p->repaired != (bool)repaired)
			continue;
		return true;
	}
	return false;
}

bool rfx_is_lost(const struct vswap_fsck *f, uint64_t page)
{
	size_t n;
	const uint64_t *lost = vswap_fsck_lost_pages(f, &n);

	for (size_t i = 0; i < n; i++)
		if (lost[i] == page)
			return true;
	return false;
}

void rfx_print_problems(const struct vswap_fsck *f)
{
	for (size_t i = 0; i < vswap_fsck_problem_count(f); i++) {
		const struct vswap_problem *p = vswap_fsck_problem(f, i);

		fprintf(stderr, "  %s%s: %s\n", vswap_problem_kind_name(p->kind),
			p->repaired ? " (repaired)" : "", p->detail);
	}
}

int rfx_slot_of(const struct rfx_store *fx, uint64_t page, uint64_t *slot)
{
	struct vswap_store *s;
	struct vswap_page_info pi;
	int rc = rfx_open(fx, true, &s);

	if (rc)
		return rc;
	rc = vswap_store_page(s, page, &pi);
	vswap_store_close(s);
	*slot = pi.slot;
	return rc;
}
