/* SPDX-License-Identifier: MIT */
/* vswap-bench's result table: see results.h. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/bench/results.h"

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

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 32;
		void *v = realloc(r->v, cap * sizeof(*r->v));

		if (!v)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
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

/* JSON numbers: NaN and infinities are not JSON, so they become null. */
static void bench_json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.6g", v);
	else
		fputs("null", f);
}

void bench_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", (unsigned char)*s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void bench_print_json_results(FILE *f, const struct bench_results *r)
{
	size_t i;

	fputs("\"results\":[", f);
	for (i = 0; i < r->n; i++) {
		const struct bench_result *e = &r->v[i];

		fputs(i ? ",\n{\"name\":" : "\n{\"name\":", f);
		bench_json_str(f, e->name);
		fputs(",\"value\":", f);
		bench_json_num(f, e->value);
		fputs(",\"unit\":", f);
		bench_json_str(f, e->unit);
		fputs(",\"baseline\":", f);
		if (e->baseline[0])
			bench_json_str(f, e->baseline);
		else
			fputs("null", f);
		fputs(",\"baseline_value\":", f);
		bench_json_num(f, e->baseline_value);
		fputs(",\"ratio\":", f);
		bench_json_num(f, e->ratio);
		fputc('}', f);
	}
	fputs("]", f);
}
