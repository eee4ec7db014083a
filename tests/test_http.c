/* SPDX-License-Identifier: Apache-2.0 */
/* What the remote reads decide without a server: the response headers they parse (http.h),
 * the URLs they show, and how missing blocks become range requests (source_remote.h). */
#include "http.h"
#include "source_remote.h"
#include "testutil.h"

#define S(x) x, sizeof(x) - 1

static void headers(void)
{
	const char *v;
	size_t n;
	CHECK(sp_http_header(S("ETag: \"abc\"\r\n"), "etag", &v, &n) && n == 5 &&
	      !memcmp(v, "\"abc\"", 5));
	CHECK(sp_http_header(S("content-RANGE:bytes 0-1/2"), "content-range", &v, &n) && n == 11);
	CHECK(sp_http_header(S("Retry-After: \t \r\n"), "retry-after", &v, &n) && n == 0);
	CHECK(!sp_http_header(S("ETagX: 1\r\n"), "etag", &v, &n));
	CHECK(!sp_http_header(S("ETag"), "etag", &v, &n));
	CHECK(!sp_http_header(S("X-ETag: 1"), "etag", &v, &n));
}

static void content_range(void)
{
	uint64_t a, b, t;
	CHECK(!sp_http_content_range(S("bytes 0-99/1000"), &a, &b, &t) && a == 0 && b == 99 && t == 1000);
	CHECK(!sp_http_content_range(S("bytes 5-5/6"), &a, &b, &t) && a == 5 && b == 5 && t == 6);
	CHECK(!sp_http_content_range(S("bytes 0-9/*"), &a, &b, &t) && t == UINT64_MAX);
	CHECK(!sp_http_content_range(S("bytes */1000"), &a, &b, &t) && a > b && t == 1000);
	CHECK(!sp_http_content_range(S("bytes 0-18446744073709551614/18446744073709551615"), &a,
				     &b, &t));
	CHECK(sp_http_content_range(S("bytes 0-99/99"), &a, &b, &t));  /* past the end */
	CHECK(sp_http_content_range(S("bytes 9-0/100"), &a, &b, &t));  /* backwards */
	CHECK(sp_http_content_range(S("bytes 0-99/1000x"), &a, &b, &t));
	CHECK(sp_http_content_range(S("bytes -99/1000"), &a, &b, &t));
	CHECK(sp_http_content_range(S("items 0-99/1000"), &a, &b, &t));
	CHECK(sp_http_content_range(S("bytes */*"), &a, &b, &t));
	CHECK(sp_http_content_range(S("bytes 0-99"), &a, &b, &t));
	CHECK(sp_http_content_range(S("bytes 0-99999999999999999999/1"), &a, &b, &t)); /* overflow */
	CHECK(sp_http_content_range(S(""), &a, &b, &t));
}

static void retry_after(void)
{
	unsigned s;
	time_t now = curl_getdate("Fri, 04 Dec 2026 18:00:00 GMT", NULL);
	CHECK(!sp_http_retry_after(S("7"), now, 30, &s) && s == 7);
	CHECK(!sp_http_retry_after(S("3600"), now, 30, &s) && s == 30);
	CHECK(!sp_http_retry_after(S("Fri, 04 Dec 2026 18:00:12 GMT"), now, 30, &s) && s == 12);
	CHECK(!sp_http_retry_after(S("Fri, 04 Dec 2026 17:00:00 GMT"), now, 30, &s) && s == 0);
	CHECK(!sp_http_retry_after(S("Sat, 05 Dec 2026 18:00:00 GMT"), now, 30, &s) && s == 30);
	CHECK(sp_http_retry_after(S("soon"), now, 30, &s));
	CHECK(sp_http_retry_after(S(""), now, 30, &s));
	CHECK(sp_http_retry_after(S("-5"), now, 30, &s));
}

static void etags(void)
{
	CHECK(sp_http_etag_kind(S("\"5f3a-1000\""), 128) == 1);
	CHECK(sp_http_etag_kind(S("W/\"5f3a\""), 128) == 2);
	CHECK(sp_http_etag_kind(S("\"\""), 128) == 1);
	CHECK(sp_http_etag_kind(S("5f3a"), 128) == 0);
	CHECK(sp_http_etag_kind(S("\"a b\""), 128) == 0);
	CHECK(sp_http_etag_kind(S("\"a\"b\""), 128) == 0);
	CHECK(sp_http_etag_kind(S("\"\n\""), 128) == 0);
	CHECK(sp_http_etag_kind(S("\""), 128) == 0);
	CHECK(sp_http_etag_kind(S("W/"), 128) == 0);
	CHECK(sp_http_etag_kind(S("\"0123456789\""), 12) == 0); /* no room for it */
}

static void shown(void)
{
	char *s = sp_http_shown("https://user:pw@example.com:8443/a/b?X-Amz-Signature=zz#f");
	CHECK(s && !strstr(s, "pw") && !strstr(s, "user") && !strstr(s, "Signature") &&
	      strstr(s, "https://example.com:8443/a/b"));
	free(s);
	s = sp_http_shown("http://[bad");
	CHECK(s && !strstr(s, "bad"));
	free(s);
}

/* ---- block runs ---- */

static const char *present; /* '1' for a block in memory */
static char got[256];

static int have(uint64_t b, void *arg)
{
	(void)arg;
	return present[b] == '1';
}

static int run(uint64_t first, uint64_t n, void *arg)
{
	int *stop_after = arg;
	size_t k = strlen(got);
	snprintf(got + k, sizeof(got) - k, "%llu+%llu ", (unsigned long long)first,
		 (unsigned long long)n);
	return --*stop_after == 0 ? 7 : 0;
}

static void runs_of(const char *p, uint64_t first, uint64_t end, int stop_after, const char *want,
		    int want_rc)
{
	present = p;
	got[0] = 0;
	int rc = sp_block_runs(first, end, have, run, &stop_after);
	if (strcmp(got, want) || rc != want_rc)
		fprintf(stderr, "runs of %s [%llu, %llu): got '%s' (%d), wanted '%s' (%d)\n", p,
			(unsigned long long)first, (unsigned long long)end, got, rc, want, want_rc);
	CHECK(!strcmp(got, want) && rc == want_rc);
}

static void block_runs(void)
{
	runs_of("0000", 0, 4, 0, "0+4 ", 0);
	runs_of("1111", 0, 4, 0, "", 0);
	runs_of("0100110", 0, 7, 0, "0+1 2+2 6+1 ", 0);
	runs_of("0100110", 1, 5, 0, "2+2 ", 0);
	runs_of("0100110", 0, 7, 2, "0+1 2+2 ", 7); /* stops at the run that says so */
	/* Adjacent missing blocks coalesce, SP_RUN_BLOCKS at most in one request. */
	char many[41];
	memset(many, '0', 40);
	many[40] = 0;
	runs_of(many, 0, 40, 0, "0+16 16+16 32+8 ", 0);
	many[20] = '1';
	runs_of(many, 3, 40, 0, "3+16 19+1 21+16 37+3 ", 0);
}

int main(void)
{
	headers();
	content_range();
	retry_after();
	etags();
	shown();
	block_runs();
	return test_done();
}
