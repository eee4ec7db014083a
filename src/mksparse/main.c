/* SPDX-License-Identifier: Apache-2.0 */
/* mksparse: write a fine-tune as a delta against its base. A thin front end over libsparse. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"
#include "sparse/sparse.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: mksparse [options] BASE_DIR FINETUNE_DIR -o DELTA_DIR\n"
		"       mksparse --adapter ADAPTER_DIR [options] BASE_DIR -o DELTA_DIR\n"
		"Writes FINETUNE_DIR as a delta against BASE_DIR (bit-exact by default), or the model\n"
		"a PEFT LoRA adapter makes of BASE_DIR, merged; sparsefs mounts it.\n"
		"  -o, --output DIR       the delta directory to write (created if missing)\n"
		"  -f, --force            replace the delta DIR already holds\n"
		"      --no-verify        do not decode the delta back before keeping it\n"
		"  -a, --adapter DIR      package this LoRA adapter (adapter_config.json and\n"
		"                         adapter_model.safetensors) against BASE_DIR\n"
		"      --map D=B          patch file D of FINETUNE_DIR against file B of BASE_DIR\n"
		"                         (default: the same path, the same name, or similar content)\n"
		"  -m, --mode MODE        lossless (default), svd or quant\n"
		"  -r, --rank R           svd: the rank of each 2-D weight's delta; quant: the rank of\n"
		"                         a low-rank part under the quantized residual (default 0)\n"
		"  -e, --energy E         svd: per tensor, the smallest rank keeping the fraction E of\n"
		"                         the delta's squared norm (up to --rank, default 1024)\n"
		"  -b, --bits B           quant: bits per residual code, 2 to 8\n"
		"  -g, --group G          quant: elements per scale (default 128)\n"
		"      --step F           quant: each group's scale is F times its RMS (codes entropy\n"
		"                         coded) instead of its largest value over the largest code\n"
		"  -s, --size BYTES       a budget for the whole delta (K/M/G suffixes): quant mode\n"
		"                         with the finest step that fits\n"
		"      --lowrank-embeddings  allow a low-rank part on embeddings and the LM head\n"
		"      --report FILE      lossy modes: write the quality report as JSON\n"
		"  -n, --dry-run          print the size the delta would have; write nothing\n"
		"                         (--estimate is the same; -o is then optional)\n"
		"  -c, --chunk-size N     output bytes per chunk, a power of two from 4K to 64M\n"
		"                         (default 256K for tensors coded losslessly, 1M else)\n"
		"  -l, --level N          compression effort 1..19 (default 3)\n"
		"  -j, --threads N        encoding threads, 1..64 (default: one per CPU)\n"
		"  -q, --quiet            print nothing on success (and no progress line, which\n"
		"                         shows on a terminal only)\n"
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

static int parse_fraction(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (*end || end == s || !(v > 0 && v <= 1))
		return -1;
	*out = v;
	return 0;
}

static int parse_bytes(const char *s, uint64_t *out)
{
	return sp_parse_size(s, out) || !*out ? -1 : 0;
}

static int parse_positive(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (*end || end == s || !(v > 0 && v < 1e6))
		return -1;
	*out = v;
	return 0;
}

static int parse_mode(const char *s, enum sp_mode *out)
{
	static const char *names[] = {"lossless", "svd", "quant"};
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, names[i])) {
			*out = (enum sp_mode)i;
			return 0;
		}
	return -1;
}

static void summary(const char *out, const struct sp_write_opts *o, const struct sp_write_stats *st)
{
	double ratio = st->ft_bytes ? (double)st->delta_bytes / (double)st->ft_bytes : 0;
	if (o->dry_run)
		printf("mksparse: the delta would be");
	else
		printf("mksparse: wrote %s/%s:", out, SP_DELTA_FILE);
	printf(" %llu bytes, %.4f of the fine-tune's %llu bytes "
	       "(%llu tensors, %llu chunks) in %.2f s, %.1f MB/s\n",
	       (unsigned long long)st->delta_bytes, ratio, (unsigned long long)st->ft_bytes,
	       (unsigned long long)st->tensors, (unsigned long long)st->chunks, st->seconds,
	       st->seconds > 0 ? (double)st->ft_bytes / st->seconds / 1e6 : 0.0);
}

static double num(const cJSON *obj, const char *key)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsNumber(js) ? js->valuedouble : 0;
}

/* The quality report as a table: per tensor, how it was coded and its relative errors. */
static void print_report(const cJSON *report)
{
	const cJSON *t, *total = cJSON_GetObjectItemCaseSensitive(report, "total");
	printf("%-48s %-13s %5s %4s %12s %10s %10s\n", "tensor", "coding", "rank", "bits", "bytes",
	       "delta err", "weight err");
	cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(report, "tensors"))
		printf("%-48s %-13s %5.0f %4.0f %12.0f %10.4f %10.6f\n",
		       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name")),
		       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "coding")),
		       num(t, "rank"), num(t, "bits"), num(t, "bytes"), num(t, "delta_rel_err"),
		       num(t, "weight_rel_err"));
	printf("%-48s %-13s %5s %4s %12.0f %10.4f %10.6f\n", "total (relative Frobenius errors)",
	       "", "", "", num(total, "bytes"), num(total, "delta_rel_err"),
	       num(total, "weight_rel_err"));
}

