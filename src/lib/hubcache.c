/* SPDX-License-Identifier: Apache-2.0 */
/* Hugging Face hub ids (ORG/NAME[@REVISION]) found in the local cache that huggingface_hub
 * fills: ROOT/models--ORG--NAME/refs/REVISION holds a commit hash, snapshots/COMMIT/ the files
 * (links into blobs/). Never the network: a model not downloaded yet is an error. */
#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sparse/sparse.h"

#define MAX_ROOTS 4
#define COMMIT_LEN 40

static int is_dir(const char *path)
{
	struct stat st;
	return !stat(path, &st) && S_ISDIR(st.st_mode);
}

static int is_commit(const char *s)
{
	size_t n = 0;
	while (isxdigit((unsigned char)s[n]) && !isupper((unsigned char)s[n]))
		n++;
	return n == COMMIT_LEN && !s[n];
}

/* A part of a repository name: letters, digits, '.', '_', '-', not starting with '.' or '-'. */
static int name_part(const char *s, size_t n)
{
	if (!n || s[0] == '.' || s[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return 0;
	return 1;
}

/* A revision names a file under refs/: no empty, "." or ".." parts, nothing unprintable. */
static int revision_ok(const char *rev)
{
	for (const char *p = rev;; p++) {
		size_t n = strcspn(p, "/");
		if (!n || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		for (size_t i = 0; i < n; i++)
			if (!isgraph((unsigned char)p[i]))
				return 0;
		p += n;
		if (!*p)
			return 1;
	}
}

int sp_hub_parse(const char *arg, char **id, char **revision)
{
	const char *at = strchr(arg, '@'), *slash = strchr(arg, '/');
	size_t n = at ? (size_t)(at - arg) : strlen(arg);
	if (!slash || slash >= arg + n || !name_part(arg, (size_t)(slash - arg)) ||
	    !name_part(slash + 1, n - (size_t)(slash - arg) - 1) || (at && !revision_ok(at + 1)))
		return -1;
	*id = strndup(arg, n);
	*revision = strdup(at ? at + 1 : "main");
	if (*id && *revision)
		return 0;
	free(*id);
	free(*revision);
	*id = *revision = NULL;
	return -1;
}

/* The cache folders in the order huggingface_hub would pick them, each at most once. */
static size_t cache_roots(char *roots[MAX_ROOTS])
{
	const char *hub = getenv("HF_HUB_CACHE"), *home = getenv("HF_HOME");
	const char *xdg = getenv("XDG_CACHE_HOME"), *user = getenv("HOME");
	struct passwd *pw = user && *user ? NULL : getpwuid(getuid());
	if (pw) /* mount(8) runs helpers without HOME */
		user = pw->pw_dir;
	char *c[MAX_ROOTS] = {0};
	size_t n = 0;
	if (hub && *hub)
		c[0] = strdup(hub);
	if (home && *home && asprintf(&c[1], "%s/hub", home) < 0)
		c[1] = NULL;
	if (xdg && *xdg && asprintf(&c[2], "%s/huggingface/hub", xdg) < 0)
		c[2] = NULL;
	if (user && *user && asprintf(&c[3], "%s/.cache/huggingface/hub", user) < 0)
		c[3] = NULL;
	for (size_t i = 0; i < MAX_ROOTS; i++) {
		int dup = 0;
		for (size_t j = 0; c[i] && j < n; j++)
			dup |= !strcmp(roots[j], c[i]);
		if (c[i] && !dup)
			roots[n++] = c[i];
		else
			free(c[i]);
	}
	return n;
}

/* Reads the commit hash that repo/refs/rev holds; -1 with why in note. */
static int read_ref(const char *repo, const char *rev, char commit[COMMIT_LEN + 1], char *note,
		    size_t note_len)
{
	char *path, line[128] = "";
	if (asprintf(&path, "%s/refs/%s", repo, rev) < 0)
		return -1;
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(note, note_len, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	line[strcspn(line, " \t\r\n")] = 0;
	int rc = is_commit(line) ? 0 : -1;
	if (rc)
		snprintf(note, note_len, "%s: not a commit hash", path);
	else
		memcpy(commit, line, COMMIT_LEN + 1);
	free(path);
	return rc;
}

/* The commit rev names in repo: rev itself when it is a commit with a snapshot, else what
 * refs/rev holds. */
static int find_commit(const char *repo, const char *rev, char commit[COMMIT_LEN + 1], char *note,
		       size_t note_len)
{
	char *snap;
	if (is_commit(rev) && asprintf(&snap, "%s/snapshots/%s", repo, rev) > 0) {
		int there = is_dir(snap);
		free(snap);
		if (there) {
			memcpy(commit, rev, COMMIT_LEN + 1);
			return 0;
		}
	}
	return read_ref(repo, rev, commit, note, note_len);
}

/* Looks for id at rev under one cache root; 0 with ref filled, else -1 with why in note. */
static int lookup(const char *root, const char *id, const char *rev, struct sp_hub_ref *ref,
		  char *note, size_t note_len)
{
	char *repo, *snap = NULL, commit[COMMIT_LEN + 1];
	const char *slash = strchr(id, '/');
	int rc = -1;
	if (asprintf(&repo, "%s/models--%.*s--%s", root, (int)(slash - id), id, slash + 1) < 0)
		return -1;
	if (!is_dir(repo)) {
		snprintf(note, note_len, "%s: no such folder", repo);
	} else if (find_commit(repo, rev, commit, note, note_len) == 0) {
		if (asprintf(&snap, "%s/snapshots/%s", repo, commit) < 0)
			snap = NULL;
		else if (!is_dir(snap))
			snprintf(note, note_len, "%s: no such folder", snap);
		else if ((ref->commit = strdup(commit))) {
			ref->dir = snap;
			snap = NULL;
			rc = 0;
		}
	}
	free(snap);
	free(repo);
	return rc;
}

static int resolve(const char *arg, struct sp_hub_ref *ref, struct sp_err *err)
{
	char *roots[MAX_ROOTS], looked[sizeof(err->msg)] = "", note[512];
	size_t n = cache_roots(roots);
	int rc = -1;
	for (size_t i = 0; i < n; i++) {
		note[0] = 0;
		if (rc && lookup(roots[i], ref->id, ref->revision, ref, note, sizeof(note)) == 0)
			rc = 0;
		else if (rc)
			snprintf(looked + strlen(looked), sizeof(looked) - strlen(looked), "%s%s",
				 looked[0] ? "; " : "", note);
		free(roots[i]);
	}
	if (rc)
		sp_err_set(err, "%s: not a folder, nor in the local Hugging Face cache (sparse never "
				"downloads; HF_HUB_CACHE, HF_HOME say where it is): %s",
			   arg, n ? looked : "no cache folder");
	return rc;
}

int sp_hub_locate(const char *arg, struct sp_hub_ref *ref, struct sp_err *err)
{
	memset(ref, 0, sizeof(*ref));
	if (is_dir(arg) || sp_hub_parse(arg, &ref->id, &ref->revision)) {
		ref->dir = strdup(arg);
		if (ref->dir)
			return 0;
		sp_err_set(err, "%s: out of memory", arg);
		return -1;
	}
	if (resolve(arg, ref, err) == 0)
		return 0;
	sp_hub_ref_free(ref);
	return -1;
}

void sp_hub_ref_free(struct sp_hub_ref *ref)
{
	free(ref->dir);
	free(ref->id);
	free(ref->revision);
	free(ref->commit);
	memset(ref, 0, sizeof(*ref));
}
