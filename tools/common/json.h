/* SPDX-License-Identifier: MIT */
/*
 * A minimal JSON writer for the tools' --json output.  It tracks only
 * whether a comma is due, so callers write objects and arrays in order.
 */
#ifndef VSWAP_TOOLS_JSON_H
#define VSWAP_TOOLS_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json_writer {
	FILE *out;
	unsigned depth;
	bool need_comma[JSON_MAX_DEPTH];
	bool after_key;
};

void json_init(struct json_writer *w, FILE *out);
void json_begin_object(struct json_writer *w);
void json_end_object(struct json_writer *w);
void json_begin_array(struct json_writer *w);
void json_end_array(struct json_writer *w);
/* Write an object key; the next value call supplies its value. */
void json_key(struct json_writer *w, const char *key);
void json_string(struct json_writer *w, const char *s);
void json_u64(struct json_writer *w, uint64_t v);
void json_i64(struct json_writer *w, int64_t v);
void json_double(struct json_writer *w, double v);
void json_bool(struct json_writer *w, bool v);
void json_null(struct json_writer *w);
/* Finish the document with a newline. */
void json_finish(struct json_writer *w);

/* Write @s as a JSON string literal (quotes and escapes) to @out. */
void json_write_escaped(FILE *out, const char *s);

#endif /* VSWAP_TOOLS_JSON_H */
