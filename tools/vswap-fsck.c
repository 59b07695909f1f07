/* SPDX-License-Identifier: MIT */
/*
 * vswap-fsck: audit a vswap store and repair what a crash or a rotten bit
 * left behind.  Options and exit codes follow e2fsck; see vswap-fsck(8).
 * The work is done by the recovery library (include/vswap/recovery.h).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vswap/recovery.h>
#include <vswap/store.h>

#include "tools/common/cli.h"
#include "tools/common/json.h"
#include "tools/common/progress.h"

static volatile sig_atomic_t cancel_requested;

static void on_signal(int sig)
{
	(void)sig;
	cancel_requested = 1;
}

struct fsck_cli {
	const char *path;
	struct vswap_fsck_opts opts;
	bool json;
	bool mode_given;
	bool orphans; /* --orphans: the verdict is about other stores' files */
	int progress; /* -1 auto, 0 off, 1 on */
	int verbose;
	struct cli_logger logger;
	struct progress_bar bar;
};

static const struct cli_tool tool = {
    .name = "vswap-fsck",
    .synopsis = "[-n|-p|-y] [--json] [--progress|--no-progress] [--index PATH]\n"
		"       [--staging-dir DIR] [--orphans] [-v] SWAPFILE\n",
    .help = "Audit a vswap store (swap file, index, staging file) and repair it.\n"
	    "\n"
	    "  -n              check only; never write (the default)\n"
	    "  -p, -a          repair what can be repaired without losing anything\n"
	    "  -y              repair everything; pages whose bytes are bad become lost\n"
	    "      --json      print the report as one JSON object on stdout\n"
	    "      --progress  draw a progress bar on stderr (default: on a terminal)\n"
	    "      --no-progress\n"
	    "      --index PATH        the LMDB index (default SWAPFILE.idx)\n"
	    "      --staging-dir DIR   where staging files live (default /dev/shm)\n"
	    "      --orphans   also look for staging files that no store refers to\n"
	    "                  (left by deleted stores) in SWAPFILE's staging directory;\n"
	    "                  the exit status is then about those files alone\n"
	    "      --queue-depth N     verification reads in flight (default 16)\n"
	    "      --read-size SIZE    bytes per verification read (default 256K)\n"
	    "  -v, --verbose   log each problem as it is found\n" CLI_STANDARD_HELP "\n"
	    "Exit: 0 clean, 1 errors corrected, 4 errors left uncorrected, 8 operational\n"
	    "error, 16 usage error, 32 cancelled (e2fsck's codes, OR-ed).\n",
    .usage_exit = VSWAP_FSCK_EXIT_USAGE,
};

/* The mode's name in reports: -n, -p and -y are three modes. */
static const char *mode_name(enum vswap_fsck_mode m)
{
	switch (m) {
	case VSWAP_FSCK_CHECK:
		return "check";
	case VSWAP_FSCK_PREEN:
		return "preen";
	case VSWAP_FSCK_REPAIR:
		return "repair";
	}
	return "unknown";
}

static int set_mode(struct fsck_cli *c, enum vswap_fsck_mode m)
{
	if (c->mode_given && c->opts.mode != m) {
		cli_usage_error(&tool, "only one of -n, -p and -y may be given");
		return -1;
	}
	c->mode_given = true;
	c->opts.mode = m;
	return 0;
}

enum {
	OPT_JSON = 256,
	OPT_PROGRESS,
	OPT_NO_PROGRESS,
	OPT_INDEX,
	OPT_STAGING,
	OPT_ORPHANS,
	OPT_NO_ORPHANS,
	OPT_QD,
	OPT_READ_SIZE
};

static int parse_numeric(int opt, const char *arg, struct fsck_cli *c)
{
	uint64_t v;

	if (opt == OPT_QD) {
		if (cli_parse_u64(arg, &v) || v == 0 || v > 4096) {
			cli_usage_error(&tool, "--queue-depth: '%s' is not a number in 1..4096",
					arg);
			return -1;
		}
		c->opts.queue_depth = (unsigned)v;
		return 0;
	}
	if (cli_parse_size(arg, &v) || v == 0 || v > (256u << 20)) {
		cli_usage_error(&tool, "--read-size: '%s' is not a size up to 256M", arg);
		return -1;
	}
	c->opts.read_bytes = (uint32_t)v;
	return 0;
}

