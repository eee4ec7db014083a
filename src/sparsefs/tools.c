/* SPDX-License-Identifier: Apache-2.0 */
#include "tools.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "extract.h"
#include "sparse/util.h"
#include "sparse/sparse.h"

static const char *codec_names[SP_CODEC_COUNT] = {"raw",   "zstd",  "base",    "delta",
						   "lossy", "patch", "history", "slice"};

/* Says why path failed; -1. */
int tool_failed(const char *path, const char *what, int err)
{
	fprintf(stderr, "sparsefs: %s: %s%s%s\n", path, what, *what ? ": " : "", strerror(err));
	return -1;
}

/* ---- --info ---- */

struct usage {
	uint64_t out, data, chunks[SP_CODEC_COUNT];
};

/* Adds what the chunks of file f spend on output bytes [off, off+len). */
static void count_range(const struct sp_delta *d, const struct sp_file_info *f, uint64_t off,
			uint64_t len, struct usage *u)
{
	for (uint64_t k = f->first_chunk; k < f->first_chunk + f->chunk_count; k++) {
		const struct sp_chunk *c = sp_delta_chunk(d, k);
		if (c->out_off + c->out_len <= off || c->out_off >= off + len)
			continue;
		u->out += c->out_len;
		u->data += sp_delta_chunk_stored(d, k);
		u->chunks[c->codec]++;
	}
}

static void codecs_str(const struct usage *u, char *buf, size_t cap)
{
	buf[0] = 0;
	for (int i = 0; i < SP_CODEC_COUNT; i++)
		if (u->chunks[i])
			snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", *buf ? "+" : "",
				 codec_names[i]);
	if (!*buf)
		snprintf(buf, cap, "empty");
}

static void shape_str(size_t ndim, const uint64_t *shape, char *buf, size_t cap)
{
	snprintf(buf, cap, "[");
	for (size_t i = 0; i < ndim; i++)
		snprintf(buf + strlen(buf), cap - strlen(buf), "%s%llu", i ? "," : "",
			 (unsigned long long)shape[i]);
	snprintf(buf + strlen(buf), cap - strlen(buf), "]");
}

static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0.0;
}

static void info_tensors(const struct sp_delta *d, size_t i)
{
	size_t n;
	const struct sp_tensor_info *t = sp_delta_tensors(d, i, &n);
	for (size_t j = 0; j < n; j++, t++) {
		struct usage u = {0};
		char shape[128], bshape[128] = "", codecs[64];
		count_range(d, sp_delta_file(d, i), t->offset, t->size, &u);
		codecs_str(&u, codecs, sizeof(codecs));
		shape_str(t->ndim, t->shape, shape, sizeof(shape));
		if (t->base_dtype)
			shape_str(t->base_ndim, t->base_shape, bshape, sizeof(bshape));
		printf("  %-48s %-7s %-14s %-11s %12llu %6.3f  %s%s%s\n", t->name, t->dtype, shape,
		       codecs, (unsigned long long)t->size, ratio(u.data, t->size),
		       t->base_dtype ? "base " : "not in base", t->base_dtype ? t->base_dtype : "",
		       bshape);
	}
}

/* How much of the fine-tune's tensors the base matched (deltas before this field: nothing). */
static void info_matched(const struct sp_base_match *mt)
{
	if (!mt)
		return;
	printf("matched    %llu of %llu tensors by name and shape, %.4f of their %llu bytes\n",
	       (unsigned long long)mt->tensors, (unsigned long long)mt->of_tensors,
	       mt->of_bytes ? (double)mt->bytes / (double)mt->of_bytes : 1.0,
	       (unsigned long long)mt->of_bytes);
}

