/* SPDX-License-Identifier: MIT */
/*
 * vswap-dump: a read-only view of a store's index for debugging.  It opens
 * the store read-only (no lock, no byte written), so it works while a
 * handler runs.  See vswap-dump(8).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vswap/handler.h>
#include <vswap/store.h>

#include "tools/common/cli.h"
#include "tools/common/json.h"
#include "util/array.h"

enum view { VIEW_SUMMARY, VIEW_META, VIEW_PAGES, VIEW_SLOTS, VIEW_STAGING };

struct dump {
	struct vswap_store *s;
	bool json;
	struct json_writer w;
	struct vswap_page_record *rec;
	size_t nrec, cap;
	uint64_t corrupt_groups;
};

/* The handler's state recorded in the store, by the library's name for it
 * (the one the status JSON and vswap-demo use). */
static const char *state_name(uint32_t st)
{
	return vswap_state_name((enum vswap_state)st);
}

static int collect(void *ctx, const struct vswap_page_record *r)
{
	struct dump *d = ctx;

	if (r->corrupt) {
		d->corrupt_groups++;
		return 0;
	}
	if (ARRAY_RESERVE(d->rec, d->cap, d->nrec + 1, 1024))
		return -ENOMEM;
	d->rec[d->nrec++] = *r;
	return 0;
}

static int region_of(const struct vswap_store *s, uint64_t page)
{
	for (unsigned i = 0; i < vswap_store_region_count(s); i++) {
		uint64_t first, n;

		if (vswap_store_region(s, i, &first, &n) == 0 && page >= first && page < first + n)
			return (int)i;
	}
	return -1;
}

static void file_sizes(const char *path, uint64_t *size, uint64_t *alloc)
{
	struct stat st;

	*size = *alloc = 0;
	if (path && stat(path, &st) == 0) {
		*size = (uint64_t)st.st_size;
		*alloc = (uint64_t)st.st_blocks * 512;
	}
}

/* ---- summary and meta ---- */

static void count_states(const struct dump *d, uint64_t n[4])
{
	memset(n, 0, 4 * sizeof(n[0]));
	for (size_t i = 0; i < d->nrec; i++)
		n[d->rec[i].state & 3]++;
}

static void json_file(struct json_writer *w, const char *key, const char *path)
{
	uint64_t size, alloc;

	file_sizes(path, &size, &alloc);
	json_key(w, key);
	json_begin_object(w);
	json_key(w, "path");
	json_string(w, path);
	json_key(w, "size");
	json_u64(w, size);
	json_key(w, "allocated");
	json_u64(w, alloc);
	json_end_object(w);
}

static void json_meta_fields(struct dump *d, const struct vswap_store_info *in)
{
	struct json_writer *w = &d->w;
	char uuid[37];

	vswap_uuid_format(in->uuid, uuid);
	json_key(w, "uuid");
	json_string(w, uuid);
	json_key(w, "format_version");
	json_u64(w, in->format_version);
	json_key(w, "page_size");
	json_u64(w, in->page_size);
	json_key(w, "created_ns");
	json_u64(w, in->created_ns);
	json_key(w, "state");
	json_string(w, state_name(in->state));
	json_key(w, "state_value");
	json_u64(w, in->state);
	json_key(w, "clean");
	json_bool(w, in->was_clean);
	json_key(w, "total_pages");
	json_u64(w, in->total_pages);
	json_key(w, "regions");
	json_begin_array(w);
	for (unsigned i = 0; i < in->regions; i++) {
		uint64_t first, n;

		vswap_store_region(d->s, i, &first, &n);
		json_begin_object(w);
		json_key(w, "region");
		json_u64(w, i);
		json_key(w, "first_page");
		json_u64(w, first);
		json_key(w, "pages");
		json_u64(w, n);
		json_end_object(w);
	}
	json_end_array(w);
}

