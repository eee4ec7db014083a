/* SPDX-License-Identifier: Apache-2.0 */
/* S3: URL forms, credentials as the AWS tools find them, SigV4 set up on a curl handle. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "s3.h"

/* Longest credentials file line worth reading: keys, secrets and session tokens are far
 * shorter; a longer line is not one of them. */
#define LINE_MAX_LEN 16384

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Credentials go into a header and the signature: printable ASCII, no spaces. */
static int printable(const char *s)
{
	for (; *s; s++)
		if (*s <= ' ' || *s > '~')
			return 0;
	return 1;
}

static int set_str(char **dst, const char *src)
{
	wipe_free(*dst);
	*dst = src ? strdup(src) : NULL;
	return src && !*dst ? -1 : 0;
}

static char *trim(char *s)
{
	char *end = s + strlen(s);
	while (*s == ' ' || *s == '\t')
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		*--end = 0;
	return s;
}

/* One "name = value" (or "name: value", as the AWS tools' parser also takes) of the profile. */
static int profile_line(char *line, struct sp_s3 *s3)
{
	char *sep = line + strcspn(line, "=:");
	if (!*sep)
		return 0;
	*sep = 0;
	char *name = trim(line), *value = trim(sep + 1);
	for (char *c = name; *c; c++)
		*c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
	if (!*value)
		value = NULL;
	if (!strcmp(name, "aws_access_key_id"))
		return set_str(&s3->key_id, value);
	if (!strcmp(name, "aws_secret_access_key"))
		return set_str(&s3->secret, value);
	if (!strcmp(name, "aws_session_token"))
		return set_str(&s3->token, value);
	return 0;
}

/* Reads profile's keys from the INI file f: 1 when it has the profile, 0 when not, -1 with
 * errno when reading fails, -2 for a line too long. Comment lines start with '#' or ';'. */
static int profile_scan(FILE *f, const char *profile, struct sp_s3 *s3)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int in = 0, found = 0, rc = 0;
	while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
		char *s = trim(line);
		if (n > LINE_MAX_LEN)
			rc = -2;
		else if (*s == '[') {
			char *end = strchr(s, ']');
			if (end)
				*end = 0;
			in = end && !strcmp(trim(s + 1), profile);
			found |= in;
		} else if (in && *s && *s != '#' && *s != ';')
			rc = profile_line(s, s3);
	}
	if (ferror(f) && !rc)
		rc = -1;
	/* trim() cut the lines with NULs: wipe the whole buffer, not a string */
	if (line)
		explicit_bzero(line, cap);
	free(line);
	return rc ? rc : found;
}

static char *credentials_path(void)
{
	const char *file = env("AWS_SHARED_CREDENTIALS_FILE"), *home = env("HOME");
	char *path = NULL;
	if (!home) {
		struct passwd *pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : "/";
	}
	if (!file)
		file = "~/.aws/credentials";
	if (!strncmp(file, "~/", 2))
		return asprintf(&path, "%s%s", home, file + 1) < 0 ? NULL : path;
	return strdup(file);
}

/* The profile's keys, if the credentials file has it. A profile named by AWS_PROFILE must be
 * there, with keys: a silent fall back to unsigned requests would only show as a 403 later. */
static int profile_read(struct sp_s3 *s3, struct sp_err *err)
{
	const char *named = env("AWS_PROFILE"), *profile = named ? named : "default";
	char *path = credentials_path();
	FILE *f = path ? fopen(path, "re") : NULL;
	int found = -1, rc = -1;
	if (!path)
		sp_err_set(err, "credentials: %s", strerror(ENOMEM));
	else if (!f && (errno != ENOENT || named))
		sp_err_set(err, "%s: %s (AWS credentials%s%s)", path, strerror(errno),
			   named ? ", AWS_PROFILE=" : "", named ? named : "");
	else if (f && (found = profile_scan(f, profile, s3)) < 0)
		sp_err_set(err, "%s: %s", path, found == -2 ? "a line longer than "
			   "credentials are" : strerror(errno));
	else if (found == 0 && named)
		sp_err_set(err, "%s: no profile [%s] (AWS_PROFILE)", path, profile);
	else if (!s3->key_id != !s3->secret || (named && !s3->key_id))
		sp_err_set(err, "%s: profile [%s] has no %s", path, profile,
			   s3->key_id ? "aws_secret_access_key" : "aws_access_key_id");
	else
		rc = 0;
	if (f)
		fclose(f);
	free(path);
	return rc;
}