static int do_info(struct sp_remote *r, const char *path)
{
	struct sp_err err;
	struct sp_delta *d = sp_delta_open_at(r, path, NULL, SP_OPEN_NO_BASE, &err);
	if (!d) {
		fprintf(stderr, "sparsefs: %s\n", err.msg);
		return 1;
	}
	struct sp_delta_about a;
	sp_delta_about(d, &a);
	char path_file[4096];
	snprintf(path_file, sizeof(path_file), "%s/%s", path, SP_DELTA_FILE);
	uint64_t delta_bytes = sp_delta_bytes(d);
	struct usage all = {0};
	for (size_t i = 0; i < sp_delta_file_count(d); i++) {
		const struct sp_file_info *f = sp_delta_file(d, i);
		count_range(d, f, 0, f->size, &all);
	}
	char codecs[64];
	codecs_str(&all, codecs, sizeof(codecs));
	printf("delta      %s (%llu bytes)\n", path_file, (unsigned long long)delta_bytes);
	printf("made by    %s, mode %s, chunk size %u\n", a.created_by ? a.created_by : "(unknown)",
	       a.mode, a.chunk_size);
	printf("base       %s\n", a.base_path);
	if (a.hub_id)
		printf("base id    %s@%s (commit %s)\n", a.hub_id, a.hub_revision, a.hub_commit);
	info_matched(a.match);
	printf("files      %zu, %llu bytes; the delta is %.4f of them\n", sp_delta_file_count(d),
	       (unsigned long long)all.out, ratio(delta_bytes, all.out));
	uint64_t in_files = 0;
	for (int i = 0; i < SP_CODEC_COUNT; i++)
		in_files += all.chunks[i];
	printf("chunks     %llu:", (unsigned long long)sp_delta_chunk_count(d));
	for (int i = 0; i < SP_CODEC_COUNT; i++)
		printf(" %s %llu", codec_names[i], (unsigned long long)all.chunks[i]);
	if (sp_delta_chunk_count(d) > in_files)
		printf(", auxiliary %llu (%s)", (unsigned long long)(sp_delta_chunk_count(d) - in_files),
		       !all.chunks[SP_CODEC_SLICE] ? "low-rank factors"
		       : all.chunks[SP_CODEC_LOSSY] ? "low-rank factors and packs of small files"
						    : "packs of small files");
	printf("\n\n");
	for (size_t i = 0; i < sp_delta_file_count(d); i++) {
		const struct sp_file_info *f = sp_delta_file(d, i);
		size_t nt;
		struct usage u = {0};
		count_range(d, f, 0, f->size, &u);
		codecs_str(&u, codecs, sizeof(codecs));
		printf("%-50s %12llu bytes -> %10llu (%.4f)  %s", f->name, (unsigned long long)f->size,
		       (unsigned long long)u.data, ratio(u.data, f->size), codecs);
		if (sp_delta_tensors(d, i, &nt))
			printf(", %zu tensors", nt);
		printf("\n");
		info_tensors(d, i);
	}
	sp_delta_close(d);
	return 0;
}

/* ---- --info --json ---- */

/* What a range's chunks spend, as JSON members of obj. */
static void json_usage(cJSON *obj, const struct usage *u, uint64_t size)
{
	cJSON *codecs = cJSON_AddArrayToObject(obj, "codecs");
	cJSON_AddNumberToObject(obj, "stored_bytes", (double)u->data);
	cJSON_AddNumberToObject(obj, "ratio", ratio(u->data, size));
	for (int i = 0; i < SP_CODEC_COUNT; i++)
		if (u->chunks[i])
			cJSON_AddItemToArray(codecs, cJSON_CreateString(codec_names[i]));
}

static cJSON *json_shape(size_t ndim, const uint64_t *shape)
{
	cJSON *js = cJSON_CreateArray();
	for (size_t i = 0; i < ndim; i++)
		cJSON_AddItemToArray(js, cJSON_CreateNumber((double)shape[i]));
	return js;
}

/* The manifest's tensors of file i, each with what its chunks spend. */
static cJSON *json_tensors(const struct sp_delta *d, size_t i, const struct sp_tensor_info *t,
			   size_t n)
{
	cJSON *out = cJSON_CreateArray();
	for (size_t j = 0; j < n; j++, t++) {
		struct usage u = {0};
		cJSON *js = cJSON_CreateObject();
		cJSON_AddItemToObject(js, "shape", json_shape(t->ndim, t->shape));
		cJSON_AddStringToObject(js, "name", t->name);
		cJSON_AddStringToObject(js, "dtype", t->dtype);
		cJSON_AddNumberToObject(js, "offset", (double)t->offset);
		cJSON_AddNumberToObject(js, "size", (double)t->size);
		if (t->base_dtype) {
			cJSON_AddItemToObject(js, "base_shape", json_shape(t->base_ndim, t->base_shape));
			cJSON_AddStringToObject(js, "base_dtype", t->base_dtype);
		}
		count_range(d, sp_delta_file(d, i), t->offset, t->size, &u);
		json_usage(js, &u, t->size);
		cJSON_AddItemToArray(out, js);
	}
	return out;
}