static void text_meta_fields(struct dump *d, const struct vswap_store_info *in)
{
	char uuid[37];
	time_t secs = (time_t)(in->created_ns / 1000000000ull);
	char when[64];

	vswap_uuid_format(in->uuid, uuid);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&secs));
	printf("uuid:           %s\n", uuid);
	printf("format version: %u\n", in->format_version);
	printf("page size:      %u\n", in->page_size);
	printf("created:        %s\n", when);
	printf("state:          %s (%u)\n", state_name(in->state), in->state);
	printf("clean:          %s\n",
	       in->was_clean ? "yes" : "no (not closed cleanly, or in use)");
	printf("total pages:    %" PRIu64 "\n", in->total_pages);
	for (unsigned i = 0; i < in->regions; i++) {
		uint64_t first, n;

		vswap_store_region(d->s, i, &first, &n);
		printf("region %u:       pages %" PRIu64 "-%" PRIu64 " (%" PRIu64 " pages)\n", i,
		       first, first + n - 1, n);
	}
}

static void show_meta(struct dump *d, bool summary)
{
	struct vswap_store_info in;
	struct vswap_store_stats st;
	uint64_t n[4], size, alloc;

	vswap_store_info(d->s, &in);
	vswap_store_stats(d->s, &st);
	count_states(d, n);
	if (d->json) {
		json_begin_document(&d->w);
		json_key(&d->w, "store");
		json_string(&d->w, vswap_store_path(d->s));
		json_meta_fields(d, &in);
		json_file(&d->w, "swap_file", vswap_store_path(d->s));
		json_file(&d->w, "index", vswap_store_index_path(d->s));
		json_file(&d->w, "staging_file", vswap_store_staging_path(d->s));
		if (summary) {
			json_key(&d->w, "pages_present");
			json_u64(&d->w, n[VSWAP_PAGE_PRESENT]);
			json_key(&d->w, "pages_stale");
			json_u64(&d->w, n[VSWAP_PAGE_STALE]);
			json_key(&d->w, "pages_lost");
			json_u64(&d->w, n[VSWAP_PAGE_LOST]);
			json_key(&d->w, "undecodable_records");
			json_u64(&d->w, d->corrupt_groups);
			json_key(&d->w, "slots_used");
			json_u64(&d->w, st.slots_used);
			json_key(&d->w, "slots_free");
			json_u64(&d->w, st.slots_free);
			json_key(&d->w, "slots_end");
			json_u64(&d->w, st.slots_end);
			json_key(&d->w, "staging_pages");
			json_u64(&d->w, st.pages_staged);
		}
		json_end_object(&d->w);
		return;
	}
	printf("store:          %s\n", vswap_store_path(d->s));
	text_meta_fields(d, &in);
	file_sizes(vswap_store_path(d->s), &size, &alloc);
	printf("swap file:      %" PRIu64 " bytes, %" PRIu64 " allocated\n", size, alloc);
	file_sizes(vswap_store_index_path(d->s), &size, &alloc);
	printf("index:          %s (%" PRIu64 " bytes)\n", vswap_store_index_path(d->s), size);
	file_sizes(vswap_store_staging_path(d->s), &size, &alloc);
	printf("staging file:   %s (%" PRIu64 " bytes, %" PRIu64 " allocated)\n",
	       vswap_store_staging_path(d->s) ? vswap_store_staging_path(d->s) : "(none)", size,
	       alloc);
	if (!summary)
		return;
	printf("pages:          %" PRIu64 " present, %" PRIu64 " stale, %" PRIu64 " lost\n",
	       n[VSWAP_PAGE_PRESENT], n[VSWAP_PAGE_STALE], n[VSWAP_PAGE_LOST]);
	if (d->corrupt_groups)
		printf("undecodable:    %" PRIu64 " index records (run vswap-fsck)\n",
		       d->corrupt_groups);
	printf("slots:          %" PRIu64 " used, %" PRIu64 " free, %" PRIu64 " end\n",
	       st.slots_used, st.slots_free, st.slots_end);
	printf("staging pages:  %" PRIu64 "\n", st.pages_staged);
}

/* ---- pages and slots ---- */

