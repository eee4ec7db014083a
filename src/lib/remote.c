/* SPDX-License-Identifier: Apache-2.0 */
/* Deltas by where they are: a local folder, or a URL whose scheme says how its delta.sparse is
 * read and how a prefix of deltas is listed (sparse/remote.h). */
#include "sparse/remote.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "blockcache.h"
#include "delta.h"
#include "http.h"
#include "s3.h"
#include "source_remote.h"

struct sp_remote {
	struct sp_http *http;
	struct sp_remote_mem *mem;
	struct sp_blockcache *cache; /* NULL: none */
	/* s3://'s endpoint, region and credentials; when they could not be read, why (told on
	 * the first s3:// URL, so that a mistake there does not stop http(s):// deltas) */
	struct sp_s3 s3;
	int s3_ok;
	struct sp_err s3_err;
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
	r->s3_ok = !sp_s3_init(&r->s3, o->endpoint, o->region, &r->s3_err);
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
	if (r->s3_ok)
		sp_s3_free(&r->s3);
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

/* ---- s3:// ---- */

/* A ListObjectsV2 page: at most 1000 keys of at most 1 KiB (5 KiB escaped) and a few hundred
 * bytes about each, well under this. */
#define S3_PAGE_MAX (8u << 20)
/* Pages of one listing at most (10 million keys), so that a store that never ends one ends. */
#define S3_PAGES 10000

static int s3_sign(void *state, CURL *easy, struct curl_slist **headers)
{
	return sp_s3_sign(state, easy, headers);
}

/* What S3 usually means by a status, after the error that names it. */
static void s3_hint(long status, struct sp_err *err)
{
	const char *hint = status == 403 ? "; check the AWS credentials (AWS_ACCESS_KEY_ID, "
					   "AWS_PROFILE) and the region"
			   : status == 301 || status == 307 ? "; the bucket is in another region "
							      "(-o region=)"
			   : status == 404 ? "; no such bucket or key" : NULL;
	if (hint && strlen(err->msg) + strlen(hint) < sizeof(err->msg))
		strcat(err->msg, hint);
}

/* The bucket of s3://BUCKET/KEY and its key (malloc'd), a folder's: no '/' at its end and none
 * doubled, as in a path (a prefix and a name joined with '/' name the folder below). */
static int s3_where(struct sp_remote *r, const char *where, char **bucket, char **key,
		    struct sp_err *err)
{
	if (!r->s3_ok) {
		sp_err_set(err, "%s: %s", where, r->s3_err.msg);
		return -1;
	}
	if (sp_s3_split(where, bucket, key)) {
		sp_err_set(err, "%s: not s3://BUCKET/PREFIX (a bucket's name has only letters, "
			   "digits, '.', '-' and '_')", where);
		return -1;
	}
	char *to = *key;
	for (const char *from = *key; *from; from++)
		if (*from != '/' || (to > *key && to[-1] != '/'))
			*to++ = *from;
	if (to > *key && to[-1] == '/')
		to--;
	*to = 0;
	return 0;
}

static struct sp_source *s3_open(struct sp_remote *r, const char *where, char **shown,
				 struct sp_err *err)
{
	char *bucket, *key, *object = NULL, *url = NULL;
	struct sp_source *src = NULL;
	long status;
	if (s3_where(r, where, &bucket, &key, err))
		return NULL;
	if (asprintf(&object, "%s%s%s", key, *key ? "/" : "", SP_DELTA_FILE) < 0)
		object = NULL;
	if (!object || !(url = sp_s3_object_url(&r->s3, bucket, object)) ||
	    asprintf(shown, "s3://%s/%s", bucket, object) < 0) {
		*shown = NULL;
		sp_err_set(err, "%s: out of memory", where);
	} else if (!(src = sp_source_remote_open(r->http, r->mem, r->cache, url, s3_sign, &r->s3,
						 &status, err))) {
		s3_hint(status, err);
	}
	free(bucket);
	free(key);
	free(object);
	free(url);
	return src;
}

/* The deltas of a listing: PREFIX/delta.sparse (the prefix is one) and PREFIX/NAME/delta.sparse
 * for each NAME that can be a folder's. */
struct s3_listing {
	const char *prefix;
	size_t plen;
	int itself;
	char **names;
	size_t n, cap;
	struct sp_err *err;
};

static int s3_key(const char *k, void *arg)
{
	struct s3_listing *l = arg;
	if (strncmp(k, l->prefix, l->plen))
		return 0;
	const char *rest = k + l->plen, *slash = strchr(rest, '/');
	size_t len = slash ? (size_t)(slash - rest) : 0;
	if (!strcmp(rest, SP_DELTA_FILE))
		l->itself = 1;
	if (!slash || strcmp(slash + 1, SP_DELTA_FILE) || !len || len > NAME_MAX ||
	    (rest[0] == '.' && (len == 1 || (len == 2 && rest[1] == '.'))))
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		char **names = realloc(l->names, cap * sizeof(*names));
		if (!names)
			goto oom;
		l->names = names;
		l->cap = cap;
	}
	if ((l->names[l->n] = strndup(rest, len))) {
		l->n++;
		return 0;
	}
oom:
	sp_err_set(l->err, "out of memory");
	return -1;
}

