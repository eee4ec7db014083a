/* SPDX-License-Identifier: Apache-2.0 */
/* Single-range GETs with libcurl: on the calling thread (open time), or on one transfer thread
 * driving a curl multi handle (http.h). */
#include "http.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Retries: at most HTTP_TRIES tries of one request, none begun HTTP_RETRY_SECONDS after the
 * first; between tries a backoff from BACKOFF_FIRST doubling to BACKOFF_MAX seconds, each
 * drawn in [b/2, b] so that many readers do not retry in step, or what Retry-After says, at
 * most RETRY_AFTER_MAX seconds. A stalled try ends after `timeout` seconds without a byte. */
#define HTTP_TRIES 6
#define HTTP_RETRY_SECONDS 120.0
#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 8.0
#define RETRY_AFTER_MAX 30
#define MAX_REDIRECTS 5L
#define DEFAULT_REQUESTS 32
#define DEFAULT_TIMEOUT 30
#define ETAG_MAX 128

struct sp_http {
	char *cafile, *bearer;
	unsigned max_requests, timeout;
	CURLSH *share;
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
	/* sp_http_get: one handle reused (its connections kept), one request at a time */
	pthread_mutex_t sync_lock;
	CURL *sync;
	/* sp_http_submit: the queue, the retries waiting their turn, the thread */
	pthread_mutex_t lock;
	CURLM *multi;
	pthread_t thread;
	int started, stop;
	struct sp_http_req *queue, **queue_tail, *delayed;
	unsigned running;
	/* Set when a request ran out of tries on failures that another try might not meet (no
	 * answer, 5xx...), cleared by the next success: meanwhile every request gets one try, so
	 * that a read the chunk cache cannot serve fails at once, not after minutes of retries. */
	atomic_int down;
};

struct sp_http_object {
	struct sp_http *h;
	char *url, *shown;
	sp_http_sign_fn sign;
	void *sign_state;
	uint64_t size; /* 0 until the first answer pins it */
	char etag[ETAG_MAX];
	int strong;
	atomic_int said_changed;
};

enum verdict { DONE, RETRY, FAIL };

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- response headers ---- */

static int blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int sp_http_header(const char *line, size_t n, const char *name, const char **value,
		   size_t *vlen)
{
	size_t k = strlen(name);
	if (n <= k || line[k] != ':' || strncasecmp(line, name, k))
		return 0;
	const char *v = line + k + 1, *end = line + n;
	while (v < end && blank(*v))
		v++;
	while (end > v && blank(end[-1]))
		end--;
	*value = v;
	*vlen = (size_t)(end - v);
	return 1;
}

/* Decimal digits at *p (at least one), without overflow. */
static int number(const char **p, const char *end, uint64_t *v)
{
	const char *s = *p;
	*v = 0;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		uint64_t d = (uint64_t)(*s - '0');
		if (*v > (UINT64_MAX - d) / 10)
			return -1;
		*v = *v * 10 + d;
	}
	if (s == *p)
		return -1;
	*p = s;
	return 0;
}

int sp_http_content_range(const char *v, size_t n, uint64_t *first, uint64_t *last,
			  uint64_t *total)
{
	const char *p = v, *end = v + n;
	if (n < 6 || strncasecmp(p, "bytes ", 6))
		return -1;
	p += 6;
	if (p < end && *p == '*') {
		*first = 1, *last = 0;
		p++;
	} else if (number(&p, end, first) || p == end || *p++ != '-' || number(&p, end, last) ||
		   *last < *first) {
		return -1;
	}
	if (p == end || *p++ != '/')
		return -1;
	if (p + 1 == end && *p == '*') {
		*total = UINT64_MAX;
		return *first > *last ? -1 : 0;
	}
	if (number(&p, end, total) || p != end)
		return -1;
	return *first <= *last && *last >= *total ? -1 : 0;
}

