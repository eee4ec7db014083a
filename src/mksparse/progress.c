/* SPDX-License-Identifier: Apache-2.0 */
#include "progress.h"

#include <stdio.h>

/* A byte count in the largest unit that keeps it at or above 1. */
static void human(double v, char *out, size_t len)
{
	static const char *units[] = {"B", "KB", "MB", "GB", "TB"};
	int u = 0;
	while (v >= 1000 && u < 4)
		v /= 1000, u++;
	snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static int open_line; /* a line is drawn and not ended */

void progress_break(void)
{
	if (open_line)
		fputc('\n', stderr);
	open_line = 0;
}

void progress_line(const struct sp_progress *p, void *arg)
{
	(void)arg;
	char done[32], total[32], rate[32], eta[32] = "--:--";
	double bps = p->seconds > 0 ? (double)p->bytes_done / p->seconds : 0;
	human((double)p->bytes_done, done, sizeof(done));
	human((double)p->bytes, total, sizeof(total));
	human(bps, rate, sizeof(rate));
	if (p->final) {
		snprintf(eta, sizeof(eta), "done in %.1f s", p->seconds);
	} else if (bps > 0) {
		unsigned long s = (unsigned long)((double)(p->bytes - p->bytes_done) / bps);
		snprintf(eta, sizeof(eta), "ETA %lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	}
	/* \r redraws; the trailing spaces cover a longer previous line. */
	fprintf(stderr, "\rmksparse: files %llu/%llu, tensors %llu/%llu, %s/%s, %s/s, %s    %s",
		(unsigned long long)p->files_done, (unsigned long long)p->files,
		(unsigned long long)p->tensors_done, (unsigned long long)p->tensors, done, total,
		rate, eta, p->final ? "\n" : "");
	fflush(stderr);
	open_line = !p->final;
}