/* Returns 0 to run, 1 when --help or --version was shown, -1 on a usage
 * error (already reported). */
static int parse_args(int argc, char **argv, struct fsck_cli *c)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, OPT_JSON},
	    {"progress", no_argument, NULL, OPT_PROGRESS},
	    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
	    {"index", required_argument, NULL, OPT_INDEX},
	    {"staging-dir", required_argument, NULL, OPT_STAGING},
	    {"orphans", no_argument, NULL, OPT_ORPHANS},
	    {"no-orphan-scan", no_argument, NULL, OPT_NO_ORPHANS},
	    {"queue-depth", required_argument, NULL, OPT_QD},
	    {"read-size", required_argument, NULL, OPT_READ_SIZE},
	    {"verbose", no_argument, NULL, 'v'},
	    CLI_STANDARD_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "npayvhC", longopts, NULL)) != -1) {
		int bad = 0;

		switch (opt) {
		case 'n':
			bad = set_mode(c, VSWAP_FSCK_CHECK);
			break;
		case 'p':
		case 'a':
			bad = set_mode(c, VSWAP_FSCK_PREEN);
			break;
		case 'y':
			bad = set_mode(c, VSWAP_FSCK_REPAIR);
			break;
		case 'C':
		case OPT_PROGRESS:
			c->progress = 1;
			break;
		case OPT_NO_PROGRESS:
			c->progress = 0;
			break;
		case OPT_JSON:
			c->json = true;
			break;
		case OPT_INDEX:
			c->opts.index_path = optarg;
			break;
		case OPT_STAGING:
			c->opts.staging_dir = optarg;
			break;
		case OPT_ORPHANS:
			c->orphans = true;
			break;
		case OPT_NO_ORPHANS: /* the default now; kept for scripts */
			c->orphans = false;
			break;
		case OPT_QD:
		case OPT_READ_SIZE:
			bad = parse_numeric(opt, optarg, c);
			break;
		case 'v':
			c->verbose++;
			break;
		default: {
			int std = cli_standard_option(&tool, opt);
			if (std)
				return std;
		}
		}
		if (bad)
			return -1;
	}
	if (optind != argc - 1) {
		cli_usage_error(&tool, "%s",
				optind >= argc ? "no swap file given" : "too many arguments");
		return -1;
	}
	c->path = argv[optind];
	/* The verdict is about SWAPFILE: other stores' leftovers in a shared
	 * directory are looked for only when asked (--orphans). */
	c->opts.no_orphan_scan = !c->orphans;
	return 0;
}

/* Problems of the given store, or (@orphans) of other stores' files. */
static bool in_scope(const struct vswap_problem *p, bool orphans)
{
	return (p->kind == VSWAP_PROBLEM_ORPHAN_STAGING_FILE) == orphans;
}

/*
 * The exit code of the problems in scope.  Without --orphans no orphan is
 * looked for, and the library's code is the store's.  With it, the code is
 * the orphans' alone (e2fsck's bits: 1 all removed, 4 some left), with the
 * operational and cancelled bits of the run.
 */
static int scoped_exit_code(const struct fsck_cli *c, const struct vswap_fsck *f)
{
	int code = vswap_fsck_exit_code(f);

	if (!c->orphans)
		return code;
	if (code & VSWAP_FSCK_EXIT_CANCELLED)
		return VSWAP_FSCK_EXIT_CANCELLED;
	code &= VSWAP_FSCK_EXIT_OPERATIONAL;
	for (size_t i = 0; i < vswap_fsck_problem_count(f); i++) {
		const struct vswap_problem *p = vswap_fsck_problem(f, i);
		if (in_scope(p, true))
			code |=
			    p->repaired ? VSWAP_FSCK_EXIT_CORRECTED : VSWAP_FSCK_EXIT_UNCORRECTED;
	}
	return code;
}

