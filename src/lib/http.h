/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transfer engine under remote deltas: single-range GETs of remote objects with libcurl.
 *
 * sp_http_get makes a request on the calling thread: opening uses only it, so that a process may
 * fork after opening (sparsefs goes to the background then) with no thread lost. sp_http_submit
 * queues a request, from any thread, for one curl multi handle driven by a thread started on
 * the first submit (so after any fork), at most max_requests in flight.
 *
 * An object's first request pins its size (Content-Range's total) and ETag; every later range
 * sends If-Match with that ETag (a strong one) and checks the ETag and size it gets back, so a
 * changed object is an error (one log line per object), never bytes of two versions. Timeouts
 * (no progress for `timeout` seconds), resets, short bodies, 408, 429 and 5xx are retried with
 * jittered exponential backoff, at most HTTP_TRIES tries within HTTP_RETRY_SECONDS (http.c).
 */
#ifndef SP_HTTP_H
#define SP_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sparse/sparse.h"

struct sp_http_opts {
	const char *cafile;    /* NULL: the system's CAs */
	const char *bearer;    /* a bearer token for the origin host only; NULL: none */
	unsigned max_requests; /* in flight at once; 0: 32 */
	unsigned timeout;      /* seconds without progress before a try is abandoned; 0: 30 */
};

struct sp_http;

struct sp_http *sp_http_new(const struct sp_http_opts *o, struct sp_err *err);
/* Waits for the thread, if any; every object must be closed and no request in flight. */
void sp_http_free(struct sp_http *h);

/* Called on each easy handle before each try (a new easy handle each time): the S3 code sets
 * its signing there. It may append to *headers (freed by the engine). 0, or -1 to fail the
 * request. */
typedef int (*sp_http_sign_fn)(void *state, CURL *easy, struct curl_slist **headers);

struct sp_http_object;

/* Opens url with one request for its first len bytes (fewer when it is smaller) into buf: the
 * object's size and ETag are pinned then. *got: the bytes written to buf. NULL with err naming
 * the URL (without credentials) and the HTTP status or curl's reason, and *status the last
 * HTTP status (0: none). sign may be NULL. */
struct sp_http_object *sp_http_object_open(struct sp_http *h, const char *url, sp_http_sign_fn sign,
					   void *sign_state, void *buf, size_t len, size_t *got,
					   long *status, struct sp_err *err);
void sp_http_object_close(struct sp_http_object *o);
uint64_t sp_http_object_size(const struct sp_http_object *o);
/* The pinned ETag ("" when the server sent none) and the URL as it may be shown. */
const char *sp_http_object_etag(const struct sp_http_object *o);
const char *sp_http_object_shown(const struct sp_http_object *o);

/* url without its user, password and query (where credentials may hide), to show; malloc'd. */
char *sp_http_shown(const char *url);

/* One range request: len bytes at off, written into segs[0], segs[1]... each seg_len long. */
struct sp_http_req {
	struct sp_http_object *obj;
	uint8_t **segs;
	size_t seg_len;
	uint64_t off;
	size_t len;
	/* Called once on the transfer thread with 0 or -EIO (after retries, logged). */
	void (*done)(struct sp_http_req *r, int rc);
	void *arg;
	/* The engine's. */
	struct sp_http_req *next;
	CURL *easy;
	struct curl_slist *headers;
	size_t got;
	long status;
	int tries, refused;
	int whole; /* sp_http_fetch's: no range, a 200 answer */
	double started, not_before;
	unsigned retry_after;
	char etag[128];
	uint64_t cr_first, cr_last, cr_total;
	int has_cr, has_etag;
	char errbuf[CURL_ERROR_SIZE];
	char why[256]; /* the last try's failure */
};

/* A GET of a whole answer (no Range, no If-Match; S3's listings) on the calling thread, with
 * the retries of a range request: 0 and a 200 answer's body (at most max bytes, more is an
 * error) in buf, *got its length; -1 with err naming the URL and why, *status the last HTTP
 * status (0: none). sign may be NULL. */
int sp_http_fetch(struct sp_http *h, const char *url, sp_http_sign_fn sign, void *sign_state,
		  void *buf, size_t max, size_t *got, long *status, struct sp_err *err);

/* A request on the calling thread: 0, or -1 with err. */
int sp_http_get(struct sp_http_object *o, void *buf, size_t len, uint64_t off, struct sp_err *err);
/* Queues r, which must live until its done is called (maybe before this returns). */
void sp_http_submit(struct sp_http *h, struct sp_http_req *r);

/* ---- response header parsing (exposed for the tests and the fuzzer) ---- */

/* When line (n bytes, with or without CRLF) is the header `name` (any case), its value with
 * surrounding blanks trimmed: *value and *vlen; else 0. */
int sp_http_header(const char *line, size_t n, const char *name, const char **value,
		   size_t *vlen);
/* "bytes FIRST-LAST/TOTAL" (TOTAL may be "*"; then *total is UINT64_MAX) or "bytes * /TOTAL"
 * (without the blank; then *first > *last): 0, or -1 when malformed. */
int sp_http_content_range(const char *v, size_t n, uint64_t *first, uint64_t *last,
			  uint64_t *total);
/* Retry-After: delta-seconds, or an HTTP date (relative to now); capped at cap. -1 when
 * malformed. */
int sp_http_retry_after(const char *v, size_t n, time_t now, unsigned cap, unsigned *secs);
/* An ETag value fit to pin (quoted, printable, shorter than max): 1 strong, 2 weak (W/), 0 not
 * one. */
int sp_http_etag_kind(const char *v, size_t n, size_t max);

#endif
