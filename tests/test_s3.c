/* SPDX-License-Identifier: Apache-2.0 */
/* S3 (s3.c, s3_list.c): URL forms, credentials from the environment and the credentials file,
 * the SigV4 requests libcurl makes with them (checked against signatures computed apart, with
 * the algorithm that gives AWS's published examples), and ListObjectsV2 answers as s3rver
 * gives them (captured into fuzz/corpus/s3_list, the folder given as argv[1]). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "s3.h"
#include "testutil.h"

static const char *corpus;

static void clear_env(void)
{
	static const char *const vars[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_REGION",
		"AWS_DEFAULT_REGION"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	setenv("HOME", test_tmpdir(), 1);
}

static int streq(const char *a, const char *b)
{
	return a && b ? !strcmp(a, b) : a == b;
}

static void check_url(char *got, const char *want)
{
	if (!streq(got, want))
		fprintf(stderr, "url: got %s, want %s\n", got ? got : "(null)", want);
	CHECK(streq(got, want));
	free(got);
}

static void split(void)
{
	char *b, *k;
	CHECK(sp_s3_split("s3://bkt/deltas/ft a/", &b, &k) == 0 && streq(b, "bkt") &&
	      streq(k, "deltas/ft a/"));
	free(b), free(k);
	CHECK(sp_s3_split("s3://My_old.bucket", &b, &k) == 0 && streq(b, "My_old.bucket") &&
	      streq(k, ""));
	free(b), free(k);
	static const char *const bad[] = {"s3://", "s3:///k", "s3://b@h/k", "s3://b:1/k",
		"s3://b?x/k", "http://b/k", "s3:/b/k"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(sp_s3_split(bad[i], &b, &k) == -1);
}

static void urls(void)
{
	struct sp_s3 s3;
	struct sp_err err;
	clear_env();
	CHECK(sp_s3_init(&s3, "http://127.0.0.1:9000/", NULL, &err) == 0);
	check_url(sp_s3_object_url(&s3, "bkt", "deltas/ft a/delta.sparse"),
		  "http://127.0.0.1:9000/bkt/deltas/ft%20a/delta.sparse");
	check_url(sp_s3_object_url(&s3, "bkt", "p%41+b//\xc3\xbc~x=/delta.sparse"),
		  "http://127.0.0.1:9000/bkt/p%2541%2Bb//%C3%BC~x%3D/delta.sparse");
	check_url(sp_s3_list_url(&s3, "bkt", "deltas/", NULL),
		  "http://127.0.0.1:9000/bkt/?list-type=2&prefix=deltas%2F");
	check_url(sp_s3_list_url(&s3, "bkt", "", "1K3/Ip+R="),
		  "http://127.0.0.1:9000/bkt/?continuation-token=1K3%2FIp%2BR%3D&list-type=2&prefix=");
	sp_s3_free(&s3);
	CHECK(sp_s3_init(&s3, NULL, "eu-west-1", &err) == 0);
	check_url(sp_s3_object_url(&s3, "my-bucket", "a/delta.sparse"),
		  "https://my-bucket.s3.eu-west-1.amazonaws.com/a/delta.sparse");
	check_url(sp_s3_object_url(&s3, "my.bucket", "a/delta.sparse"),
		  "https://s3.eu-west-1.amazonaws.com/my.bucket/a/delta.sparse");
	check_url(sp_s3_list_url(&s3, "my-bucket", "a/", NULL),
		  "https://my-bucket.s3.eu-west-1.amazonaws.com/?list-type=2&prefix=a%2F");
	sp_s3_free(&s3);
	static const char *const bad_endpoints[] = {"ftp://h", "http://", "http:///x",
		"http://u:p@h", "http://h/?x", "http://h x", "127.0.0.1:9000"};
	for (size_t i = 0; i < sizeof(bad_endpoints) / sizeof(bad_endpoints[0]); i++)
		CHECK(sp_s3_init(&s3, bad_endpoints[i], NULL, &err) == -1 &&
		      strstr(err.msg, bad_endpoints[i]));
	CHECK(sp_s3_init(&s3, NULL, "US East", &err) == -1 && strstr(err.msg, "US East"));
	CHECK(sp_s3_init(&s3, NULL, "a/b", &err) == -1);
}

/* The region: the argument, else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1. */
static void regions(void)
{
	struct sp_s3 s3;
	struct sp_err err;
	clear_env();
	CHECK(sp_s3_init(&s3, NULL, NULL, &err) == 0 && streq(s3.region, "us-east-1") &&
	      streq(s3.sigv4, "aws:amz:us-east-1:s3"));
	sp_s3_free(&s3);
	setenv("AWS_DEFAULT_REGION", "ap-south-1", 1);
	CHECK(sp_s3_init(&s3, NULL, NULL, &err) == 0 && streq(s3.region, "ap-south-1"));
	sp_s3_free(&s3);
	setenv("AWS_REGION", "eu-central-1", 1);
	CHECK(sp_s3_init(&s3, NULL, NULL, &err) == 0 && streq(s3.region, "eu-central-1"));
	sp_s3_free(&s3);
	CHECK(sp_s3_init(&s3, NULL, "us-west-2", &err) == 0 && streq(s3.region, "us-west-2") &&
	      streq(s3.sigv4, "aws:amz:us-west-2:s3"));
	sp_s3_free(&s3);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

/* sp_s3_init with the environment as it is: 0 and the credentials read, or -1 and err. */
static int creds(struct sp_s3 *s3, struct sp_err *err)
{
	return sp_s3_init(s3, "http://127.0.0.1:1", NULL, err);
}

static int has_creds(const struct sp_s3 *s3, const char *id, const char *secret, const char *token)
{
	return streq(s3->key_id, id) && streq(s3->secret, secret) && streq(s3->token, token);
}

static const char CREDENTIALS[] =
	"# written by aws configure\n"
	"; another comment\n"
	"\n"
	"[default]\n"
	"aws_access_key_id = AKIDDEFAULT\n"
	"aws_secret_access_key=secret/default+1\n"
	"\n"
	"  [ spaced ]  \r\n"
	"  AWS_Access_Key_ID\t=   AKIDSPACED   \r\n"
	"\taws_secret_access_key : secret:with:colons \r\n"
	"# aws_session_token = not this one\n"
	"aws_session_token = tok=en==\n"
	"region = eu-west-3\n"
	"s3 =\n"
	"    max_concurrent_requests = 20\n"
	"[half]\n"
	"aws_access_key_id = AKIDHALF\n"
	"[empty]\n"
	"aws_access_key_id =\n"
	"aws_secret_access_key =\n"
	"[default-like]\n"
	"aws_access_key_id = AKIDWRONG\n"
	"aws_secret_access_key = wrong\n";

static void credentials_file(void)
{
	struct sp_s3 s3;
	struct sp_err err;
	char path[4096], home[4096];
	clear_env();
	/* none anywhere: unsigned */
	CHECK(creds(&s3, &err) == 0 && has_creds(&s3, NULL, NULL, NULL));
	sp_s3_free(&s3);
	/* ~/.aws/credentials */
	snprintf(home, sizeof(home), "%s/.aws", test_tmpdir());
	test_sh("mkdir -p '%s'", home);
	snprintf(home, sizeof(home), "%s/.aws/credentials", test_tmpdir());
	write_file(home, CREDENTIALS);
	CHECK(creds(&s3, &err) == 0 && has_creds(&s3, "AKIDDEFAULT", "secret/default+1", NULL));
	sp_s3_free(&s3);
	setenv("AWS_PROFILE", "spaced", 1);
	CHECK(creds(&s3, &err) == 0 &&
	      has_creds(&s3, "AKIDSPACED", "secret:with:colons", "tok=en=="));
	sp_s3_free(&s3);
	/* AWS_SHARED_CREDENTIALS_FILE instead of ~/.aws/credentials */
	snprintf(path, sizeof(path), "%s/creds", test_tmpdir());
	write_file(path, "[spaced]\naws_access_key_id=AKIDOTHER\naws_secret_access_key=s\n");
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	CHECK(creds(&s3, &err) == 0 && has_creds(&s3, "AKIDOTHER", "s", NULL));
	sp_s3_free(&s3);
	setenv("AWS_SHARED_CREDENTIALS_FILE", home, 1);
	/* a named profile must be there, with both keys */
	setenv("AWS_PROFILE", "missing", 1);
	CHECK(creds(&s3, &err) == -1 && strstr(err.msg, home) && strstr(err.msg, "[missing]"));
	setenv("AWS_PROFILE", "half", 1);
	CHECK(creds(&s3, &err) == -1 && strstr(err.msg, home) &&
	      strstr(err.msg, "aws_secret_access_key"));
	setenv("AWS_PROFILE", "empty", 1);
	CHECK(creds(&s3, &err) == -1 && strstr(err.msg, "aws_access_key_id"));
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	CHECK(creds(&s3, &err) == -1 && strstr(err.msg, path) && strstr(err.msg, "[empty]"));
	/* a file named but absent: nothing for the default profile, an error for a named one */
	snprintf(path, sizeof(path), "%s/absent", test_tmpdir());
	setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
	CHECK(creds(&s3, &err) == -1 && strstr(err.msg, path) && strstr(err.msg, "No such file"));
	unsetenv("AWS_PROFILE");
	CHECK(creds(&s3, &err) == 0 && has_creds(&s3, NULL, NULL, NULL));
	sp_s3_free(&s3);
	/* unreadable: a folder */
	setenv("AWS_SHARED_CREDENTIALS_FILE", test_tmpdir(), 1);
	CHECK(creds(&s3, &err) == -1 && strstr(err.msg, test_tmpdir()) &&
	      strstr(err.msg, "Is a directory"));
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

/* The environment's keys come before any file, and go together. */
static void credentials_env(void)
{
	struct sp_s3 s3;
	struct sp_err err;
	clear_env();
	setenv("AWS_PROFILE", "spaced", 1);
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	CHECK(creds(&s3, &err) == 0 && has_creds(&s3, "AKIDENV", "envsecret", NULL));
	sp_s3_free(&s3);
	setenv("AWS_SESSION_TOKEN", "envtoken", 1);
	CHECK(creds(&s3, &err) == 0 && has_creds(&s3, "AKIDENV", "envsecret", "envtoken"));
	sp_s3_free(&s3);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	CHECK(creds(&s3, &err) == -1 && strstr(err.msg, "AWS_SECRET_ACCESS_KEY"));
	setenv("AWS_SECRET_ACCESS_KEY", "bad secret", 1);
	CHECK(creds(&s3, &err) == -1 && strstr(err.msg, "printable") && !strstr(err.msg, "bad"));
	unsetenv("AWS_ACCESS_KEY_ID");
	CHECK(creds(&s3, &err) == -1 && strstr(err.msg, "AWS_ACCESS_KEY_ID"));
	clear_env();
}

static void sigv4_env(const char *token)
{
	clear_env();
	setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", 1);
	if (token)
		setenv("AWS_SESSION_TOKEN", token, 1);
}

/* A loopback socket that listens and never answers: the kernel takes the connection, libcurl
 * sends its request, times out waiting, and the request's headers are what it logged. */
static int listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 8) ||
	    getsockname(fd, (struct sockaddr *)&a, &len)) {
		perror("listener");
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static int debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *arg)
{
	char *out = arg;
	size_t have = strlen(out);
	(void)h;
	if (type == CURLINFO_HEADER_OUT && size < 4096 - have) {
		memcpy(out + have, data, size);
		out[have + size] = 0;
	}
	return 0;
}