static int write_report(const char *path, const cJSON *report)
{
	char *json = cJSON_Print(report);
	FILE *f = json ? fopen(path, "w") : NULL;
	int e = 0; /* the errno of the first call that failed */
	if (!json)
		e = ENOMEM;
	else if (!f || fputs(json, f) < 0 || fputc('\n', f) == EOF)
		e = errno;
	if (f && fclose(f) && !e)
		e = errno;
	free(json);
	if (e)
		fprintf(stderr, "mksparse: %s: %s\n", path, strerror(e));
	return e ? -1 : 0;
}

/* What was printed reached standard output: a full disk says so only when it is flushed. */
static int stdout_ok(void)
{
	int flushed = fflush(stdout) == 0;
	if (flushed && !ferror(stdout))
		return 1;
	fprintf(stderr, "mksparse: standard output: %s\n",
		flushed ? "an earlier write failed" : strerror(errno));
	return 0;
}

/* Below this share of the fine-tune's tensor bytes coded against the base, the base is most
 * likely not the one it was fine-tuned from (a fine-tune shares every shape with its base). */
#define MATCH_WARN 0.5

/* Said even with -q: a script that asks for quiet is where a wrong base would go unseen. */
static void warn_unmatched(const char *base, const char *ft, const struct sp_base_match *m)
{
	double share = m->of_bytes ? (double)m->bytes / (double)m->of_bytes : 1;
	if (share >= MATCH_WARN)
		return;
	progress_break();
	fprintf(stderr,
		"mksparse: warning: %s matches little of %s: %llu of %llu tensors, %.4f of their "
		"%llu bytes, are coded against a base tensor of the same name and shape; the rest "
		"is stored whole. Is %s the model %s was fine-tuned from?\n",
		base, ft, (unsigned long long)m->tensors, (unsigned long long)m->of_tensors, share,
		(unsigned long long)m->of_bytes, base, ft);
}

enum { OPT_REPORT = 256, OPT_LOWRANK_EMBEDDINGS, OPT_STEP, OPT_MAP, OPT_NO_VERIFY };

#define MAX_MAPS 1024

