/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers/restart_figures.h"
#include "util/array.h"

/* The handler's line: the resume's steps (the last seen before a record). */
static bool parse_resumed(const char *line, struct rf_record *r)
{
	const char *p = strstr(line, "(reconcile ");
	unsigned long long a, b, c, d;
	if (!p || !strstr(line, "resumed: "))
		return false;
	if (sscanf(p, "(reconcile %llu us, register %llu us, wake %llu us, protect %llu us)", &a,
		   &b, &c, &d) == 4)
		r->kind = RF_PROTECTED;
	else if (sscanf(p, "(reconcile %llu us, register %llu us, wake %llu us)", &a, &b, &c) == 3)
		r->kind = RF_OUT;
	else if (sscanf(p, "(reconcile %llu us, unregister %llu us, cleanup %llu us)", &a, &b,
			&c) == 3)
		r->kind = RF_READY;
	else
		return false;
	r->reconcile = a;
	r->reg = b;
	r->wake = c;
	return true;
}

static bool parse_record(const char *line, struct rf_record *r)
{
	const char *p = strstr(line, "restart figures: pid ");
	if (!p)
		return false;
	unsigned long long v[20];
	int pid;
	if (sscanf(p,
		   "restart figures: pid %d, start cpu %llu us wait %llu us, accept->attach %llu "
		   "us, attach %llu us (map %llu, takeover %llu, open %llu, handler %llu, uffds "
		   "%llu, resume %llu), attach cpu %llu us wait %llu us, step cpu (open %llu, "
		   "handler %llu, uffds %llu, resume %llu), at (listening %llu, accepted %llu, "
		   "replied %llu)",
		   &pid, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9],
		   &v[10], &v[11], &v[12], &v[13], &v[14], &v[15], &v[16], &v[17], &v[18]) != 20)
		return false;
	r->pid = pid;
	r->start_cpu = v[0];
	r->start_wait = v[1];
	r->accept_to_attach = v[2];
	r->attach = v[3];
	r->map = v[4];
	r->takeover = v[5];
	r->open = v[6];
	r->handler = v[7];
	r->uffds = v[8];
	r->resume = v[9];
	r->attach_cpu = v[10];
	r->attach_wait = v[11];
	r->open_cpu = v[12];
	r->handler_cpu = v[13];
	r->uffds_cpu = v[14];
	r->resume_cpu = v[15];
	r->listening_at = v[16];
	r->accepted_at = v[17];
	r->replied_at = v[18];
	return true;
}

const struct rf_record *rf_find(const struct rf_record *v, int n, int pid)
{
	for (int i = 0; i < n; i++)
		if (v[i].pid == pid)
			return &v[i];
	return NULL;
}

int rf_parse(const char *path, struct rf_record **out)
{
	*out = NULL;
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[2048];
	struct rf_record cur = {0}, *v = NULL;
	size_t n = 0, cap = 0;
	while (fgets(line, sizeof(line), f)) {
		if (parse_resumed(line, &cur))
			continue;
		struct rf_record r = cur;
		if (!parse_record(line, &r) || rf_find(v, (int)n, r.pid))
			continue;
		if (ARRAY_RESERVE(v, cap, n + 1, 64) < 0) {
			free(v);
			fclose(f);
			return -ENOMEM;
		}
		v[n++] = r;
		cur = (struct rf_record){0};
	}
	fclose(f);
	*out = v;
	return (int)n;
}