int sp_http_retry_after(const char *v, size_t n, time_t now, unsigned cap, unsigned *secs)
{
	char s[64];
	const char *p = v;
	uint64_t x;
	if (!number(&p, v + n, &x) && p == v + n) {
		*secs = x > cap ? cap : (unsigned)x;
		return 0;
	}
	if (n == 0 || n >= sizeof(s))
		return -1;
	memcpy(s, v, n);
	s[n] = 0;
	time_t t = curl_getdate(s, NULL);
	if (t == -1)
		return -1;
	*secs = t <= now ? 0 : (uint64_t)(t - now) > cap ? cap : (unsigned)(t - now);
	return 0;
}

int sp_http_etag_kind(const char *v, size_t n, size_t max)
{
	int weak = n >= 2 && v[0] == 'W' && v[1] == '/';
	const char *q = v + (weak ? 2 : 0);
	size_t k = n - (weak ? 2 : 0);
	if (n >= max || k < 2 || q[0] != '"' || q[k - 1] != '"')
		return 0;
	for (size_t i = 1; i + 1 < k; i++)
		if (q[i] <= 0x20 || q[i] == '"' || q[i] >= 0x7f)
			return 0;
	return weak ? 2 : 1;
}

/* ---- one try of a request ---- */

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct sp_http_req *r = arg;
	size_t len = size * n, vl;
	const char *v;
	if (len >= 5 && !strncmp(p, "HTTP/", 5)) { /* a new answer (after a redirect, a 100) */
		r->has_cr = r->has_etag = 0;
		r->retry_after = 0;
	} else if (sp_http_header(p, len, "content-range", &v, &vl)) {
		r->has_cr = !sp_http_content_range(v, vl, &r->cr_first, &r->cr_last, &r->cr_total);
	} else if (sp_http_header(p, len, "etag", &v, &vl)) {
		r->has_etag = sp_http_etag_kind(v, vl, sizeof(r->etag));
		if (r->has_etag) {
			memcpy(r->etag, v, vl);
			r->etag[vl] = 0;
		}
	} else if (sp_http_header(p, len, "retry-after", &v, &vl) &&
		   sp_http_retry_after(v, vl, time(NULL), RETRY_AFTER_MAX, &r->retry_after)) {
		r->retry_after = 0;
	}
	return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct sp_http_req *r = arg;
	size_t len = size * n;
	long status = 0;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status != 206 && status != 200)
		return len; /* an error page: the status says it all */
	if ((status == 200 && !r->whole) || r->got + len > r->len) {
		r->refused = 1; /* a whole object, or more than asked: stop it now */
		return 0;
	}
	for (size_t done = 0; done < len;) {
		size_t at = r->got % r->seg_len, k = r->seg_len - at;
		if (k > len - done)
			k = len - done;
		memcpy(r->segs[r->got / r->seg_len] + at, p + done, k);
		done += k;
		r->got += k;
	}
	return len;
}

static void set_auth(struct sp_http *h, CURL *e)
{
	if (h->cafile)
		curl_easy_setopt(e, CURLOPT_CAINFO, h->cafile);
	if (h->bearer) { /* libcurl sends it to the origin host only (no UNRESTRICTED_AUTH) */
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, h->bearer);
	}
	curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
}

/* Sets e for one try of r. -1 when the sign hook refuses. */
static int setup(struct sp_http *h, struct sp_http_req *r, CURL *e)
{
	struct sp_http_object *o = r->obj;
	const char *protos = strncasecmp(o->url, "https:", 6) ? "http,https" : "https";
	char range[48], match[ETAG_MAX + 16];
	r->easy = e;
	r->got = 0;
	r->status = 0;
	r->has_cr = r->has_etag = r->refused = 0;
	r->retry_after = 0;
	r->errbuf[0] = 0;
	snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)r->off,
		 (unsigned long long)(r->off + r->len - 1));
	curl_easy_setopt(e, CURLOPT_URL, o->url);
	curl_easy_setopt(e, CURLOPT_RANGE, r->whole ? NULL : range);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protos);
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, protos);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)h->timeout);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)h->timeout);
	curl_easy_setopt(e, CURLOPT_SHARE, h->share);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "sparse/" SPARSE_VERSION_STRING);
	set_auth(h, e);
	r->headers = NULL;
	if (o->strong) {
		snprintf(match, sizeof(match), "If-Match: %s", o->etag);
		r->headers = curl_slist_append(NULL, match);
	}
	if (o->sign && o->sign(o->sign_state, e, &r->headers)) {
		snprintf(r->why, sizeof(r->why), "the request could not be signed");
		return -1;
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	return 0;
}

