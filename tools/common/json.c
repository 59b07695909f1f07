/* SPDX-License-Identifier: MIT */
#include "tools/common/json.h"

#include <inttypes.h>
#include <math.h>

void json_init(struct json_writer *w, FILE *out)
{
	w->out = out;
	w->depth = 0;
	w->need_comma[0] = false;
	w->after_key = false;
}

/* Emit the separator a new value needs: none after a key, a comma after a
 * sibling. */
static void json_value_prefix(struct json_writer *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->need_comma[w->depth])
		fputc(',', w->out);
	w->need_comma[w->depth] = true;
}

static void json_open(struct json_writer *w, char c)
{
	json_value_prefix(w);
	fputc(c, w->out);
	if (w->depth + 1 < JSON_MAX_DEPTH)
		w->depth++;
	w->need_comma[w->depth] = false;
}

static void json_close(struct json_writer *w, char c)
{
	fputc(c, w->out);
	if (w->depth)
		w->depth--;
}

void json_begin_object(struct json_writer *w)
{
	json_open(w, '{');
}
void json_end_object(struct json_writer *w)
{
	json_close(w, '}');
}
void json_begin_array(struct json_writer *w)
{
	json_open(w, '[');
}
void json_end_array(struct json_writer *w)
{
	json_close(w, ']');
}

void json_begin_document(struct json_writer *w)
{
	json_begin_object(w);
	json_key(w, "schema_version");
	json_u64(w, JSON_SCHEMA_VERSION);
}

/*
 * The length of the valid UTF-8 sequence at @p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0 if there is none.
 * @p[0] is at least 0x80; the string is NUL-terminated, so a truncated
 * sequence stops at the NUL, which is never a continuation byte.
 */
static size_t utf8_sequence(const unsigned char *p)
{
	unsigned c = p[0];
	size_t n;
	unsigned min;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	unsigned cp = c & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

void json_write_escaped(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
		if (*p >= 0x80) {
			size_t n = utf8_sequence(p);
			if (n == 0) {
				fputs("\\ufffd", out);
				continue;
			}
			fwrite(p, 1, n, out);
			p += n - 1;
			continue;
		}
		switch (*p) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		default:
			if (*p < 0x20)
				fprintf(out, "\\u%04x", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

void json_key(struct json_writer *w, const char *key)
{
	json_value_prefix(w);
	json_write_escaped(w->out, key);
	fputc(':', w->out);
	w->after_key = true;
}

void json_string(struct json_writer *w, const char *s)
{
	json_value_prefix(w);
	if (s)
		json_write_escaped(w->out, s);
	else
		fputs("null", w->out);
}

void json_u64(struct json_writer *w, uint64_t v)
{
	json_value_prefix(w);
	fprintf(w->out, "%" PRIu64, v);
}

void json_i64(struct json_writer *w, int64_t v)
{
	json_value_prefix(w);
	fprintf(w->out, "%" PRId64, v);
}

void json_double(struct json_writer *w, double v)
{
	json_value_prefix(w);
	if (isfinite(v))
		fprintf(w->out, "%.6g", v);
	else
		fputs("null", w->out);
}

void json_bool(struct json_writer *w, bool v)
{
	json_value_prefix(w);
	fputs(v ? "true" : "false", w->out);
}

void json_null(struct json_writer *w)
{
	json_value_prefix(w);
	fputs("null", w->out);
}

void json_raw(struct json_writer *w, const char *json)
{
	json_value_prefix(w);
	fputs(json && *json ? json : "null", w->out);
}

void json_finish(struct json_writer *w)
{
	fputc('\n', w->out);
	fflush(w->out);
}