/* The request's headers as libcurl sent them, signed by sp_s3_sign, into sent[4096]. */
static void request(const struct sp_s3 *s3, const char *url, const char *extra, char *sent)
{
	int port, fd = listener(&port);
	char connect_to[64];
	CURL *h = curl_easy_init();
	struct curl_slist *headers = curl_slist_append(NULL, "x-amz-date: 20130524T000000Z");
	CHECK(fd >= 0 && h && headers);
	if (fd < 0 || !h || !headers)
		return;
	if (extra)
		headers = curl_slist_append(headers, extra);
	sent[0] = 0;
	snprintf(connect_to, sizeof(connect_to), "::127.0.0.1:%d", port);
	struct curl_slist *to = curl_slist_append(NULL, connect_to);
	CHECK(sp_s3_sign(s3, h, &headers) == 0);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_CONNECT_TO, to);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 300L);
	curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
	curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_cb);
	curl_easy_setopt(h, CURLOPT_DEBUGDATA, sent);
	CHECK(curl_easy_perform(h) == CURLE_OPERATION_TIMEDOUT);
	curl_easy_cleanup(h);
	curl_slist_free_all(headers);
	curl_slist_free_all(to);
	close(fd);
}

static void check_sent(const char *sent, const char *want)
{
	if (!strstr(sent, want))
		fprintf(stderr, "request sent:\n%s\nlacks: %s\n", sent, want);
	CHECK(strstr(sent, want));
}