/* The base as the manifest records it, without its files' fingerprints. */
static cJSON *json_base(const struct sp_delta_about *a)
{
	cJSON *js = cJSON_CreateObject(), *o;
	cJSON_AddStringToObject(js, "path", a->base_path);
	if (a->hub_id) {
		o = cJSON_AddObjectToObject(js, "hub");
		cJSON_AddStringToObject(o, "id", a->hub_id);
		cJSON_AddStringToObject(o, "revision", a->hub_revision);
		cJSON_AddStringToObject(o, "commit", a->hub_commit);
	}
	if (a->base_relpath)
		cJSON_AddStringToObject(js, "relpath", a->base_relpath);
	if (a->match) {
		o = cJSON_AddObjectToObject(js, "matched");
		cJSON_AddNumberToObject(o, "tensors", (double)a->match->tensors);
		cJSON_AddNumberToObject(o, "of_tensors", (double)a->match->of_tensors);
		cJSON_AddNumberToObject(o, "bytes", (double)a->match->bytes);
		cJSON_AddNumberToObject(o, "of_bytes", (double)a->match->of_bytes);
	}
	return js;
}

static cJSON *json_chunks(const struct sp_delta *d, const struct usage *all)
{
	cJSON *js = cJSON_CreateObject();
	uint64_t in_files = 0;
	cJSON_AddNumberToObject(js, "total", (double)sp_delta_chunk_count(d));
	for (int i = 0; i < SP_CODEC_COUNT; i++) {
		cJSON_AddNumberToObject(js, codec_names[i], (double)all->chunks[i]);
		in_files += all->chunks[i];
	}
	cJSON_AddNumberToObject(js, "auxiliary", (double)(sp_delta_chunk_count(d) - in_files));
	return js;
}

/* --info as one JSON object: the manifest's summary members, the base (without its
 * fingerprints), and per file and tensor what is stored and how. */
static cJSON *info_json(const struct sp_delta *d, const char *path_file, uint64_t delta_bytes)
{
	struct sp_delta_about a;
	cJSON *js = cJSON_CreateObject(), *out;
	struct usage all = {0};
	sp_delta_about(d, &a);
	cJSON_AddStringToObject(js, "delta", path_file);
	cJSON_AddNumberToObject(js, "delta_bytes", (double)delta_bytes);
	if (a.created_by)
		cJSON_AddStringToObject(js, "created_by", a.created_by);
	cJSON_AddStringToObject(js, "mode", a.mode);
	cJSON_AddNumberToObject(js, "chunk_size", a.chunk_size);
	cJSON_AddItemToObject(js, "base", json_base(&a));
	out = cJSON_AddArrayToObject(js, "files");
	for (size_t i = 0; i < sp_delta_file_count(d); i++) {
		const struct sp_file_info *f = sp_delta_file(d, i);
		size_t nt;
		const struct sp_tensor_info *ts = sp_delta_tensors(d, i, &nt);
		struct usage u = {0};
		cJSON *fj = cJSON_CreateObject();
		count_range(d, f, 0, f->size, &u);
		count_range(d, f, 0, f->size, &all);
		cJSON_AddStringToObject(fj, "name", f->name);
		cJSON_AddNumberToObject(fj, "size", (double)f->size);
		if (f->link)
			cJSON_AddStringToObject(fj, "link", f->link);
		json_usage(fj, &u, f->size);
		if (ts)
			cJSON_AddItemToObject(fj, "tensors", json_tensors(d, i, ts, nt));
		cJSON_AddItemToArray(out, fj);
	}
	cJSON_AddNumberToObject(js, "files_bytes", (double)all.out);
	cJSON_AddNumberToObject(js, "ratio", ratio(delta_bytes, all.out));
	cJSON_AddItemToObject(js, "chunks", json_chunks(d, &all));
	return js;
}

