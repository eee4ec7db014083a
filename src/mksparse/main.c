/* SPDX-License-Identifier: Apache-2.0 */
/* mksparse: write a fine-tune as a delta against its base. A thin front end over libsparse. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparse/sparse.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: mksparse [options] BASE_DIR FINETUNE_DIR -o DELTA_DIR\n"
		"Writes FINETUNE_DIR as a bit-exact delta against BASE_DIR; sparsefs mounts it.\n"
		"  -o, --output DIR       the delta directory to write (created if missing)\n"
		"  -c, --chunk-size N     output bytes per chunk, a power of two from 4K to 64M\n"
		"                         (default 1M)\n"
		"  -l, --level N          compression effort 1..19 (default 3)\n"
		"  -j, --threads N        encoding threads, 1..64 (default: one per CPU)\n"
		"  -q, --quiet            print nothing on success\n"
		"  -V, --version          print the version\n"
		"  -h, --help             this help\n");
}

/* A chunk size: a power of two from 4K to 64M, with an optional K or M suffix. */
static int parse_chunk_size(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	if (*end || end == s || v < SP_CHUNK_MIN || v > SP_CHUNK_MAX || (v & (v - 1)))
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || end == s || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

static void report(const char *out, const struct sp_write_stats *st)
{
	double ratio = st->ft_bytes ? (double)st->delta_bytes / (double)st->ft_bytes : 0;
	printf("mksparse: wrote %s/%s: %llu bytes, %.4f of the fine-tune's %llu bytes "
	       "(%llu tensors, %llu chunks) in %.2f s, %.1f MB/s\n",
	       out, SP_DELTA_FILE, (unsigned long long)st->delta_bytes, ratio,
	       (unsigned long long)st->ft_bytes, (unsigned long long)st->tensors,
	       (unsigned long long)st->chunks, st->seconds,
	       st->seconds > 0 ? (double)st->ft_bytes / st->seconds / 1e6 : 0.0);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'}, {"chunk-size", required_argument, NULL, 'c'},
		{"level", required_argument, NULL, 'l'},  {"threads", required_argument, NULL, 'j'},
		{"quiet", no_argument, NULL, 'q'},        {"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	struct sp_write_opts o = {0};
	const char *out = NULL;
	int c, quiet = 0;
	while ((c = getopt_long(argc, argv, "o:c:l:j:qVh", longopts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'o': out = optarg; break;
		case 'c': bad = parse_chunk_size(optarg, &o.chunk_size); break;
		case 'l': bad = parse_int(optarg, 1, 19, &o.level); break;
		case 'j': bad = parse_int(optarg, 1, 64, &o.threads); break;
		case 'q': quiet = 1; break;
		case 'V': printf("mksparse %s\n", SPARSE_VERSION_STRING); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (bad) {
			fprintf(stderr, "mksparse: -%c %s: not a valid value\n", c, optarg);
			return 2;
		}
	}
	if (argc - optind != 2 || !out) {
		usage(stderr);
		return 2;
	}
	struct sp_write_stats st;
	struct sp_err err;
	if (sp_write_delta(argv[optind], argv[optind + 1], out, &o, &st, &err)) {
		fprintf(stderr, "mksparse: %s\n", err.msg);
		return 1;
	}
	if (!quiet)
		report(out, &st);
	return 0;
}