/* Signatures computed apart (Python hmac/hashlib, with the code that gives the signatures of
 * AWS's S3 examples, f0e8bdb8... and 34b48302...) for the same requests and date. */
static void signing(void)
{
	struct sp_s3 s3;
	struct sp_err err;
	char sent[4096];
	sigv4_env("TOKEN+/=");
	CHECK(sp_s3_init(&s3, "http://s3.example.com", NULL, &err) == 0);
	char *url = sp_s3_object_url(&s3, "examplebucket", "deltas/ft a/delta.sparse");
	request(&s3, url, "Range: bytes=0-9", sent);
	check_sent(sent, "GET /examplebucket/deltas/ft%20a/delta.sparse HTTP/1.1\r\n");
	check_sent(sent, "\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n");
	check_sent(sent, "\r\nx-amz-security-token: TOKEN+/=\r\n");
	check_sent(sent, "\r\nAuthorization: AWS4-HMAC-SHA256 "
		   "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
		   "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
		   "Signature=32d534079314e36f671fea935dc36b63f9260e7d274fb8029ba70018147f87ec\r\n");
	free(url);
	sp_s3_free(&s3);

	sigv4_env(NULL);
	CHECK(sp_s3_init(&s3, "http://s3.example.com", "eu-west-1", &err) == 0);
	url = sp_s3_list_url(&s3, "examplebucket", "deltas/", "1K3/Ip+R=");
	request(&s3, url, NULL, sent);
	check_sent(sent, "\r\nAuthorization: AWS4-HMAC-SHA256 "
		   "Credential=AKIAIOSFODNN7EXAMPLE/20130524/eu-west-1/s3/aws4_request, "
		   "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
		   "Signature=22bc1290713a2ea47aef7c15c25fe52faf7ea8400da94933c2adf9cdd1452d50\r\n");
	CHECK(!strstr(sent, "x-amz-security-token"));
	free(url);
	sp_s3_free(&s3);

	/* no credentials: a plain request */
	clear_env();
	setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
	CHECK(sp_s3_init(&s3, "http://s3.example.com", NULL, &err) == 0);
	url = sp_s3_object_url(&s3, "examplebucket", "a");
	request(&s3, url, NULL, sent);
	check_sent(sent, "GET /examplebucket/a HTTP/1.1\r\n");
	CHECK(!strstr(sent, "Authorization") && !strstr(sent, "x-amz-content-sha256"));
	free(url);
	sp_s3_free(&s3);
}

