/* SPDX-License-Identifier: Apache-2.0 */
/* Deltas by where they are: a local folder, or a URL whose scheme says how its delta.sparse is
 * read and how a prefix of deltas is listed (sparse/remote.h). */
#include "sparse/remote.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "blockcache.h"
#include "delta.h"
#include "http.h"
#include "source_remote.h"

struct sp_remote {
	struct sp_http *http;
	struct sp_remote_mem *mem;
	struct sp_blockcache *cache; /* NULL: none */
};

/* What a URL scheme does: open the delta.sparse of the delta at a URL (the object's URL to
 * show in *shown), and list what the URL holds (as sp_list_deltas). */
struct scheme {
	const char *prefix;
	struct sp_source *(*open)(struct sp_remote *r, const char *where, char **shown,
				  struct sp_err *err);
	int (*list)(struct sp_remote *r, const char *where, char ***names, size_t *n,
		    struct sp_err *err);
};

int sp_is_url(const char *s)
{
	return !strncasecmp(s, "http://", 7) || !strncasecmp(s, "https://", 8) ||
	       !strncasecmp(s, "s3://", 5);
}

/* The first line of path, a bearer token (malloc'd). */
static char *read_token(const char *path, struct sp_err *err)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = f ? getline(&line, &cap, f) : -1;
	int e = errno;
	if (f)
		fclose(f);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = 0;
	if (n > 0)
		return line;
	sp_err_set(err, "%s: %s", path, !f ? strerror(e) : "no bearer token on its first line");
	free(line);
	return NULL;
}

/* The chunk cache where o says, else under XDG_CACHE_HOME or ~/.cache; none for "". One that
 * cannot be opened is said once and done without. */
static struct sp_blockcache *open_cache(const struct sp_remote_opts *o)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char *dir = NULL;
	if (o->cache_dir && !o->cache_dir[0])
		return NULL;
	int rc = 0;
	if (o->cache_dir)
		dir = strdup(o->cache_dir);
	else if (xdg && xdg[0] == '/')
		rc = asprintf(&dir, "%s/sparse/remote", xdg);
	else if (home && home[0])
		rc = asprintf(&dir, "%s/.cache/sparse/remote", home);
	if (rc < 0)
		dir = NULL;
	struct sp_err err = {{0}};
	struct sp_blockcache *c = dir ? sp_blockcache_open(dir, o->cache_max, &err) : NULL;
	if (!c)
		sp_log("%s; remote deltas are read without a chunk cache on disk",
		       err.msg[0] ? err.msg : "no folder for the chunk cache (no HOME)");
	free(dir);
	return c;
}

struct sp_remote *sp_remote_new(const struct sp_remote_opts *o, struct sp_err *err)
{
	struct sp_remote *r = calloc(1, sizeof(*r));
	char *token = NULL;
	if (!r) {
		sp_err_set(err, "remote deltas: out of memory");
		return NULL;
	}
	if (o->bearer_file && !(token = read_token(o->bearer_file, err)))
		goto fail;
	struct sp_http_opts ho = {.cafile = o->cafile, .bearer = token,
				  .max_requests = o->max_requests, .timeout = o->timeout};
	r->http = sp_http_new(&ho, err);
	if (token)
		memset(token, 0, strlen(token));
	free(token);
	if (!r->http)
		goto fail;
	if (!(r->mem = sp_remote_mem_new(0))) {
		sp_err_set(err, "remote deltas: out of memory");
		goto fail;
	}
	r->cache = open_cache(o);
	return r;
fail:
	sp_remote_free(r);
	return NULL;
}

void sp_remote_free(struct sp_remote *r)
{
	if (!r)
		return;
	sp_http_free(r->http);
	sp_remote_mem_free(r->mem);
	sp_blockcache_close(r->cache);
	free(r);
}

/* where/delta.sparse, with no doubled slash. */
static char *object_url(const char *where)
{
	size_t n = strlen(where);
	while (n > 0 && where[n - 1] == '/')
		n--;
	char *url;
	return asprintf(&url, "%.*s/%s", (int)n, where, SP_DELTA_FILE) < 0 ? NULL : url;
}

/* ---- http(s):// ---- */

static const char NO_LISTING[] =
	"; an http(s) URL names one delta folder (a server cannot be asked for a listing)";

static struct sp_source *http_open(struct sp_remote *r, const char *where, char **shown,
				   struct sp_err *err)
{
	char *url = object_url(where);
	long status;
	if (!url || !(*shown = sp_http_shown(url))) {
		free(url);
		sp_err_set(err, "%s: out of memory", where);
		return NULL;
	}
	struct sp_source *src = sp_source_remote_open(r->http, r->mem, r->cache, url, NULL, NULL,
							 &status, err);
	if (!src && status == 404 && strlen(err->msg) + sizeof(NO_LISTING) < sizeof(err->msg))
		strcat(err->msg, NO_LISTING);
	free(url);
	return src;
}