static void end_try(struct sp_http_req *r)
{
	curl_slist_free_all(r->headers);
	r->headers = NULL;
}

/* curl's failures that another try may not meet. */
static int transient(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return 1;
	default:
		return 0;
	}
}

static enum verdict judge_status(struct sp_http_req *r, long status)
{
	if (status == 412) {
		snprintf(r->why, sizeof(r->why), "the object changed (HTTP 412 to If-Match)");
		return FAIL;
	}
	snprintf(r->why, sizeof(r->why), "HTTP %ld%s", status,
		 status == 416 ? " (an empty object, or a range past its end)" : "");
	return status == 408 || status == 429 || status >= 500 ? RETRY : FAIL;
}

/* What the answer to a range request says: the bytes asked for (the first answer sets the
 * object's size; then fewer than asked may be all there is), a retry, or a failure. */
static enum verdict judge_body(struct sp_http_req *r)
{
	struct sp_http_object *o = r->obj;
	uint64_t total = o->size ? o->size : r->cr_total;
	if (!r->has_cr || r->cr_first != r->off || r->cr_total == UINT64_MAX) {
		snprintf(r->why, sizeof(r->why), "a 206 answer without the Content-Range asked for");
		return FAIL;
	}
	if (r->cr_total != total || (o->etag[0] && r->has_etag && strcmp(r->etag, o->etag))) {
		snprintf(r->why, sizeof(r->why), "the object changed (its %s)",
			 r->cr_total != total ? "size" : "ETag");
		return FAIL;
	}
	uint64_t want = total - r->off < r->len ? total - r->off : r->len;
	if (r->cr_last != r->off + want - 1) {
		snprintf(r->why, sizeof(r->why), "a 206 answer with another range than asked for");
		return FAIL;
	}
	if (r->got < want) {
		snprintf(r->why, sizeof(r->why), "a short body (%zu of %llu bytes)", r->got,
			 (unsigned long long)want);
		return RETRY;
	}
	r->len = want;
	return DONE;
}