static const struct option longopts[] = {
	{"output", required_argument, NULL, 'o'},
	{"force", no_argument, NULL, 'f'},
	{"no-verify", no_argument, NULL, OPT_NO_VERIFY},
	{"adapter", required_argument, NULL, 'a'},
	{"map", required_argument, NULL, OPT_MAP},
	{"mode", required_argument, NULL, 'm'},
	{"rank", required_argument, NULL, 'r'},
	{"energy", required_argument, NULL, 'e'},
	{"bits", required_argument, NULL, 'b'},
	{"group", required_argument, NULL, 'g'},
	{"step", required_argument, NULL, OPT_STEP},
	{"size", required_argument, NULL, 's'},
	{"lowrank-embeddings", no_argument, NULL, OPT_LOWRANK_EMBEDDINGS},
	{"report", required_argument, NULL, OPT_REPORT},
	{"dry-run", no_argument, NULL, 'n'},
	{"estimate", no_argument, NULL, 'n'},
	{"chunk-size", required_argument, NULL, 'c'},
	{"level", required_argument, NULL, 'l'},
	{"threads", required_argument, NULL, 'j'},
	{"quiet", no_argument, NULL, 'q'},
	{"version", no_argument, NULL, 'V'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static const char *option_name(int opt)
{
	for (const struct option *o = longopts; o->name; o++)
		if (o->val == opt)
			return o->name;
	return "?";
}

struct cli {
	struct sp_write_opts o;
	const char *out, *report, *adapter;
	const char *maps[MAX_MAPS];
	int quiet, force, no_verify;
};

/* One option into cli; -1 for a bad value. */
static int take(struct cli *c, int opt, const char *arg)
{
	int v;
	switch (opt) {
	case 'o': c->out = arg; return 0;
	case 'f': c->force = 1; return 0;
	case OPT_NO_VERIFY: c->no_verify = 1; return 0;
	case 'a': c->adapter = arg; return 0;
	case 'm': return parse_mode(arg, &c->o.mode);
	case 'r': return parse_int(arg, 0, 4096, &v) ? -1 : (c->o.rank = (uint32_t)v, 0);
	case 'e': return parse_fraction(arg, &c->o.energy);
	case 'b': return parse_int(arg, 2, 8, &c->o.bits);
	case 'g': return parse_int(arg, 1, 1 << 20, &v) ? -1 : (c->o.group = (uint32_t)v, 0);
	case OPT_STEP: return parse_positive(arg, &c->o.step);
	case OPT_MAP:
		if (!strchr(arg, '=') || c->o.nmap == MAX_MAPS)
			return -1;
		c->maps[c->o.nmap++] = arg;
		c->o.map = c->maps;
		return 0;
	case 's': return parse_bytes(arg, &c->o.size);
	case OPT_LOWRANK_EMBEDDINGS: c->o.lowrank_embeddings = 1; return 0;
	case OPT_REPORT: c->report = arg; return 0;
	case 'n': c->o.dry_run = 1; return 0;
	case 'c': return parse_chunk_size(arg, &c->o.chunk_size);
	case 'l': return parse_int(arg, 1, 19, &c->o.level);
	case 'j': return parse_int(arg, 1, 64, &c->o.threads);
	case 'q': c->quiet = 1; return 0;
	default: return -1;
	}
}

static int quiet_log;

/* The library's notes (a compressed input), unless -q. */
static void log_note(const char *line)
{
	progress_break();
	if (!quiet_log)
		fprintf(stderr, "mksparse: %s\n", line);
}

/* Ctrl-C or a kill: the temporary file goes, then the process ends as the signal says. */
static void on_signal(int sig)
{
	static const char msg[] = "mksparse: interrupted: no delta written\n";
	sp_write_remove_temp();
	ssize_t said = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)said;
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_signals(void)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* An output inside an input (or around one): the next run would read the delta as one of the
 * model's files. A dry run writes nothing and is not refused. */
static int output_overlaps(const struct cli *c, char **argv)
{
	const char *inputs[2] = {argv[0], c->adapter ? c->adapter : argv[1]};
	const char *roles[2] = {"the base", c->adapter ? "the adapter" : "the fine-tune"};
	struct sp_err err;
	if (c->o.dry_run || sp_write_check_output(c->out, inputs, roles, 2, &err) == 0)
		return 0;
	fprintf(stderr, "mksparse: %s\n", err.msg);
	return 1;
}

/* A delta already there is replaced only when asked (it stays as it was if writing fails). */
static int output_taken(const struct cli *c)
{
	if (c->force || c->o.dry_run || !sp_is_delta_dir(c->out))
		return 0;
	fprintf(stderr, "mksparse: %s already holds a delta (%s); --force replaces it\n", c->out,
		SP_DELTA_FILE);
	return 1;
}

int main(int argc, char **argv)
{
	struct cli c = {0};
	int opt;
	while ((opt = getopt_long(argc, argv, "o:fa:m:r:e:b:g:s:nc:l:j:qVh", longopts, NULL)) != -1) {
		if (opt == 'V' || opt == 'h') {
			opt == 'V' ? (void)printf("mksparse %s\n", SPARSE_VERSION_STRING) : usage(stdout);
			return 0;
		}
		if (opt == '?') {
			usage(stderr);
			return 2;
		}
		if (take(&c, opt, optarg)) {
			fprintf(stderr, "mksparse: --%s %s: not a valid value\n", option_name(opt), optarg);
			return 2;
		}
	}
	if (!c.out && c.o.dry_run)
		c.out = "."; /* a dry run writes nothing: where is only a relative path to the base */
	if (argc - optind != (c.adapter ? 1 : 2) || !c.out) {
		usage(stderr);
		return 2;
	}
	if (c.report && (c.adapter || (c.o.mode == SP_MODE_LOSSLESS && !c.o.size))) {
		fprintf(stderr, "mksparse: --report: only lossy modes have a quality report\n");
		return 2;
	}
	if (output_overlaps(&c, argv + optind))
		return 2;
	if (output_taken(&c))
		return 1;
	c.o.verify = !c.no_verify;
	catch_signals();
	struct sp_write_stats st;
	struct sp_err err;
	quiet_log = c.quiet;
	sp_set_log(log_note);
	if (!c.quiet && isatty(STDERR_FILENO)) /* a progress line only where someone watches */
		c.o.progress = progress_line;
	int failed = c.adapter ? sp_write_adapter(c.adapter, argv[optind], c.out, &c.o, &st, &err)
			       : sp_write_delta(argv[optind], argv[optind + 1], c.out, &c.o, &st, &err);
	if (failed) {
		progress_break();
		fprintf(stderr, "mksparse: %s\n", err.msg);
		return 1;
	}
	int rc = st.report && c.report ? write_report(c.report, st.report) : 0;
	if (!c.quiet && st.report)
		print_report(st.report);
	if (!c.quiet)
		summary(c.out, &c.o, &st);
	if (!c.adapter)
		warn_unmatched(argv[optind], argv[optind + 1], &st.match);
	cJSON_Delete(st.report);
	return rc || !stdout_ok() ? 1 : 0;
}