/* A URL is one delta: it is, when its delta.sparse answers a range request. */
static int http_list(struct sp_remote *r, const char *where, char ***names, size_t *n,
		     struct sp_err *err)
{
	char *url = object_url(where), byte;
	size_t got;
	long status;
	*names = NULL;
	*n = 0;
	if (!url) {
		sp_err_set(err, "%s: out of memory", where);
		return -1;
	}
	struct sp_http_object *o =
		sp_http_object_open(r->http, url, NULL, NULL, &byte, 1, &got, &status, err);
	free(url);
	if (!o && status == 404 && strlen(err->msg) + sizeof(NO_LISTING) < sizeof(err->msg))
		strcat(err->msg, NO_LISTING);
	sp_http_object_close(o);
	return o ? 1 : -1;
}

static const struct scheme schemes[] = {
	{"http://", http_open, http_list},
	{"https://", http_open, http_list},
};

static const struct scheme *scheme_of(const char *where)
{
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (!strncasecmp(where, schemes[i].prefix, strlen(schemes[i].prefix)))
			return &schemes[i];
	return NULL;
}

/* The scheme for a URL, or NULL with why in err. */
static const struct scheme *url_scheme(struct sp_remote *r, const char *where, struct sp_err *err)
{
	const struct scheme *s = scheme_of(where);
	char *shown = sp_http_shown(where);
	if (!s)
		sp_err_set(err, "%s: this kind of URL is not supported", shown ? shown : "a URL");
	else if (!r)
		sp_err_set(err, "%s: a remote delta, read without remote access set up",
			   shown ? shown : "a URL");
	free(shown);
	return s && r ? s : NULL;
}

/* ---- local folders ---- */

static int list_local(const char *where, char ***names, size_t *n, struct sp_err *err)
{
	struct dirent **ents;
	*names = NULL;
	*n = 0;
	if (sp_is_delta_dir(where))
		return 1;
	int k = scandir(where, &ents, NULL, alphasort), rc = 0;
	if (k < 0) {
		sp_err_set(err, "%s: %s", where, strerror(errno));
		return -1;
	}
	if (!(*names = calloc((size_t)k + 1, sizeof(**names))))
		rc = -1;
	for (int i = 0; i < k; i++) {
		char *sub = NULL;
		if (rc == 0 && ents[i]->d_name[0] != '.' &&
		    asprintf(&sub, "%s/%s", where, ents[i]->d_name) > 0 && sp_is_delta_dir(sub) &&
		    !((*names)[(*n)++] = strdup(ents[i]->d_name)))
			rc = -1;
		free(sub);
		free(ents[i]);
	}
	free(ents);
	if (rc == 0 && *n == 0)
		sp_err_set(err, "%s: neither a delta (no %s) nor a directory of deltas", where,
			   SP_DELTA_FILE);
	else if (rc)
		sp_err_set(err, "%s: out of memory", where);
	if (rc || *n == 0) {
		for (size_t i = 0; i < *n; i++)
			free((*names)[i]);
		free(*names);
		*names = NULL;
		*n = 0;
		return -1;
	}
	return 0;
}

int sp_list_deltas(struct sp_remote *r, const char *where, char ***names, size_t *n,
		   struct sp_err *err)
{
	if (!sp_is_url(where))
		return list_local(where, names, n, err);
	const struct scheme *s = url_scheme(r, where, err);
	*names = NULL;
	*n = 0;
	return s ? s->list(r, where, names, n, err) : -1;
}

struct sp_delta *sp_delta_open_at(struct sp_remote *r, const char *where, const char *base_dir,
				  unsigned flags, struct sp_err *err)
{
	if (!sp_is_url(where))
		return sp_delta_open(where, base_dir, flags, err);
	const struct scheme *s = url_scheme(r, where, err);
	char *shown = NULL, *dir = NULL;
	struct sp_source *src = s ? s->open(r, where, &shown, err) : NULL;
	struct sp_delta *d = NULL;
	if (src && !(dir = sp_http_shown(where))) {
		sp_err_set(err, "%s: out of memory", shown);
		sp_source_close(src);
	} else if (src && (d = sp_delta_open_source(dir, shown, src, base_dir, flags, err))) {
		sp_source_remote_opened(src);
	}
	free(dir);
	free(shown);
	return d;
}