struct keys {
	char k[16][1100];
	size_t n, stop_at;
	struct sp_err *err;
};

static int on_key(const char *k, void *arg)
{
	struct keys *ks = arg;
	if (ks->n == ks->stop_at) {
		sp_err_set(ks->err, "stopped at %s", k);
		return -1;
	}
	if (ks->n < 16)
		snprintf(ks->k[ks->n], sizeof(ks->k[0]), "%s", k);
	ks->n++;
	return 0;
}

/* Parses xml (len bytes, or a NUL-terminated string when len is 0). */
static int parse(const char *xml, size_t len, struct keys *ks, char **next, struct sp_err *err)
{
	memset(ks, 0, sizeof(*ks));
	ks->stop_at = (size_t)-1;
	ks->err = err;
	return sp_s3_list_parse(xml, len ? len : strlen(xml), on_key, ks, next, err);
}

static int parse_file(const char *name, struct keys *ks, char **next, struct sp_err *err)
{
	char path[4096];
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", corpus, name);
	char *xml = (char *)test_slurp(path, &len);
	CHECK(xml);
	if (!xml)
		return -2;
	int rc = parse(xml, len, ks, next, err);
	free(xml);
	return rc;
}

/* s3rver's answers: two pages of a truncated listing (keys with spaces, '%', '+', XML entities
 * and UTF-8), a listing with a delimiter, an empty one, and an error. */