static void page_line(struct dump *d, const struct vswap_page_record *r, bool slot_first)
{
	int region = region_of(d->s, r->page);
	bool has_slot = r->slot != UINT64_MAX;

	if (d->json) {
		json_begin_object(&d->w);
		if (slot_first) {
			json_key(&d->w, "slot");
			has_slot ? json_u64(&d->w, r->slot) : json_null(&d->w);
		}
		json_key(&d->w, "page");
		json_u64(&d->w, r->page);
		json_key(&d->w, "region");
		region >= 0 ? json_i64(&d->w, region) : json_null(&d->w);
		if (!slot_first) {
			json_key(&d->w, "slot");
			has_slot ? json_u64(&d->w, r->slot) : json_null(&d->w);
		}
		json_key(&d->w, "state");
		json_string(&d->w, vswap_page_state_name(r->state));
		char hex[17];
		snprintf(hex, sizeof(hex), "%016" PRIx64, r->xxh3);
		json_key(&d->w, "xxh3");
		json_string(&d->w, hex);
		json_end_object(&d->w);
		return;
	}
	char slot[24] = "-", reg[16] = "-";
	if (has_slot)
		snprintf(slot, sizeof(slot), "%" PRIu64, r->slot);
	if (region >= 0)
		snprintf(reg, sizeof(reg), "%d", region);
	if (slot_first)
		printf("%-10s %-10" PRIu64 " %-6s %-8s %016" PRIx64 "\n", slot, r->page, reg,
		       vswap_page_state_name(r->state), r->xxh3);
	else
		printf("%-10" PRIu64 " %-6s %-10s %-8s %016" PRIx64 "\n", r->page, reg, slot,
		       vswap_page_state_name(r->state), r->xxh3);
}

static int cmp_slot(const void *a, const void *b)
{
	const struct vswap_page_record *x = a, *y = b;

	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	return x->page < y->page ? -1 : x->page > y->page;
}

static void show_records(struct dump *d, bool by_slot)
{
	if (by_slot)
		qsort(d->rec, d->nrec, sizeof(*d->rec), cmp_slot);
	if (d->json) {
		json_begin_document(&d->w);
		json_key(&d->w, by_slot ? "slots" : "pages");
		json_begin_array(&d->w);
	} else {
		printf(by_slot ? "%-10s %-10s %-6s %-8s %s\n" : "%-10s %-6s %-10s %-8s %s\n",
		       by_slot ? "slot" : "page", by_slot ? "page" : "region",
		       by_slot ? "region" : "slot", "state", "xxh3");
	}
	for (size_t i = 0; i < d->nrec; i++)
		if (!by_slot || d->rec[i].slot != UINT64_MAX)
			page_line(d, &d->rec[i], by_slot);
	if (d->json) {
		json_end_array(&d->w);
		json_end_object(&d->w);
	}
}

/* ---- staging ---- */

static int staged_range(void *ctx, uint64_t first, uint64_t count)
{
	struct dump *d = ctx;

	if (d->json) {
		json_begin_object(&d->w);
		json_key(&d->w, "first_page");
		json_u64(&d->w, first);
		json_key(&d->w, "pages");
		json_u64(&d->w, count);
		json_key(&d->w, "region");
		int region = region_of(d->s, first);
		region >= 0 ? json_i64(&d->w, region) : json_null(&d->w);
		json_end_object(&d->w);
	} else {
		printf("%-10" PRIu64 " %-10" PRIu64 " %d\n", first, count, region_of(d->s, first));
	}
	return 0;
}

static int show_staging(struct dump *d)
{
	int ret;

	if (d->json) {
		json_begin_document(&d->w);
		json_key(&d->w, "staging_file");
		json_string(&d->w, vswap_store_staging_path(d->s));
		json_key(&d->w, "staging");
		json_begin_array(&d->w);
	} else {
		printf("staging file: %s\n%-10s %-10s %s\n",
		       vswap_store_staging_path(d->s) ? vswap_store_staging_path(d->s) : "(none)",
		       "first", "pages", "region");
	}
	ret = vswap_store_foreach_staged(d->s, staged_range, d);
	if (d->json) {
		json_end_array(&d->w);
		json_end_object(&d->w);
	}
	return ret;
}

/* ---- main ---- */