static int do_info_json(struct sp_remote *r, const char *path)
{
	struct sp_err err;
	char path_file[4096];
	struct sp_delta *d = sp_delta_open_at(r, path, NULL, SP_OPEN_NO_BASE, &err);
	if (!d) {
		fprintf(stderr, "sparsefs: %s\n", err.msg);
		return 1;
	}
	snprintf(path_file, sizeof(path_file), "%s/%s", path, SP_DELTA_FILE);
	cJSON *js = info_json(d, path_file, sp_delta_bytes(d));
	char *text = cJSON_Print(js);
	/* One large write: when it fails, nothing is left in the buffer for fclose to fail on. */
	int rc = !text ? -tool_failed(path, "", ENOMEM)
		 : printf("%s\n", text) < 0 ? -tool_failed("standard output", "", errno) : 0;
	free(text);
	cJSON_Delete(js);
	sp_delta_close(d);
	return rc;
}

/* ---- --check ---- */

static int do_check(struct sp_remote *r, const char *path, const char *base)
{
	struct sp_err err;
	struct sp_delta *d = sp_delta_open_at(r, path, base, 0, &err);
	if (!d || sp_delta_check_base(d, &err)) {
		fprintf(stderr, "sparsefs: %s\n", err.msg);
		sp_delta_close(d);
		return 1;
	}
	int64_t bad = sp_delta_verify(d, NULL, &err);
	if (bad < 0)
		fprintf(stderr, "sparsefs: %s\n", err.msg);
	else
		printf("%s: %s: %lld of %llu chunks bad; the content of base %s matches\n", path,
		       bad ? "FAILED" : "ok", (long long)bad,
		       (unsigned long long)sp_delta_chunk_count(d), sp_delta_base_dir(d));
	sp_delta_close(d);
	return bad ? 1 : 0;
}

/* ---- --extract ---- */

static int do_extract(struct sp_remote *r, const char *path, const char *base, unsigned flags,
		      const char *out, unsigned threads)
{
	struct sp_err err;
	struct sp_delta *d = sp_delta_open_at(r, path, base, flags, &err);
	if (!d) {
		fprintf(stderr, "sparsefs: %s\n", err.msg);
		return 1;
	}
	int rc = extract_delta(d, out, threads);
	sp_delta_close(d);
	return rc ? 1 : 0;
}

int base_check_flags(const char *value, unsigned *flags)
{
	if (value && strcmp(value, "full") && strcmp(value, "quick")) {
		fprintf(stderr, "sparsefs: base_check=%s: full or quick\n", value);
		return -1;
	}
	*flags = value && !strcmp(value, "quick") ? 0 : SP_OPEN_CHECK_BASE;
	return 0;
}

/* ---- remote deltas: how to reach them ---- */

#define REMOTE_STR(name) {#name, offsetof(struct sp_remote_opts, name)}
static const struct {
	const char *name;
	size_t off;
} remote_strs[] = {
	REMOTE_STR(endpoint), REMOTE_STR(region),    REMOTE_STR(cafile),
	REMOTE_STR(bearer_file), REMOTE_STR(cache_dir),
};

/* A whole number within [min, max] into *out; -1 with a message naming opt. */
static int whole(const char *opt, const char *v, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long x = strtoul(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || errno || x < min || x > max) {
		fprintf(stderr, "sparsefs: %s: a whole number from %u to %u\n", opt, min, max);
		return -1;
	}
	*out = (unsigned)x;
	return 0;
}

/* The value of opt when it is NAME=VALUE, else NULL. */
static const char *value_of(const char *opt, const char *name)
{
	size_t n = strlen(name);
	return !strncmp(opt, name, n) && opt[n] == '=' ? opt + n + 1 : NULL;
}

int remote_opt(const char *opt, struct sp_remote_opts *o)
{
	static const char *const names[] = {"endpoint", "region", "cafile", "bearer_file",
					    "cache_dir", "cache_max", "max_requests", "timeout"};
	const char *v;
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
		if (!strcmp(opt, names[i])) {
			fprintf(stderr, "sparsefs: -o %s: takes a value (%s=...)\n", opt, opt);
			return -1;
		}
	for (size_t i = 0; i < sizeof(remote_strs) / sizeof(*remote_strs); i++)
		if ((v = value_of(opt, remote_strs[i].name))) {
			const char **field = (const char **)((char *)o + remote_strs[i].off);
			free((char *)*field);
			*field = strdup(v);
			return *field ? 1 : -tool_failed(opt, "", ENOMEM);
		}
	if ((v = value_of(opt, "cache_max"))) {
		if (sp_parse_size(v, &o->cache_max) == 0)
			return 1;
		fprintf(stderr, "sparsefs: %s: not a size (a number with K, M or G)\n", opt);
		return -1;
	}
	if ((v = value_of(opt, "max_requests")))
		return whole(opt, v, 1, 1024, &o->max_requests) ? -1 : 1;
	if ((v = value_of(opt, "timeout")))
		return whole(opt, v, 1, 3600, &o->timeout) ? -1 : 1;
	return 0;
}

