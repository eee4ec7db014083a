/* SPDX-License-Identifier: Apache-2.0 */
/*
 * S3 and S3-compatible stores: where an object is (URL forms), who asks for it (credentials,
 * read the way the AWS tools read them) and how a request is signed (SigV4, done by libcurl),
 * and what a ListObjectsV2 answer holds. No transfers here: http.c makes the requests.
 */
#ifndef SP_S3_H
#define SP_S3_H

#include <curl/curl.h>

#include "sparse/sparse.h"

struct sp_s3 {
	char *endpoint; /* http(s)://HOST[:PORT] without a trailing '/': path-style requests;
			 * NULL: AWS, https://BUCKET.s3.REGION.amazonaws.com */
	char *region;
	char *key_id;   /* NULL: no credentials, requests go unsigned */
	char *secret;
	char *token;    /* a session token, or NULL */
	char *sigv4;    /* "aws:amz:REGION:s3", for CURLOPT_AWS_SIGV4 */
};

/*
 * endpoint: NULL for AWS. region: NULL for AWS_REGION, else AWS_DEFAULT_REGION, else
 * us-east-1. Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN),
 * else the profile AWS_PROFILE (default "default") of AWS_SHARED_CREDENTIALS_FILE (default
 * ~/.aws/credentials), else none. -1 with err for a bad endpoint or region, half a key pair,
 * an unreadable credentials file or a named profile that it lacks.
 */
int sp_s3_init(struct sp_s3 *s3, const char *endpoint, const char *region, struct sp_err *err);
/* Frees what init allocated, the secrets wiped first. */
void sp_s3_free(struct sp_s3 *s3);

/* s3://BUCKET[/KEY]: the bucket and the key (maybe "") malloc'd; -1 when s3url is not that
 * form or the bucket name has a character no store allows. */
int sp_s3_split(const char *s3url, char **bucket, char **key);

/* The URL of an object (its key percent-encoded as SigV4 wants); NULL when out of memory. */
char *sp_s3_object_url(const struct sp_s3 *s3, const char *bucket, const char *key);

/* The URL of one page of ListObjectsV2 of every key that starts with prefix, after the page
 * whose answer gave continuation (NULL for the first page); NULL when out of memory. Its query
 * is in SigV4's canonical order, which libcurl signs as it is. */
char *sp_s3_list_url(const struct sp_s3 *s3, const char *bucket, const char *prefix,
		     const char *continuation);

/*
 * Sets h up to sign its request (SigV4 by libcurl) and appends the headers it needs to
 * *headers, which the caller passes as CURLOPT_HTTPHEADER with its own. Redirects are not
 * followed: a signature is for one host, and the session token is a header that libcurl would
 * send to any. Nothing at all when there are no credentials. 0, or -1 when out of memory.
 */
int sp_s3_sign(const struct sp_s3 *s3, CURL *h, struct curl_slist **headers);

/*
 * A ListObjectsV2 answer (len bytes of XML): key() called with each object's key in order (0
 * to go on; anything else stops the parse, which returns -1 with err as key() left it), then
 * *next set to the continuation token when the listing is truncated (malloc'd), else NULL.
 * -1 with err for anything else: not XML, an S3 <Error> (its code and message), a DTD, a key
 * or token longer than S3 allows, a truncated answer without a token.
 */
int sp_s3_list_parse(const char *xml, size_t len, int (*key)(const char *k, void *arg), void *arg,
		     char **next, struct sp_err *err);

#endif
