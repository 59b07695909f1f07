/* SPDX-License-Identifier: MIT */
/*
 * The one JSON writer of the tools' --json output.  It tracks only whether
 * a comma is due, so callers write objects and arrays in order.  Every
 * document a tool prints is an object that starts with "schema_version"
 * (json_begin_document()): a consumer checks it, and the number grows when a
 * field changes meaning or goes away (adding a field does not change it).
 * Strings are written as valid UTF-8: a byte that is not part of a valid
 * UTF-8 sequence (a path is any bytes) becomes U+FFFD.
 */
#ifndef VSWAP_TOOLS_JSON_H
#define VSWAP_TOOLS_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16
/* The version of every tool's JSON documents. */
#define JSON_SCHEMA_VERSION 1

struct json_writer {
	FILE *out;
	unsigned depth;
	bool need_comma[JSON_MAX_DEPTH];
	bool after_key;
};

void json_init(struct json_writer *w, FILE *out);
/* Begin the top-level object and write its "schema_version" member. */
void json_begin_document(struct json_writer *w);
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
/* A value that is already JSON (the library's status JSON), written as is. */
void json_raw(struct json_writer *w, const char *json);
/* Finish the document with a newline. */
void json_finish(struct json_writer *w);

/* Write @s as a JSON string literal (quotes and escapes) to @out. */
void json_write_escaped(FILE *out, const char *s);

#endif /* VSWAP_TOOLS_JSON_H */