static void list_real(void)
{
	static struct keys ks;
	struct sp_err err;
	char *next;
	CHECK(parse_file("page1.xml", &ks, &next, &err) == 0 && ks.n == 4 &&
	      streq(ks.k[0], "deltas/delta.sparse") && streq(ks.k[1], "deltas/ft a/delta.sparse") &&
	      streq(ks.k[3], "deltas/ft-b/sub/delta.sparse") &&
	      streq(next, "1PN9/iRTt+djeIa5bw6A5SXr3wzl4VAvdbTKfdNwicB3OkjD9Xwb7Qn1R4wAmlGN9BCzvM9WHbc="));
	free(next);
	CHECK(parse_file("page2.xml", &ks, &next, &err) == 0 && ks.n == 4 && !next &&
	      streq(ks.k[0], "deltas/p%41+b/delta.sparse") &&
	      streq(ks.k[2], "deltas/x&y<z>/delta.sparse") &&
	      streq(ks.k[3], "deltas/\xc3\xbcn\xc3\xaf/delta.sparse"));
	CHECK(parse_file("delimiter.xml", &ks, &next, &err) == 0 && ks.n == 2 && !next &&
	      streq(ks.k[1], "deltas/top.txt"));
	CHECK(parse_file("empty.xml", &ks, &next, &err) == 0 && ks.n == 0 && !next);
	CHECK(parse_file("no-such-bucket.xml", &ks, &next, &err) == -1 && !next &&
	      strstr(err.msg, "NoSuchBucket") && strstr(err.msg, "does not exist"));
	CHECK(parse_file("dtd.xml", &ks, &next, &err) == -1 && !next && ks.n == 0 &&
	      strstr(err.msg, "DTD"));
}

static void list_bad(void)
{
	static struct keys ks;
	struct sp_err err;
	char *next, key[1100];
	CHECK(parse("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", 0, &ks,
		    &next, &err) == -1 && strstr(err.msg, "NextContinuationToken"));
	CHECK(parse("<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>", 0, &ks,
		    &next, &err) == -1 && strstr(err.msg, "IsTruncated"));
	/* a token without IsTruncated: followed */
	CHECK(parse("<ListBucketResult><NextContinuationToken>t</NextContinuationToken>"
		    "</ListBucketResult>", 0, &ks, &next, &err) == 0 && streq(next, "t"));
	free(next);
	CHECK(parse("<ListBucketResult><Contents><Key>a<b/></Key></Contents></ListBucketResult>",
		    0, &ks, &next, &err) == -1 && strstr(err.msg, "inside a key"));
	CHECK(parse("<Other/>", 0, &ks, &next, &err) == -1 && strstr(err.msg, "neither"));
	CHECK(parse("<ListBucketResult><Contents><Key>a</Key></Contents>", 0, &ks, &next, &err) ==
	      -1 && ks.n == 1 && strstr(err.msg, "line 1"));
	CHECK(parse("", 0, &ks, &next, &err) == -1 && err.msg[0]);
	CHECK(parse("<ListBucketResult><Contents><Key>a&#0;</Key></Contents></ListBucketResult>", 0,
		    &ks, &next, &err) == -1);
	/* keys nested where S3 puts none are not keys */
	CHECK(parse("<ListBucketResult><Key>no</Key><Contents><Owner><Key>no</Key></Owner>"
		    "<Key>yes</Key></Contents></ListBucketResult>", 0, &ks, &next, &err) == 0 &&
	      ks.n == 1 && streq(ks.k[0], "yes"));
	/* 1024 bytes is S3's longest key; one more is refused */
	char xml[1200];
	memset(key, 'k', 1025);
	key[1024] = 0;
	snprintf(xml, sizeof(xml), "<ListBucketResult><Contents><Key>%s</Key></Contents>"
		 "</ListBucketResult>", key);
	CHECK(parse(xml, 0, &ks, &next, &err) == 0 && ks.n == 1 && strlen(ks.k[0]) == 1024);
	key[1024] = 'k', key[1025] = 0;
	snprintf(xml, sizeof(xml), "<ListBucketResult><Contents><Key>%s</Key></Contents>"
		 "</ListBucketResult>", key);
	CHECK(parse(xml, 0, &ks, &next, &err) == -1 && strstr(err.msg, "longer"));
	/* the callback stops the parse */
	memset(&ks, 0, sizeof(ks));
	ks.stop_at = 1;
	ks.err = &err;
	const char *two = "<ListBucketResult><Contents><Key>a</Key></Contents><Contents><Key>b</Key>"
			  "</Contents><NextContinuationToken>t</NextContinuationToken></ListBucketResult>";
	CHECK(sp_s3_list_parse(two, strlen(two), on_key, &ks, &next, &err) == -1 && !next &&
	      ks.n == 1 && streq(err.msg, "stopped at b"));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_s3 CORPUS_DIR\n");
		return 2;
	}
	corpus = argv[1];
	curl_global_init(CURL_GLOBAL_DEFAULT);
	split();
	urls();
	regions();
	credentials_file();
	credentials_env();
	signing();
	list_real();
	list_bad();
	curl_global_cleanup();
	return test_done();
}