static void on_progress(void *ctx, uint64_t done, uint64_t total, uint64_t bytes)
{
	struct fsck_cli *c = ctx;

	progress_update(&c->bar, done, total, bytes);
}

static void install_signals(void)
{
	struct sigaction sa = {.sa_handler = on_signal};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static double gbps(const struct vswap_fsck_counts *k)
{
	return k->verify_ns ? (double)k->bytes_verified / (double)k->verify_ns : 0.0;
}

static void json_problem(struct json_writer *w, const struct vswap_problem *p)
{
	json_begin_object(w);
	json_key(w, "kind");
	json_string(w, vswap_problem_kind_name(p->kind));
	json_key(w, "page");
	if (p->has_page)
		json_u64(w, p->page);
	else
		json_null(w);
	json_key(w, "slot");
	if (p->has_slot)
		json_u64(w, p->slot);
	else
		json_null(w);
	json_key(w, "detail");
	json_string(w, p->detail);
	json_key(w, "repaired");
	json_bool(w, p->repaired);
	json_end_object(w);
}

static void json_problems(struct json_writer *w, const struct vswap_fsck *f, bool orphans)
{
	json_begin_array(w);
	for (size_t i = 0; i < vswap_fsck_problem_count(f); i++)
		if (in_scope(vswap_fsck_problem(f, i), orphans))
			json_problem(w, vswap_fsck_problem(f, i));
	json_end_array(w);
}

static void print_json(const struct fsck_cli *c, const struct vswap_fsck *f, int code)
{
	struct json_writer w;
	struct vswap_fsck_counts k;
	size_t nlost;
	const uint64_t *lost = vswap_fsck_lost_pages(f, &nlost);
	pid_t holder;
	bool busy = vswap_fsck_busy(f, &holder);

	vswap_fsck_counts(f, &k);
	json_init(&w, stdout);
	json_begin_document(&w);
	json_key(&w, "store");
	json_string(&w, vswap_fsck_path(f));
	json_key(&w, "mode");
	json_string(&w, mode_name(vswap_fsck_mode_of(f)));
	json_key(&w, "exit_code");
	json_i64(&w, code);
	json_key(&w, "busy");
	json_bool(&w, busy);
	json_key(&w, "holder_pid");
	if (busy && holder)
		json_i64(&w, holder);
	else
		json_null(&w);
	/* Why nothing was audited: null when the store was opened. */
	json_key(&w, "open_error");
	if (vswap_fsck_open_failure(f))
		json_string(&w, vswap_fsck_open_failure(f));
	else
		json_null(&w);
	json_key(&w, "records");
	json_u64(&w, k.records);
	json_key(&w, "pages_checked");
	json_u64(&w, k.pages_checked);
	json_key(&w, "bytes_verified");
	json_u64(&w, k.bytes_verified);
	json_key(&w, "verify_gbps");
	json_double(&w, gbps(&k));
	json_key(&w, "staged_pages");
	json_u64(&w, k.staged_pages);
	json_key(&w, "problems");
	json_problems(&w, f, false);
	json_key(&w, "lost_pages");
	json_begin_array(&w);
	for (size_t i = 0; i < nlost; i++)
		json_u64(&w, lost[i]);
	json_end_array(&w);
	/* Other stores' files: null when not looked for (no --orphans). */
	json_key(&w, "orphans");
	if (c->orphans)
		json_problems(&w, f, true);
	else
		json_null(&w);
	json_end_object(&w);
	json_finish(&w);
}

static void print_problems(const struct vswap_fsck *f, bool orphans, size_t *n, size_t *fixed)
{
	*n = *fixed = 0;
	for (size_t i = 0; i < vswap_fsck_problem_count(f); i++) {
		const struct vswap_problem *p = vswap_fsck_problem(f, i);

		if (!in_scope(p, orphans))
			continue;
		(*n)++;
		*fixed += p->repaired;
		printf("%s: %s%s\n", vswap_problem_kind_name(p->kind), p->detail,
		       p->repaired
			   ? " [fixed]"
			   : (vswap_fsck_mode_of(f) == VSWAP_FSCK_CHECK ? "" : " [not fixed]"));
	}
}

static void print_text(const struct fsck_cli *c, const struct vswap_fsck *f, int code)
{
	struct vswap_fsck_counts k;
	size_t nlost, n, fixed;
	const uint64_t *lost = vswap_fsck_lost_pages(f, &nlost);
	const char *why = vswap_fsck_open_failure(f);
	char sz[32];

	vswap_fsck_counts(f, &k);
	print_problems(f, false, &n, &fixed);
	if (nlost) {
		printf("lost pages (%zu):", nlost);
		for (size_t i = 0; i < nlost && i < 64; i++)
			printf(" %llu", (unsigned long long)lost[i]);
		printf("%s\n", nlost > 64 ? " ..." : "");
	}
	if (why) {
		/* Nothing was audited: counts of 0 would read as a clean store. */
		size_t plen = strlen(vswap_fsck_path(f));

		if (!strncmp(why, vswap_fsck_path(f), plen) && !strncmp(why + plen, ": ", 2))
			why += plen + 2; /* the summary names the store already */
		printf("%s: %s: the store could not be opened: %s; nothing was audited\n",
		       vswap_fsck_path(f), mode_name(vswap_fsck_mode_of(f)), why);
		return;
	}
	printf("%s: %s: %llu records, %llu pages verified (%s at %.2f GB/s), %zu problem%s, %zu "
	       "fixed\n",
	       vswap_fsck_path(f), mode_name(vswap_fsck_mode_of(f)), (unsigned long long)k.records,
	       (unsigned long long)k.pages_checked,
	       cli_format_size(k.bytes_verified, sz, sizeof(sz)), gbps(&k), n, n == 1 ? "" : "s",
	       fixed);
	if (c->orphans) {
		size_t on, ofixed;
		print_problems(f, true, &on, &ofixed);
		printf("%s: %zu staging file%s of no store, %zu removed\n", tool.name, on,
		       on == 1 ? "" : "s", ofixed);
		return;
	}
	if ((code & VSWAP_FSCK_EXIT_UNCORRECTED) && vswap_fsck_mode_of(f) != VSWAP_FSCK_REPAIR)
		printf("%s: errors left; run %s -y %s to repair them\n", tool.name, tool.name,
		       vswap_fsck_path(f));
}

int main(int argc, char **argv)
{
	struct fsck_cli c = {.progress = -1};
	struct vswap_fsck *f;
	int ret, code;

	ret = parse_args(argc, argv, &c);
	if (ret)
		return ret > 0 ? VSWAP_FSCK_EXIT_CLEAN : VSWAP_FSCK_EXIT_USAGE;
	c.logger = (struct cli_logger){.prog = tool.name,
				       .max = c.verbose ? VSWAP_LOG_INFO : VSWAP_LOG_WARN};
	c.opts.log = cli_log;
	c.opts.log_ctx = &c.logger;
	c.opts.log_level = c.logger.max;
	c.opts.cancel = &cancel_requested;
	progress_init(&c.bar, "verify", c.progress);
	if (c.bar.enabled) {
		c.opts.progress = on_progress;
		c.opts.progress_ctx = &c;
	}
	install_signals();
	ret = vswap_fsck_new(c.path, &c.opts, &f);
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", tool.name, c.path, vswap_strerror(ret));
		return VSWAP_FSCK_EXIT_OPERATIONAL;
	}
	ret = vswap_fsck_run(f);
	progress_finish(&c.bar);
	code = scoped_exit_code(&c, f);
	/* Every operational error is named here: the library logs most of them,
	 * but not all (an allocation that fails, for one). */
	if (ret == -ECANCELED)
		fprintf(stderr, "%s: %s: cancelled\n", tool.name, c.path);
	else if (ret < 0 && !vswap_fsck_open_failure(f)) /* the summary says why */
		fprintf(stderr, "%s: %s: %s\n", tool.name, c.path, vswap_strerror(ret));
	if (c.json)
		print_json(&c, f, code);
	else
		print_text(&c, f, code);
	vswap_fsck_free(f);
	return code;
}
