/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdio.h>

#include "sparse/sparse.h"

void sp_err_set(struct sp_err *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

static void log_stderr(const char *line)
{
	fprintf(stderr, "%s\n", line);
}

static void (*log_fn)(const char *) = log_stderr;

void sp_set_log(void (*log)(const char *line))
{
	log_fn = log ? log : log_stderr;
}

void sp_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_fn(line);
}
