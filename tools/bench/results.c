/* SPDX-License-Identifier: MIT */
/* vswap-bench's result table: see results.h. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/bench/results.h"
#include "tools/common/json.h"
#include "util/array.h"

void bench_results_free(struct bench_results *r)
{
	free(r->v);
	r->v = NULL;
	r->n = r->cap = 0;
}

int bench_add(struct bench_results *r, const char *name, double value, const char *unit,
	      const char *baseline, double baseline_value)
{
	struct bench_result *e;

	if (ARRAY_RESERVE(r->v, r->cap, r->n + 1, 32))
		return -ENOMEM;
	e = &r->v[r->n++];
	memset(e, 0, sizeof(*e));
	snprintf(e->name, sizeof(e->name), "%s", name);
	snprintf(e->unit, sizeof(e->unit), "%s", unit);
	e->value = value;
	e->baseline_value = NAN;
	e->ratio = NAN;
	if (baseline) {
		snprintf(e->baseline, sizeof(e->baseline), "%s", baseline);
		e->baseline_value = baseline_value;
		if (isfinite(baseline_value) && baseline_value != 0)
			e->ratio = value / baseline_value;
	}
	return 0;
}

/* Three significant digits is all the noise of a shared VM allows. */
static void bench_fmt(char *buf, size_t len, double v)
{
	if (!isfinite(v))
		snprintf(buf, len, "-");
	else if (fabs(v) >= 100 || v == 0)
		snprintf(buf, len, "%.0f", v);
	else if (fabs(v) >= 10)
		snprintf(buf, len, "%.1f", v);
	else
		snprintf(buf, len, "%.3g", v);
}

void bench_print_table(FILE *f, const struct bench_results *r)
{
	size_t i;

	fprintf(f, "%-30s %10s %-6s  %-30s %10s %7s\n", "figure", "value", "unit", "baseline",
		"value", "ratio");
	for (i = 0; i < r->n; i++) {
		const struct bench_result *e = &r->v[i];
		char v[32], bv[32], ra[32];

		bench_fmt(v, sizeof(v), e->value);
		bench_fmt(bv, sizeof(bv), e->baseline_value);
		if (isfinite(e->ratio))
			snprintf(ra, sizeof(ra), "%.2f", e->ratio);
		else
			snprintf(ra, sizeof(ra), "-");
		fprintf(f, "%-30s %10s %-6s  %-30s %10s %7s\n", e->name, v, e->unit,
			e->baseline[0] ? e->baseline : "-", bv, ra);
	}
}

void bench_json_results(struct json_writer *w, const struct bench_results *r)
{
	json_key(w, "results");
	json_begin_array(w);
	for (size_t i = 0; i < r->n; i++) {
		const struct bench_result *e = &r->v[i];

		json_begin_object(w);
		json_key(w, "name");
		json_string(w, e->name);
		json_key(w, "value");
		json_double(w, e->value); /* NaN and infinities become null */
		json_key(w, "unit");
		json_string(w, e->unit);
		json_key(w, "baseline");
		json_string(w, e->baseline[0] ? e->baseline : NULL);
		json_key(w, "baseline_value");
		json_double(w, e->baseline_value);
		json_key(w, "ratio");
		json_double(w, e->ratio);
		json_end_object(w);
	}
	json_end_array(w);
}