static enum verdict judge(struct sp_http_req *r, CURLcode rc)
{
	long status = 0;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	r->status = status;
	if (r->refused) {
		snprintf(r->why, sizeof(r->why), "%s",
			 r->whole ? "an answer longer than expected"
			 : status == 200 ? "the server ignores range requests (HTTP 200 to a Range)"
					 : "a body longer than the range asked for");
		return FAIL;
	}
	if (rc == CURLE_OK && r->whole && status == 200) {
		r->len = r->got;
		return DONE;
	}
	if (rc != CURLE_OK) {
		snprintf(r->why, sizeof(r->why), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
		return transient(rc) ? RETRY : FAIL;
	}
	return status == 206 ? judge_body(r) : judge_status(r, status);
}

/* The wait before the next try, or < 0 when no more tries are allowed. */
static double next_try(struct sp_http_req *r)
{
	double b = BACKOFF_FIRST * (double)(1u << (r->tries < 8 ? r->tries - 1 : 7));
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned seed = (unsigned)ts.tv_nsec ^ (unsigned)(uintptr_t)r;
	if (b > BACKOFF_MAX)
		b = BACKOFF_MAX;
	b = b / 2 + b / 2 * ((double)rand_r(&seed) / RAND_MAX);
	if (r->retry_after)
		b = r->retry_after;
	if (atomic_load(&r->obj->h->down) || r->tries >= HTTP_TRIES ||
	    now_s() + b - r->started > HTTP_RETRY_SECONDS)
		return -1;
	return b;
}

/* A request ended (v): a success marks the server up, a failure that ran out of tries marks
 * it down, each change one log line. 1 when that line says all there is about r's failure. */
static int note_health(struct sp_http *h, const struct sp_http_req *r, enum verdict v)
{
	if (v == DONE) {
		if (atomic_exchange(&h->down, 0))
			sp_log("%s: the server answers again", r->obj->shown);
		return 0;
	}
	if (v != RETRY)
		return 0;
	if (!atomic_exchange(&h->down, 1))
		sp_log("%s: the server does not answer (%s): until it does, each request gets one try "
		       "and reads that the chunk cache cannot serve fail", r->obj->shown, r->why);
	return 1;
}

/* ---- sp_http_get: on the calling thread ---- */

static int run_sync(struct sp_http *h, struct sp_http_req *r, struct sp_err *err)
{
	pthread_mutex_lock(&h->sync_lock);
	if (!h->sync && !(h->sync = curl_easy_init())) {
		pthread_mutex_unlock(&h->sync_lock);
		sp_err_set(err, "%s: out of memory", r->obj->shown);
		return -1;
	}
	enum verdict v = FAIL;
	double wait = 0;
	for (r->started = now_s(), r->tries = 1;; r->tries++) {
		curl_easy_reset(h->sync);
		v = setup(h, r, h->sync) ? FAIL : judge(r, curl_easy_perform(h->sync));
		end_try(r);
		if (v != RETRY || (wait = next_try(r)) < 0)
			break;
		struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
		nanosleep(&ts, NULL);
	}
	pthread_mutex_unlock(&h->sync_lock);
	note_health(h, r, v);
	if (v == DONE)
		return 0;
	sp_err_set(err, "%s: %s", r->obj->shown, r->why);
	return -1;
}

/* ---- sp_http_submit: the transfer thread ---- */

static void say_failed(struct sp_http_req *r)
{
	struct sp_http_object *o = r->obj;
	int changed = r->status == 412 || !strncmp(r->why, "the object changed", 18);
	if (!changed || !atomic_exchange(&o->said_changed, 1))
		sp_log("%s: bytes %llu-%llu: %s%s", o->shown, (unsigned long long)r->off,
		       (unsigned long long)(r->off + r->len - 1), r->why,
		       changed ? "; reads of it fail until it is opened again" : "");
}

/* Called with h->lock held: starts r, or ends it (into *ended) when it cannot start. */
static void start(struct sp_http *h, struct sp_http_req *r, struct sp_http_req **ended)
{
	CURL *e = curl_easy_init();
	if (e && !setup(h, r, e) && curl_multi_add_handle(h->multi, e) == CURLM_OK) {
		h->running++;
		return;
	}
	if (e)
		curl_easy_cleanup(e);
	end_try(r);
	if (!r->why[0])
		snprintf(r->why, sizeof(r->why), "out of memory");
	r->next = *ended;
	*ended = r;
}

/* Moves the retries whose time has come to the queue; the wait until the next one. */
static long promote(struct sp_http *h)
{
	double now = now_s(), soonest = 1.0;
	for (struct sp_http_req **p = &h->delayed; *p;) {
		struct sp_http_req *r = *p;
		if (r->not_before > now) {
			if (r->not_before - now < soonest)
				soonest = r->not_before - now;
			p = &r->next;
			continue;
		}
		*p = r->next;
		r->next = NULL;
		*h->queue_tail = r;
		h->queue_tail = &r->next;
	}
	return (long)(soonest * 1000) + 1;
}

/* A try ended (curl's rc): the request is done, or waits for its next try. */
static void finish(struct sp_http *h, struct sp_http_req *r, CURLcode rc)
{
	enum verdict v = judge(r, rc);
	curl_multi_remove_handle(h->multi, r->easy);
	curl_easy_cleanup(r->easy);
	end_try(r);
	double wait = v == RETRY ? next_try(r) : -1;
	pthread_mutex_lock(&h->lock);
	h->running--;
	if (wait >= 0) {
		r->tries++;
		r->not_before = now_s() + wait;
		r->next = h->delayed;
		h->delayed = r;
	}
	pthread_mutex_unlock(&h->lock);
	if (wait >= 0)
		return;
	if (!note_health(h, r, v) && v != DONE)
		say_failed(r);
	r->done(r, v == DONE ? 0 : -EIO);
}

static void *pump(void *arg)
{
	struct sp_http *h = arg;
	pthread_mutex_lock(&h->lock);
	while (!h->stop) {
		long wait = promote(h);
		struct sp_http_req *ended = NULL;
		while (h->running < h->max_requests && h->queue) {
			struct sp_http_req *r = h->queue;
			if (!(h->queue = r->next))
				h->queue_tail = &h->queue;
			start(h, r, &ended);
		}
		pthread_mutex_unlock(&h->lock);
		for (struct sp_http_req *r = ended, *next; r; r = next) {
			next = r->next;
			say_failed(r);
			r->done(r, -EIO);
		}
		int still, left;
		curl_multi_perform(h->multi, &still);
		CURLMsg *m;
		while ((m = curl_multi_info_read(h->multi, &left)))
			if (m->msg == CURLMSG_DONE) {
				struct sp_http_req *r;
				curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
				finish(h, r, m->data.result);
			}
		curl_multi_poll(h->multi, NULL, 0, (int)wait, NULL);
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

void sp_http_submit(struct sp_http *h, struct sp_http_req *r)
{
	r->tries = 1;
	r->started = now_s();
	r->why[0] = 0;
	r->next = NULL;
	pthread_mutex_lock(&h->lock);
	*h->queue_tail = r;
	h->queue_tail = &r->next;
	if (!h->started && pthread_create(&h->thread, NULL, pump, h) == 0)
		h->started = 1;
	int up = h->started;
	if (!up) {
		h->queue = NULL;
		h->queue_tail = &h->queue;
	}
	pthread_mutex_unlock(&h->lock);
	if (!up) {
		snprintf(r->why, sizeof(r->why), "no transfer thread: %s", strerror(EAGAIN));
		say_failed(r);
		r->done(r, -EIO);
		return;
	}
	curl_multi_wakeup(h->multi);
}

int sp_http_get(struct sp_http_object *o, void *buf, size_t len, uint64_t off, struct sp_err *err)
{
	uint8_t *seg = buf;
	struct sp_http_req r = {.obj = o, .segs = &seg, .seg_len = len, .off = off, .len = len};
	if (off > o->size || len > o->size - off) {
		sp_err_set(err, "%s: bytes %llu+%zu past its end", o->shown,
			   (unsigned long long)off, len);
		return -1;
	}
	return len ? run_sync(o->h, &r, err) : 0;
}

int sp_http_fetch(struct sp_http *h, const char *url, sp_http_sign_fn sign, void *sign_state,
		  void *buf, size_t max, size_t *got, long *status, struct sp_err *err)
{
	struct sp_http_object o = {.h = h, .url = (char *)url, .sign = sign, .sign_state = sign_state};
	uint8_t *seg = buf;
	struct sp_http_req r = {.obj = &o, .segs = &seg, .seg_len = max, .len = max, .whole = 1};
	int rc = -1;
	*got = 0;
	*status = 0;
	if (!(o.shown = sp_http_shown(url)))
		sp_err_set(err, "%s: out of memory", url);
	else if (!(rc = run_sync(h, &r, err)))
		*got = r.got;
	*status = r.status;
	free(o.shown);
	return rc;
}

/* ---- objects ---- */

char *sp_http_shown(const char *url)
{
	CURLU *u = curl_url();
	char *s = NULL, *out;
	if (u && !curl_url_set(u, CURLUPART_URL, url, 0) && !curl_url_set(u, CURLUPART_USER, NULL, 0) &&
	    !curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) &&
	    !curl_url_set(u, CURLUPART_QUERY, NULL, 0) && !curl_url_get(u, CURLUPART_URL, &s, 0))
		out = strdup(s);
	else
		out = strdup("(a malformed URL)");
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

struct sp_http_object *sp_http_object_open(struct sp_http *h, const char *url, sp_http_sign_fn sign,
					   void *sign_state, void *buf, size_t len, size_t *got,
					   long *status, struct sp_err *err)
{
	struct sp_http_object *o = calloc(1, sizeof(*o));
	if (!o || !(o->url = strdup(url)) || !(o->shown = sp_http_shown(url))) {
		sp_err_set(err, "%s: out of memory", url);
		sp_http_object_close(o);
		return NULL;
	}
	o->h = h;
	o->sign = sign;
	o->sign_state = sign_state;
	uint8_t *seg = buf;
	struct sp_http_req r = {.obj = o, .segs = &seg, .seg_len = len, .off = 0, .len = len};
	int rc = run_sync(h, &r, err);
	*status = r.status;
	if (rc) {
		sp_http_object_close(o);
		return NULL;
	}
	o->size = r.cr_total;
	if (r.has_etag) {
		strcpy(o->etag, r.etag);
		o->strong = r.has_etag == 1;
	}
	*got = r.len;
	return o;
}

void sp_http_object_close(struct sp_http_object *o)
{
	if (!o)
		return;
	free(o->url);
	free(o->shown);
	free(o);
}

uint64_t sp_http_object_size(const struct sp_http_object *o)
{
	return o->size;
}

const char *sp_http_object_etag(const struct sp_http_object *o)
{
	return o->etag;
}

const char *sp_http_object_shown(const struct sp_http_object *o)
{
	return o->shown;
}

/* ---- the engine ---- */

static void share_lock(CURL *e, curl_lock_data data, curl_lock_access a, void *arg)
{
	(void)e, (void)a;
	pthread_mutex_lock(&((struct sp_http *)arg)->share_lock[data]);
}

static void share_unlock(CURL *e, curl_lock_data data, void *arg)
{
	(void)e;
	pthread_mutex_unlock(&((struct sp_http *)arg)->share_lock[data]);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct sp_http *sp_http_new(const struct sp_http_opts *o, struct sp_err *err)
{
	pthread_once(&global_once, global_init);
	struct sp_http *h = calloc(1, sizeof(*h));
	if (global_rc != CURLE_OK || !h || (o->cafile && !(h->cafile = strdup(o->cafile))) ||
	    (o->bearer && !(h->bearer = strdup(o->bearer))) || !(h->share = curl_share_init()) ||
	    !(h->multi = curl_multi_init())) {
		sp_err_set(err, "libcurl: %s", global_rc ? curl_easy_strerror(global_rc)
							 : "out of memory");
		sp_http_free(h);
		return NULL;
	}
	h->max_requests = o->max_requests ? o->max_requests : DEFAULT_REQUESTS;
	h->timeout = o->timeout ? o->timeout : DEFAULT_TIMEOUT;
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&h->share_lock[i], NULL);
	pthread_mutex_init(&h->sync_lock, NULL);
	pthread_mutex_init(&h->lock, NULL);
	h->queue_tail = &h->queue;
	curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(h->share, CURLSHOPT_USERDATA, h);
	curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)h->max_requests);
	return h;
}

void sp_http_free(struct sp_http *h)
{
	if (!h)
		return;
	if (h->started) {
		pthread_mutex_lock(&h->lock);
		h->stop = 1;
		pthread_mutex_unlock(&h->lock);
		curl_multi_wakeup(h->multi);
		pthread_join(h->thread, NULL);
	}
	if (h->sync)
		curl_easy_cleanup(h->sync);
	curl_multi_cleanup(h->multi);
	curl_share_cleanup(h->share);
	if (h->bearer)
		memset(h->bearer, 0, strlen(h->bearer));
	free(h->bearer);
	free(h->cafile);
	free(h);
}