static int env_read(struct sp_s3 *s3, struct sp_err *err)
{
	const char *id = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
	if (!id != !secret) {
		const char *set = id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY";
		sp_err_set(err, "%s is set but %s is not", set,
			   id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		return -1;
	}
	if (set_str(&s3->key_id, id) || set_str(&s3->secret, secret) ||
	    set_str(&s3->token, id ? env("AWS_SESSION_TOKEN") : NULL)) {
		sp_err_set(err, "credentials: %s", strerror(ENOMEM));
		return -1;
	}
	return 0;
}

static int credentials_read(struct sp_s3 *s3, struct sp_err *err)
{
	if (env_read(s3, err) || (!s3->key_id && profile_read(s3, err)))
		return -1;
	if ((s3->key_id && !printable(s3->key_id)) || (s3->secret && !printable(s3->secret)) ||
	    (s3->token && !printable(s3->token))) {
		sp_err_set(err, "AWS credentials: a key, secret or token with a space or a "
			   "character that is not printable ASCII");
		return -1;
	}
	return 0;
}

/* http(s)://HOST[:PORT][/PATH]: no query, fragment, user or spaces, which would change what a
 * key's URL means. */
static int endpoint_ok(const char *e)
{
	const char *host = !strncmp(e, "http://", 7)    ? e + 7
			   : !strncmp(e, "https://", 8) ? e + 8
							: NULL;
	return host && *host && *host != '/' && printable(e) && !strpbrk(e, "?#@\\");
}

static int region_ok(const char *r)
{
	size_t n = strlen(r);
	return n > 0 && n <= 64 && strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static int config_read(struct sp_s3 *s3, const char *endpoint, const char *region,
		       struct sp_err *err)
{
	if (!region)
		region = env("AWS_REGION") ? env("AWS_REGION") : env("AWS_DEFAULT_REGION");
	if (!region)
		region = "us-east-1";
	if (endpoint && !endpoint_ok(endpoint)) {
		sp_err_set(err, "endpoint %s: not http(s)://HOST[:PORT]", endpoint);
		return -1;
	}
	if (!region_ok(region)) {
		sp_err_set(err, "region %s: not an S3 region name (lowercase letters, digits, '-')",
			   region);
		return -1;
	}
	if (set_str(&s3->endpoint, endpoint) || set_str(&s3->region, region) ||
	    asprintf(&s3->sigv4, "aws:amz:%s:s3", region) < 0) {
		s3->sigv4 = NULL;
		sp_err_set(err, "S3 configuration: %s", strerror(ENOMEM));
		return -1;
	}
	for (size_t n = endpoint ? strlen(s3->endpoint) : 0; n > 0 && s3->endpoint[n - 1] == '/'; n--)
		s3->endpoint[n - 1] = 0;
	return 0;
}

int sp_s3_init(struct sp_s3 *s3, const char *endpoint, const char *region, struct sp_err *err)
{
	memset(s3, 0, sizeof(*s3));
	if (config_read(s3, endpoint, region, err) || credentials_read(s3, err)) {
		sp_s3_free(s3);
		return -1;
	}
	return 0;
}

void sp_s3_free(struct sp_s3 *s3)
{
	free(s3->endpoint);
	free(s3->region);
	free(s3->sigv4);
	wipe_free(s3->key_id);
	wipe_free(s3->secret);
	wipe_free(s3->token);
	memset(s3, 0, sizeof(*s3));
}

/* Letters, digits, '.', '-' and '_' (old us-east-1 buckets): nothing that changes a URL. */
static int bucket_ok(const char *b, size_t n)
{
	return n > 0 && n <= 255 &&
	       strspn(b, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") >= n;
}

int sp_s3_split(const char *s3url, char **bucket, char **key)
{
	const char *b = s3url + 5, *slash;
	size_t n;
	if (strncasecmp(s3url, "s3://", 5))
		return -1;
	slash = strchr(b, '/');
	n = slash ? (size_t)(slash - b) : strlen(b);
	if (!bucket_ok(b, n))
		return -1;
	*bucket = strndup(b, n);
	*key = strdup(slash ? slash + 1 : "");
	if (*bucket && *key)
		return 0;
	free(*bucket);
	free(*key);
	*bucket = *key = NULL;
	return -1;
}

/* Can the bucket be a host name under AWS's TLS certificate (*.s3.REGION.amazonaws.com)?
 * Names with dots or capitals cannot: they go path-style, as the AWS SDKs send them. */
static int virtual_host(const char *b)
{
	size_t n = strlen(b);
	return n >= 3 && n <= 63 && b[0] != '-' && b[n - 1] != '-' &&
	       strspn(b, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* Writes ENDPOINT/BUCKET/ (or the AWS form) and then the key, each '/'-separated segment
 * percent-encoded: SigV4 signs the path as sent, and S3 encodes all but A-Za-z0-9-._~ . */
static int put_object(FILE *f, const struct sp_s3 *s3, const char *bucket, const char *key)
{
	if (s3->endpoint)
		fprintf(f, "%s/%s/", s3->endpoint, bucket);
	else if (virtual_host(bucket))
		fprintf(f, "https://%s.s3.%s.amazonaws.com/", bucket, s3->region);
	else
		fprintf(f, "https://s3.%s.amazonaws.com/%s/", s3->region, bucket);
	for (const char *seg = key;; seg++) {
		size_t n = strcspn(seg, "/");
		char *enc = n ? curl_easy_escape(NULL, seg, (int)n) : NULL;
		if (n && !enc)
			return -1;
		fprintf(f, "%s%s", enc ? enc : "", seg[n] ? "/" : "");
		curl_free(enc);
		seg += n;
		if (!*seg)
			return 0;
	}
}

/* The string a memory stream wrote to *buf (set only by fclose), or NULL when rc or the stream
 * failed. */
static char *closed(FILE *f, char **buf, int rc)
{
	if ((ferror(f) | fclose(f)) || rc) {
		free(*buf);
		return NULL;
	}
	return *buf;
}

char *sp_s3_object_url(const struct sp_s3 *s3, const char *bucket, const char *key)
{
	char *buf = NULL;
	size_t len;
	FILE *f = open_memstream(&buf, &len);
	return f ? closed(f, &buf, put_object(f, s3, bucket, key)) : NULL;
}

/* name=value& with the value percent-encoded, as SigV4's canonical query has it. */
static int put_param(FILE *f, const char *name, const char *value, const char *after)
{
	char *enc = curl_easy_escape(NULL, value, 0);
	if (!enc)
		return -1;
	fprintf(f, "%s=%s%s", name, enc, after);
	curl_free(enc);
	return 0;
}

char *sp_s3_list_url(const struct sp_s3 *s3, const char *bucket, const char *prefix,
		     const char *continuation)
{
	char *buf = NULL;
	size_t len;
	FILE *f = open_memstream(&buf, &len);
	int rc;
	if (!f)
		return NULL;
	/* libcurl 7.88 signs the query as given, and SigV4 wants its parameters sorted by name */
	rc = put_object(f, s3, bucket, "");
	fputc('?', f);
	if (!rc && continuation)
		rc = put_param(f, "continuation-token", continuation, "&");
	fputs("list-type=2&", f);
	if (!rc)
		rc = put_param(f, "prefix", prefix, "");
	return closed(f, &buf, rc);
}

int sp_s3_sign(const struct sp_s3 *s3, CURL *h, struct curl_slist **headers)
{
	struct curl_slist *l;
	char *token = NULL;
	if (!s3->key_id)
		return 0;
	if (curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s3->sigv4) ||
	    curl_easy_setopt(h, CURLOPT_USERNAME, s3->key_id) ||
	    curl_easy_setopt(h, CURLOPT_PASSWORD, s3->secret) ||
	    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L))
		return -1;
	if (!(l = curl_slist_append(*headers, "x-amz-content-sha256: UNSIGNED-PAYLOAD")))
		return -1;
	*headers = l;
	if (!s3->token)
		return 0;
	if (asprintf(&token, "x-amz-security-token: %s", s3->token) < 0)
		return -1;
	l = curl_slist_append(*headers, token);
	wipe_free(token);
	if (!l)
		return -1;
	*headers = l;
	return 0;
}