void remote_opts_free(struct sp_remote_opts *o)
{
	for (size_t i = 0; i < sizeof(remote_strs) / sizeof(*remote_strs); i++)
		free(*(char **)((char *)o + remote_strs[i].off));
	memset(o, 0, sizeof(*o));
}

int remote_for(const char *where, const struct sp_remote_opts *o, struct sp_remote **r)
{
	struct sp_err err;
	*r = NULL;
	if (!sp_is_url(where))
		return 0;
	if ((*r = sp_remote_new(o, &err)))
		return 0;
	fprintf(stderr, "sparsefs: %s\n", err.msg);
	return -1;
}

/* What the tools take from -o. */
struct tool_opts {
	const char *base;
	unsigned flags;   /* sp_delta_open's */
	unsigned threads; /* --extract's decoders= (0: one per CPU) */
	struct sp_remote_opts ro;
};

/* -o base=DIR, base_check=full|quick, decoders=N and the remote options (as the mount takes
 * them), possibly among other comma-separated options that only the mount uses; -1 for a value
 * that is not right. */
static int parse_o(char *arg, struct tool_opts *o)
{
	const char *v;
	for (char *opt = strtok(arg, ","); opt; opt = strtok(NULL, ",")) {
		if ((v = value_of(opt, "base")))
			o->base = v;
		else if ((v = value_of(opt, "base_check")) && base_check_flags(v, &o->flags))
			return -1;
		else if ((v = value_of(opt, "decoders")) &&
			 whole(opt, v, 0, SP_THREADS_MAX, &o->threads))
			return -1;
		else if (remote_opt(opt, &o->ro) < 0)
			return -1;
	}
	return 0;
}

/* Runs the tool `mode` on the delta at where (a folder or a URL). */
static int run_tool(int mode, int json, const char *where, const struct tool_opts *o,
		    struct sp_remote *r, const char *out)
{
	if (mode == 'I')
		return json ? do_info_json(r, where) : do_info(r, where);
	if (mode == 'C')
		return do_check(r, where, o->base);
	return do_extract(r, where, o->base, o->flags, out, o->threads);
}

int tools_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"info", no_argument, NULL, 'I'},
		{"check", no_argument, NULL, 'C'},
		{"extract", no_argument, NULL, 'E'},
		{"json", no_argument, NULL, 'J'},
		{NULL, 0, NULL, 0},
	};
	struct tool_opts o = {.flags = SP_OPEN_CHECK_BASE};
	struct sp_remote *r = NULL;
	int mode = 0, json = 0, c, rc = 2;
	while ((c = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
		if (c == 'o') {
			if (parse_o(optarg, &o))
				goto out;
		} else if (c == 'I' || c == 'C' || c == 'E')
			mode = c;
		else if (c == 'J')
			json = 1;
		else
			goto out;
	}
	int want = mode == 'E' ? 2 : 1;
	if (argc - optind != want || (json && mode != 'I')) {
		fprintf(stderr, "usage: sparsefs --info [--json] [-o OPTS] DELTA | --check [-o OPTS] "
				"DELTA | --extract [-o OPTS] DELTA OUT_DIR\n");
		goto out;
	}
	rc = remote_for(argv[optind], &o.ro, &r)
		     ? 1
		     : close_stdout(run_tool(mode, json, argv[optind], &o, r, argv[optind + 1]));
	sp_remote_free(r);
out:
	remote_opts_free(&o.ro);
	return rc;
}

int close_stdout(int rc)
{
	int err = ferror(stdout);
	errno = 0;
	if ((fclose(stdout) == 0 && !err) || rc)
		return rc;
	fprintf(stderr, "sparsefs: standard output: %s\n", errno ? strerror(errno) : "write error");
	return 1;
}
