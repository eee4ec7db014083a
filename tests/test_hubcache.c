/* SPDX-License-Identifier: Apache-2.0 */
/* Hub ids resolved in a fake Hugging Face cache that the test builds: branches, tags and
 * commits, the order of the cache folders, a folder winning over an id, and misses. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manifest.h"
#include "sparse/sparse.h"
#include "testutil.h"

#define C1 "1111111111111111111111111111111111111111"
#define C2 "2222222222222222222222222222222222222222"

static const char *tmp;

/* A repository org/NAME under root with snapshots C1 and C2; refs/main -> C1, v2 -> C2. */
static void fake_repo(const char *root, const char *name)
{
	test_sh("r='%s/models--org--%s' && mkdir -p \"$r/blobs\" \"$r/refs/tags\" "
		"\"$r/snapshots/" C1 "\" \"$r/snapshots/" C2 "\" && echo one >\"$r/blobs/b1\" && "
		"ln -s ../../blobs/b1 \"$r/snapshots/" C1 "/config.json\" && "
		"printf " C1 " >\"$r/refs/main\" && echo " C2 " >\"$r/refs/tags/v2\"",
		root, name);
}

/* Resolves arg; checks the snapshot folder it gives (NULL: it must fail). */
static void expect(const char *arg, const char *dir_suffix, const char *commit)
{
	struct sp_hub_ref ref;
	struct sp_err err = {{0}};
	int rc = sp_hub_locate(arg, &ref, &err);
	if (!dir_suffix) {
		CHECK(rc == -1);
		CHECK(strstr(err.msg, arg) != NULL);
		return;
	}
	CHECK(rc == 0);
	if (rc) {
		fprintf(stderr, "%s: %s\n", arg, err.msg);
		return;
	}
	size_t n = strlen(ref.dir), k = strlen(dir_suffix);
	CHECK(n >= k && !strcmp(ref.dir + n - k, dir_suffix));
	CHECK(commit ? ref.commit && !strcmp(ref.commit, commit) : !ref.commit && !ref.id);
	sp_hub_ref_free(&ref);
}

static void test_parse(void)
{
	char *id, *rev;
	CHECK(sp_hub_parse("meta-llama/Llama-2-7b-hf", &id, &rev) == 0);
	CHECK(!strcmp(id, "meta-llama/Llama-2-7b-hf") && !strcmp(rev, "main"));
	free(id);
	free(rev);
	CHECK(sp_hub_parse("org/name@refs/pr/1", &id, &rev) == 0);
	CHECK(!strcmp(id, "org/name") && !strcmp(rev, "refs/pr/1"));
	free(id);
	free(rev);
	const char *bad[] = {"name", "/abs/path", "a/b/c", "org/", "./x", "org/na me", "o/n@",
			     "o/n@../x", "o/n@a//b", "o/.hidden", "../up"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CHECK(sp_hub_parse(bad[i], &id, &rev) == -1);
}

static void test_resolve(void)
{
	char hub[512], home[512], user[512];
	snprintf(hub, sizeof(hub), "%s/hubcache", tmp);
	snprintf(home, sizeof(home), "%s/hfhome", tmp);
	snprintf(user, sizeof(user), "%s/user", tmp);
	fake_repo(hub, "first");
	test_sh("mkdir -p '%s/hub' '%s/.cache/huggingface/hub'", home, user);
	strcat(home, "/hub");
	fake_repo(home, "second");
	strcat(user, "/.cache/huggingface/hub");
	fake_repo(user, "third");
	home[strlen(home) - 4] = 0;
	user[strlen(user) - strlen("/.cache/huggingface/hub")] = 0;
	setenv("HF_HUB_CACHE", hub, 1);
	setenv("HF_HOME", home, 1);
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", user, 1);
	expect("org/first", "/models--org--first/snapshots/" C1, C1);
	expect("org/first@main", "/models--org--first/snapshots/" C1, C1);
	expect("org/first@tags/v2", "/models--org--first/snapshots/" C2, C2);
	expect("org/first@" C2, "/models--org--first/snapshots/" C2, C2);
	expect("org/second", "/hfhome/hub/models--org--second/snapshots/" C1, C1);
	expect("org/third@tags/v2", "/.cache/huggingface/hub/models--org--third/snapshots/" C2, C2);
	expect("org/first@nobranch", NULL, NULL);
	expect("org/first@3333333333333333333333333333333333333333", NULL, NULL);
	expect("org/missing", NULL, NULL);
	/* The miss names every place it looked. */
	struct sp_hub_ref ref;
	struct sp_err err;
	CHECK(sp_hub_locate("org/missing", &ref, &err) == -1);
	CHECK(strstr(err.msg, "hubcache/models--org--missing") && strstr(err.msg, "hfhome/hub/") &&
	      strstr(err.msg, ".cache/huggingface/hub/models--org--missing"));
	/* A broken ref: the file is there, the snapshot is not. */
	test_sh("printf 4444444444444444444444444444444444444444 >'%s/models--org--first/refs/gone'", hub);
	expect("org/first@gone", NULL, NULL);
	/* A folder that exists wins over an id of the same spelling; a path that is neither an
	 * id nor a folder comes back as it is, for the caller's open to fail on. */
	test_sh("mkdir -p '%s/org/first'", tmp);
	CHECK(chdir(tmp) == 0);
	expect("org/first", "org/first", NULL);
	expect("no/such/folder", "no/such/folder", NULL);
	/* Without HF_HUB_CACHE, HF_HOME/hub is the first place. */
	unsetenv("HF_HUB_CACHE");
	expect("org/second@tags/v2", "/hfhome/hub/models--org--second/snapshots/" C2, C2);
	expect("org/zzz", NULL, NULL);
}

/* Parses a minimal manifest whose base has the given hub member ("" for none). */
static int parse_with_hub(const char *hub, struct sp_manifest *m)
{
	char json[1024];
	struct sp_err err;
	snprintf(json, sizeof(json),
		 "{\"chunk_size\": 1048576, \"mode\": \"lossless\", \"files\": [], "
		 "\"base\": {\"path\": \"/b\", \"files\": []%s%s}}",
		 *hub ? ", \"hub\": " : "", hub);
	return sp_manifest_parse(json, strlen(json), &(struct sp_manifest_table){0}, m, "test", &err);
}

/* Deltas without a hub id (all older ones) read as before; a malformed one is refused. */
static void test_manifest(void)
{
	struct sp_manifest m;
	CHECK(parse_with_hub("", &m) == 0 && !m.hub_id && !m.hub_commit);
	sp_manifest_free(&m);
	CHECK(parse_with_hub("{\"id\": \"org/n\", \"revision\": \"main\", \"commit\": \"" C1 "\"}",
			     &m) == 0);
	CHECK(m.hub_id && !strcmp(m.hub_id, "org/n") && !strcmp(m.hub_commit, C1));
	sp_manifest_free(&m);
	const char *bad[] = {
		"{\"id\": \"org/n\", \"revision\": \"main\"}",
		"{\"id\": \"org/n\", \"commit\": \"" C1 "\"}",
		"{\"id\": \"org/n\", \"revision\": \"main\", \"commit\": \"11\"}",
		"{\"id\": \"org/n@x\", \"revision\": \"main\", \"commit\": \"" C1 "\"}",
		"{\"id\": \"../n\", \"revision\": \"main\", \"commit\": \"" C1 "\"}",
		"\"org/n\"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CHECK(parse_with_hub(bad[i], &m) == -1);
}

int main(void)
{
	tmp = test_tmpdir();
	test_parse();
	test_resolve();
	test_manifest();
	return test_done();
}