static const struct cli_tool tool = {
    .name = "vswap-dump",
    .synopsis = "[--json] [--summary|--meta|--pages|--slots|--staging] [--index PATH] SWAPFILE\n",
    .help = "Show a vswap store's index, read-only (safe while a handler runs).\n"
	    "\n"
	    "      --summary   state, clean flag, UUID, regions, page and slot counts (default)\n"
	    "      --meta      the metadata only\n"
	    "      --pages     one line per page record: page, region, slot, state, xxh3\n"
	    "      --slots     the same, in slot order\n"
	    "      --staging   the staged page ranges\n"
	    "      --json      one JSON object on stdout\n"
	    "      --index PATH  the LMDB index (default SWAPFILE.idx)\n" CLI_STANDARD_HELP "\n"
	    "Exit: 0 shown, 1 the store cannot be opened or read, 2 usage error.\n",
    .usage_exit = CLI_EXIT_USAGE,
};

/* The store's last error names the file and what is wrong with it (an
 * invalid index is not a "bad superblock"): kept for the final message. */
struct relay {
	struct cli_logger lg;
	char last[512];
};

static void relay_log(void *ctx, enum vswap_log_level level, const char *msg)
{
	struct relay *rl = ctx;

	if (level == VSWAP_LOG_ERROR)
		snprintf(rl->last, sizeof(rl->last), "%s", msg);
	cli_log(&rl->lg, level, msg);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"summary", no_argument, NULL, 's'},
	    {"meta", no_argument, NULL, 'm'},
	    {"pages", no_argument, NULL, 'p'},
	    {"slots", no_argument, NULL, 'S'},
	    {"staging", no_argument, NULL, 'g'},
	    {"index", required_argument, NULL, 'i'},
	    CLI_STANDARD_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	struct cli_logger lg = {.prog = tool.name, .max = VSWAP_LOG_ERROR};
	struct vswap_store_opts so = {.read_only = true,
				      .tolerant = true,
				      .log = cli_log,
				      .log_ctx = &lg,
				      .log_level = VSWAP_LOG_ERROR};
	struct relay rl = {.last = ""};
	struct dump d = {0};
	enum view view = VIEW_SUMMARY;
	int opt, ret;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'j':
			d.json = true;
			break;
		case 's':
			view = VIEW_SUMMARY;
			break;
		case 'm':
			view = VIEW_META;
			break;
		case 'p':
			view = VIEW_PAGES;
			break;
		case 'S':
			view = VIEW_SLOTS;
			break;
		case 'g':
			view = VIEW_STAGING;
			break;
		case 'i':
			so.index_path = optarg;
			break;
		default:
			ret = cli_standard_option(&tool, opt);
			return ret > 0 ? CLI_EXIT_OK : tool.usage_exit;
		}
	}
	if (optind != argc - 1)
		return cli_usage_error(
		    &tool, "%s", optind >= argc ? "no swap file given" : "too many arguments");
	so.log = relay_log;
	so.log_ctx = &rl;
	rl.lg = lg;
	ret = vswap_store_open(argv[optind], &so, &d.s);
	if (ret) {
		fprintf(stderr, "%s: %s: cannot open the store: %s\n", tool.name, argv[optind],
			rl.last[0] ? rl.last : vswap_strerror(ret));
		return CLI_EXIT_FAILED;
	}
	ret = vswap_store_foreach_page(d.s, collect, &d);
	json_init(&d.w, stdout);
	if (!ret) {
		switch (view) {
		case VIEW_SUMMARY:
			show_meta(&d, true);
			break;
		case VIEW_META:
			show_meta(&d, false);
			break;
		case VIEW_PAGES:
			show_records(&d, false);
			break;
		case VIEW_SLOTS:
			show_records(&d, true);
			break;
		case VIEW_STAGING:
			ret = show_staging(&d);
			break;
		}
		if (d.json)
			json_finish(&d.w);
	}
	if (ret)
		fprintf(stderr, "%s: %s: reading the index: %s\n", tool.name, argv[optind],
			vswap_strerror(ret));
	vswap_store_close(d.s);
	free(d.rec);
	return ret ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