/* One page of the listing, after *token (NULL: the first), whose answer sets *token to the
 * next page's (NULL: none). body: S3_PAGE_MAX bytes. */
static int s3_page(struct sp_remote *r, const char *where, const char *bucket,
		   struct s3_listing *l, char **token, char *body, struct sp_err *err)
{
	char *url = sp_s3_list_url(&r->s3, bucket, l->prefix, *token), *next = NULL;
	size_t got;
	long status;
	struct sp_err why;
	int rc = -1;
	if (!url)
		sp_err_set(err, "%s: out of memory", where);
	else if (sp_http_fetch(r->http, url, s3_sign, &r->s3, body, S3_PAGE_MAX, &got, &status,
			       err))
		s3_hint(status, err);
	else if (sp_s3_list_parse(body, got, s3_key, l, &next, &why))
		sp_err_set(err, "%s: %s", where, why.msg);
	else if (next && *token && !strcmp(next, *token))
		sp_err_set(err, "%s: the store gave the same continuation token twice", where);
	else
		rc = 0;
	free(*token);
	*token = next;
	free(url);
	return rc;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists every key under PREFIX/ (no delimiter: one request per 1000 keys, which says both
 * whether PREFIX is a delta and which folders below it are, where a delimiter would need a
 * request per folder to tell a delta from any other folder). */
static int s3_list(struct sp_remote *r, const char *where, char ***names, size_t *n,
		   struct sp_err *err)
{
	char *bucket, *key, *prefix = NULL, *token = NULL, *body;
	struct s3_listing l = {.err = err};
	int rc = -1;
	if (s3_where(r, where, &bucket, &key, err))
		return -1;
	if (asprintf(&prefix, "%s%s", key, *key ? "/" : "") < 0)
		prefix = NULL;
	body = malloc(S3_PAGE_MAX);
	l.prefix = prefix;
	l.plen = prefix ? strlen(prefix) : 0;
	if (!prefix || !body)
		sp_err_set(err, "%s: out of memory", where);
	for (int page = 0; prefix && body && (page == 0 || token); page++) {
		if (page == S3_PAGES) {
			sp_err_set(err, "%s: a listing of more than %d pages", where, S3_PAGES);
			break;
		}
		if ((rc = s3_page(r, where, bucket, &l, &token, body, err)))
			break;
	}
	if (rc == 0 && !l.itself && !l.n) {
		sp_err_set(err, "%s: neither a delta (no %s) nor a prefix of deltas (no "
			   "NAME/%s below it)", where, SP_DELTA_FILE, SP_DELTA_FILE);
		rc = -1;
	}
	if (rc == 0 && !l.itself) {
		qsort(l.names, l.n, sizeof(*l.names), by_name);
		*names = l.names;
		*n = l.n;
	} else {
		for (size_t i = 0; i < l.n; i++)
			free(l.names[i]);
		free(l.names);
	}
	free(token);
	free(body);
	free(prefix);
	free(bucket);
	free(key);
	return rc < 0 ? -1 : l.itself;
}

static const struct scheme schemes[] = {
	{"http://", http_open, http_list},
	{"https://", http_open, http_list},
	{"s3://", s3_open, s3_list},
};

/* where as it may be shown: an http(s) URL without what may hold credentials; an s3 URL
 * holds none. */
static char *shown_where(const char *where)
{
	return !strncasecmp(where, "s3://", 5) ? strdup(where) : sp_http_shown(where);
}

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
	char *shown = shown_where(where);
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
	if (src && !(dir = shown_where(where))) {
		sp_err_set(err, "%s: out of memory", shown);
		sp_source_close(src);
	} else if (src && (d = sp_delta_open_source(dir, shown, src, base_dir, flags, err))) {
		sp_source_remote_opened(src);
	}
	free(dir);
	free(shown);
	return d;
}
