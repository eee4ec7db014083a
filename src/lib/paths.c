/* SPDX-License-Identifier: Apache-2.0 */
/* The paths of a write: where a delta may be written (not inside one of its inputs, where a
 * next run would read the delta as one of the model's files, and not around one), and where the
 * delta's folder finds its base. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paths.h"

/* Canonical directory dir followed by name, whose "." and ".." go by name: nothing below dir
 * exists, so nothing there is a link. */
static char *join(const char *dir, const char *name)
{
	char *out = NULL;
	int root = !strcmp(dir, "/");
	if (!*name || !strcmp(name, "."))
		return strdup(dir);
	if (!strcmp(name, "..")) {
		const char *slash = strrchr(dir, '/');
		return slash == dir ? strdup("/") : strndup(dir, (size_t)(slash - dir));
	}
	return asprintf(&out, "%s/%s", root ? "" : dir, name) < 0 ? NULL : out;
}

/* The canonical absolute path of path, which need not exist: the real path of its nearest
 * existing ancestor, then the rest. NULL when no ancestor resolves (or it is not a folder). */
static char *resolve(const char *path)
{
	char *real = realpath(path, NULL), *copy, *slash, *up;
	if (real || errno != ENOENT || !*path || !strcmp(path, "."))
		return real;
	if (!(copy = strdup(path)))
		return NULL;
	for (size_t n = strlen(copy); n > 1 && copy[n - 1] == '/'; n--)
		copy[n - 1] = 0;
	slash = strrchr(copy, '/');
	if (slash)
		*slash = 0;
	up = resolve(!slash ? "." : slash == copy ? "/" : copy);
	real = up ? join(up, slash ? slash + 1 : copy) : NULL;
	free(up);
	free(copy);
	return real;
}

/* Is a equal to or below b (both canonical)? */
static int within(const char *a, const char *b)
{
	size_t n = strlen(b);
	return !strncmp(a, b, n) && (!a[n] || a[n] == '/' || !strcmp(b, "/"));
}

static int overlap(const char *out_dir, const char *out, const char *input, const char *role,
		   struct sp_err *err)
{
	struct sp_hub_ref ref;
	struct sp_err ignored;
	/* an input that does not exist is left for the write to report */
	char *in = sp_hub_locate(input, &ref, &ignored) ? NULL : realpath(ref.dir, NULL);
	const char *how = !in ? NULL : !strcmp(out, in) ? "is" : within(out, in) ? "is inside"
			: within(in, out) ? "holds" : NULL;
	if (how)
		sp_err_set(err, "%s: the output %s %s %s%s%s%s; write the delta outside its inputs",
			   out_dir, how, role, input, strcmp(input, in) ? " (" : "",
			   strcmp(input, in) ? in : "", strcmp(input, in) ? ")" : "");
	free(in);
	sp_hub_ref_free(&ref);
	return how ? -1 : 0;
}

int sp_write_check_output(const char *out_dir, const char *const *inputs,
			  const char *const *roles, size_t n, struct sp_err *err)
{
	char *out = resolve(out_dir);
	int rc = 0;
	for (size_t i = 0; out && rc == 0 && i < n; i++)
		rc = overlap(out_dir, out, inputs[i], roles[i], err);
	free(out);
	return rc;
}

/* The path of absolute path to, relative to absolute directory from: "../" for each part of
 * from below the common parts, then the rest of to. */
static void relative_path(const char *from, const char *to, char *rel, size_t cap)
{
	size_t common = 0, k = 0;
	for (; from[k] && from[k] == to[k]; k++)
		if (from[k] == '/')
			common = k;
	if ((!from[k] && (!to[k] || to[k] == '/')) || (!to[k] && from[k] == '/'))
		common = k;
	rel[0] = 0;
	for (const char *p = from + common; *p; p++)
		if (*p == '/' && p[1] && p[1] != '/')
			strncat(rel, "../", cap - strlen(rel) - 1);
	const char *rest = to + common;
	while (*rest == '/')
		rest++;
	strncat(rel, rest, cap - strlen(rel) - 1);
	size_t n = strlen(rel);
	if (n && rel[n - 1] == '/')
		rel[n - 1] = 0;
	if (!*rel)
		snprintf(rel, cap, ".");
}

void sp_base_location(const char *base_dir, const char *out_dir, char **abs, char **rel)
{
	char *out = resolve(out_dir), buf[PATH_MAX];
	*abs = realpath(base_dir, NULL);
	*rel = NULL;
	if (*abs && out) {
		relative_path(out, *abs, buf, sizeof(buf));
		*rel = strdup(buf);
	}
	free(out);
}
