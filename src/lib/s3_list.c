/* SPDX-License-Identifier: Apache-2.0 */
/* ListObjectsV2 answers, read with expat: the keys of one page and where the next one starts.
 * The answer comes from the network, so everything about it is bounded: no DTD (S3 sends
 * none, and entities declared there are the way to blow a parser up), keys and tokens no
 * longer than S3 makes them, and only the few elements read are looked at. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <expat.h>

#include "s3.h"

/* S3 keys are at most 1024 bytes; continuation tokens are opaque but short. */
#define KEY_MAX 1024
#define TOKEN_MAX 4096

enum field { F_NONE, F_KEY, F_TRUNCATED, F_TOKEN, F_CODE, F_MESSAGE };

struct list {
	XML_Parser p;
	int (*key)(const char *k, void *arg);
	void *arg;
	struct sp_err *err;
	int failed;
	unsigned depth;
	int root;        /* 1: ListBucketResult, 2: Error */
	int in_contents; /* inside ListBucketResult/Contents */
	enum field field;
	size_t len, max;
	char text[TOKEN_MAX + 1];
	int truncated;
	char *token;
	char code[128], message[512];
};

static void fail(struct list *l, const char *what)
{
	if (!l->failed)
		sp_err_set(l->err, "ListObjectsV2 answer, line %lu: %s",
			   (unsigned long)XML_GetCurrentLineNumber(l->p), what);
	l->failed = 1;
	XML_StopParser(l->p, XML_FALSE);
}

/* The element of interest that name is, at the current depth under the root. */
static enum field field_of(const struct list *l, const char *name)
{
	if (l->root == 1 && l->depth == 2 && !strcmp(name, "IsTruncated"))
		return F_TRUNCATED;
	if (l->root == 1 && l->depth == 2 && !strcmp(name, "NextContinuationToken"))
		return F_TOKEN;
	if (l->root == 1 && l->depth == 3 && l->in_contents && !strcmp(name, "Key"))
		return F_KEY;
	if (l->root == 2 && l->depth == 2 && !strcmp(name, "Code"))
		return F_CODE;
	if (l->root == 2 && l->depth == 2 && !strcmp(name, "Message"))
		return F_MESSAGE;
	return F_NONE;
}

static void XMLCALL start(void *arg, const XML_Char *name, const XML_Char **attrs)
{
	struct list *l = arg;
	(void)attrs;
	if (l->failed)
		return;
	if (l->field != F_NONE)
		return fail(l, "an element inside a key, token or flag");
	l->depth++;
	if (l->depth == 1) {
		l->root = !strcmp(name, "ListBucketResult") ? 1 : !strcmp(name, "Error") ? 2 : 0;
		if (!l->root)
			fail(l, "neither ListBucketResult nor Error");
		return;
	}
	if (l->root == 1 && l->depth == 2 && !strcmp(name, "Contents"))
		l->in_contents = 1;
	l->field = field_of(l, name);
	l->len = 0;
	l->max = l->field == F_KEY ? KEY_MAX : l->field == F_CODE ? sizeof(l->code) - 1
		 : l->field == F_MESSAGE ? sizeof(l->message) - 1 : TOKEN_MAX;
}

static void XMLCALL text(void *arg, const XML_Char *s, int len)
{
	struct list *l = arg;
	size_t n = (size_t)len;
	if (l->failed || l->field == F_NONE)
		return;
	if (n > l->max - l->len) {
		/* an error's message is only shown: cut it; a key or token cut would be wrong */
		if (l->field != F_MESSAGE)
			return fail(l, l->field == F_KEY ? "a key longer than S3 allows"
					: "a token or flag longer than S3 sends");
		n = l->max - l->len;
	}
	memcpy(l->text + l->len, s, n);
	l->len += n;
}

static void field_end(struct list *l)
{
	l->text[l->len] = 0;
	switch (l->field) {
	case F_KEY:
		if (l->key(l->text, l->arg)) {
			l->failed = 1;
			XML_StopParser(l->p, XML_FALSE);
		}
		break;
	case F_TRUNCATED:
		l->truncated = !strcmp(l->text, "true") ? 1 : !strcmp(l->text, "false") ? 0 : -1;
		if (l->truncated < 0)
			fail(l, "IsTruncated neither true nor false");
		break;
	case F_TOKEN:
		free(l->token);
		if (!(l->token = strdup(l->text)))
			fail(l, strerror(ENOMEM));
		break;
	case F_CODE:
		memcpy(l->code, l->text, l->len + 1);
		break;
	case F_MESSAGE:
		memcpy(l->message, l->text, l->len + 1);
		break;
	case F_NONE:
		break;
	}
}

static void XMLCALL end(void *arg, const XML_Char *name)
{
	struct list *l = arg;
	(void)name;
	/* expat may still call handlers after a stop */
	if (l->failed)
		return;
	field_end(l);
	l->field = F_NONE;
	if (l->depth == 2)
		l->in_contents = 0;
	l->depth--;
}

static void XMLCALL doctype(void *arg, const XML_Char *name, const XML_Char *sysid,
			    const XML_Char *pubid, int internal)
{
	(void)name, (void)sysid, (void)pubid, (void)internal;
	fail(arg, "a DTD, which S3 never sends");
}

/* After the whole document: what it said, or why it is not a listing. */
static int outcome(struct list *l, char **next)
{
	if (l->root == 2) {
		sp_err_set(l->err, "S3 error %s: %s", l->code[0] ? l->code : "(no code)",
			   l->message[0] ? l->message : "(no message)");
		return -1;
	}
	if (l->truncated == 1 && !l->token) {
		sp_err_set(l->err, "ListObjectsV2 answer: truncated, without a "
			   "NextContinuationToken");
		return -1;
	}
	/* a store that leaves IsTruncated out but gives a token: follow it */
	if (l->truncated != 0 && l->token) {
		*next = l->token;
		l->token = NULL;
	}
	return 0;
}

int sp_s3_list_parse(const char *xml, size_t len, int (*key)(const char *k, void *arg), void *arg,
		     char **next, struct sp_err *err)
{
	struct list l = {.key = key, .arg = arg, .err = err, .truncated = -2};
	int rc = -1;
	*next = NULL;
	if (len > INT_MAX) {
		sp_err_set(err, "ListObjectsV2 answer: %zu bytes, more than a listing is", len);
		return -1;
	}
	if (!(l.p = XML_ParserCreate("UTF-8"))) {
		sp_err_set(err, "ListObjectsV2 answer: %s", strerror(ENOMEM));
		return -1;
	}
	XML_SetUserData(l.p, &l);
	XML_SetElementHandler(l.p, start, end);
	XML_SetCharacterDataHandler(l.p, text);
	XML_SetStartDoctypeDeclHandler(l.p, doctype);
	if (XML_Parse(l.p, xml, (int)len, XML_TRUE) == XML_STATUS_OK)
		rc = outcome(&l, next);
	else if (!l.failed)
		sp_err_set(err, "ListObjectsV2 answer, line %lu: %s",
			   (unsigned long)XML_GetCurrentLineNumber(l.p),
			   XML_ErrorString(XML_GetErrorCode(l.p)));
	free(l.token);
	XML_ParserFree(l.p);
	return rc;
}
