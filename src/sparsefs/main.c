/* SPDX-License-Identifier: Apache-2.0 */
/* sparsefs: mount a delta (or a directory of deltas) as the fine-tune's folder, or inspect,
 * verify and extract it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <mntent.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "fs.h"
#include "streams.h"
#include "sparse/util.h"
#include "tools.h"

struct mount_opts {
	char *base;
	char *cache_size;
	int readahead_kb;
	char *prefetch;
	unsigned decoders;
	unsigned max_read;
	int splice;
	char *base_check;
	char *delta;
	struct sp_remote_opts remote;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: sparsefs [options] DELTA MOUNTPOINT   mount a delta, or a directory of deltas;\n"
		"                                             DELTA: a folder, or an http://, https://\n"
		"                                             or s3://BUCKET/PREFIX URL\n"
		"       sparsefs --info [--json] DELTA        what the delta holds\n"
		"       sparsefs --check [-o base=DIR] DELTA  verify every checksum and the base\n"
		"       sparsefs --extract [-o base=DIR] DELTA OUT_DIR   write the files out\n"
		"options:\n"
		"  -o base=DIR          the base model folder (default: where mksparse found it)\n"
		"  -o cache_size=N      bytes of decoded chunks to keep (default 32M; K/M/G)\n"
		"  -o readahead=KB      kernel readahead window, 0 leaves it (default 1024)\n"
		"  -o prefetch=MODE     decode ahead: none, sequential (of each read stream;\n"
		"                       the default) or all (each opened file from its start)\n"
		"  -o decoders=N        decoding threads (default: one per CPU)\n"
		"  -o splice            send chunks stored as base bytes from the base files\n"
		"                       without copying them (each hashed on first use)\n"
		"  -o base_check=HOW    full: hash each base file whole at mount, once while\n"
		"                       it stays unchanged (the default); quick: size, header\n"
		"                       and 16 sampled blocks\n"
		"remote deltas:\n"
		"  -o endpoint=URL      s3://: the store's http(s)://HOST[:PORT] (default: AWS)\n"
		"  -o region=NAME       s3://: the region to sign for (default: AWS_REGION, else\n"
		"                       AWS_DEFAULT_REGION, else us-east-1)\n"
		"  -o cafile=FILE       https: the certificates (PEM) of the CAs to trust\n"
		"  -o bearer_file=FILE  http(s)://: send the token in FILE (its host only)\n"
		"  -o cache_dir=DIR     the chunk cache on disk (default ~/.cache/sparse/remote;\n"
		"                       empty: none)\n"
		"  -o cache_max=N       its bound in bytes (K/M/G)\n"
		"  -o max_requests=N    range requests in flight at once (default 32)\n"
		"  -o timeout=SECONDS   a request without progress this long is retried\n"
		"  -f                   stay in the foreground\n"
		"  -d                   debug: foreground, log every request\n"
		"  -s                   single-threaded\n"
		"  -o OPT               any FUSE mount option (allow_other, max_threads=N, ...)\n"
		"  -V, --version        print the version\n"
		"  -h, --help           this help\n");
}

#define OPT(t, p) {t, offsetof(struct mount_opts, p), 0}
static const struct fuse_opt opt_spec[] = {
	OPT("base=%s", base),
	OPT("cache_size=%s", cache_size),
	OPT("readahead=%u", readahead_kb),
	OPT("prefetch=%s", prefetch),
	OPT("decoders=%u", decoders),
	OPT("max_read=%u", max_read), /* passed on by mount_main, within what splice allows */
	{"splice", offsetof(struct mount_opts, splice), 1},
	OPT("base_check=%s", base_check),
	FUSE_OPT_END,
};

/* The first non-option is the delta; the mountpoint goes on to fuse_parse_cmdline. The remote
 * options are taken here, the others go on to libfuse. */
static int opt_proc(void *data, const char *arg, int key, struct fuse_args *args)
{
	(void)args;
	struct mount_opts *o = data;
	if (key == FUSE_OPT_KEY_NONOPT && !o->delta) {
		o->delta = strdup(arg);
		return 0;
	}
	if (key == FUSE_OPT_KEY_OPT) {
		int rc = remote_opt(arg, &o->remote);
		return rc < 0 ? -1 : !rc;
	}
	return 1;
}

/* The numeric options, sparsefs's and libfuse's, and their bounds: fuse_opt's %u would read
 * "-1" as 4294967295 and "2x" as 2. readahead: a 1 GiB window is far past any use. max_read:
 * the kernel reads at least 4096 bytes whatever it is told. max_threads: libfuse's own limit
 * for idle threads; 0 would silently mean 1. */
static const struct num_opt {
	const char *name;
	unsigned long min, max;
} num_opts[] = {
	{"readahead", 0, 1 << 20},
	{"decoders", 0, SP_THREADS_MAX},
	{"max_read", 4096, UINT_MAX},
	{"max_threads", 1, 100000},
	{"max_idle_threads", 0, 100000},
};

/* One -o option: 0, or -1 with a message. */
static int check_opt(const char *opt)
{
	static const char *const valued[] = {"base", "base_check", "cache_size", "prefetch"};
	for (size_t i = 0; i < sizeof(valued) / sizeof(*valued); i++)
		if (!strcmp(opt, valued[i])) {
			fprintf(stderr, "sparsefs: -o %s: takes a value (%s=...)\n", opt, opt);
			return -1;
		}
	if (!strcmp(opt, "blkdev") || !strncmp(opt, "blksize=", 8)) {
		fprintf(stderr, "sparsefs: %s: for a file system on a block device, not sparsefs\n", opt);
		return -1;
	}
	for (size_t i = 0; i < sizeof(num_opts) / sizeof(*num_opts); i++) {
		const struct num_opt *n = &num_opts[i];
		const char *v = opt + strlen(n->name) + 1;
		if (strncmp(opt, n->name, strlen(n->name)) || v[-1] != '=')
			continue;
		char *end;
		errno = 0;
		unsigned long x = strtoul(v, &end, 10);
		if (*v < '0' || *v > '9' || *end || errno || x < n->min || x > n->max) {
			fprintf(stderr, "sparsefs: %s: a whole number from %lu to %lu\n", opt, n->min,
				n->max);
			return -1;
		}
	}
	return 0;
}

/* Every -o option that parses but could not work is refused here, before anything is
 * mounted; libfuse refuses those it does not know. */
static int check_options(int argc, char **argv)
{
	int rc = 0;
	for (int i = 1; rc == 0 && i < argc; i++) {
		const char *arg = !strcmp(argv[i], "-o") && i + 1 < argc ? argv[++i]
				  : !strncmp(argv[i], "-o", 2)      ? argv[i] + 2
								    : NULL;
		char *list = arg ? strdup(arg) : NULL, *save;
		for (char *o = list ? strtok_r(list, ",", &save) : NULL; rc == 0 && o;
		     o = strtok_r(NULL, ",", &save))
			rc = check_opt(o);
		free(list);
	}
	return rc;
}

static int parse_prefetch(const char *s, enum prefetch *out)
{
	static const char *const names[] = {"none", "sequential", "all"};
	*out = PREFETCH_SEQUENTIAL;
	for (int i = 0; s && i < 3; i++)
		if (!strcmp(s, names[i]))
			*out = (enum prefetch)i;
	return s && strcmp(s, names[*out]);
}

static void log_syslog(const char *line)
{
	syslog(LOG_ERR, "%s", line);
}

static void log_stderr(const char *line)
{
	fprintf(stderr, "sparsefs: %s\n", line);
}

/* A FUSE mount already there (this delta or another, or a daemon that died): mounting over it
 * would hide it, which is never what was meant. */
static int fuse_mounted_on(const char *dir)
{
	char *real = realpath(dir, NULL);
	FILE *f = setmntent("/proc/self/mounts", "r");
	struct mntent *m;
	int found = 0;
	while (real && f && (m = getmntent(f)))
		found |= !strcmp(m->mnt_dir, real) && !strncmp(m->mnt_type, "fuse", 4);
	if (f)
		endmntent(f);
	free(real);
	return found;
}

/* The mountpoint exists, is a directory and is not busy, else a message and -1. A dead mount
 * answers stat with ENOTCONN once the kernel has seen its daemon go, or from the attributes it
 * cached before that: either way it is busy. */
static int check_mountpoint(const char *dir)
{
	struct stat st;
	const char *why = NULL;
	if (stat(dir, &st))
		why = errno == ENOTCONN ? "busy: a FUSE file system whose daemon died is mounted there "
					  "(fusermount3 -u it first)"
					: strerror(errno);
	else if (!S_ISDIR(st.st_mode))
		why = "not a directory";
	else if (fuse_mounted_on(dir))
		why = "busy: a FUSE file system is already mounted there (fusermount3 -u it first)";
	if (why)
		fprintf(stderr, "sparsefs: cannot mount on %s: %s\n", dir, why);
	return why ? -1 : 0;
}

/* libfuse splices a reply only through a pipe that holds all of it, plus a page for the header
 * and for each buffer, else it copies. A pipe grows past fs.pipe-max-size (1 MiB by default)
 * only with CAP_SYS_RESOURCE, and the kernel's reads are 1 MiB: without it, reads are capped
 * to the largest power of two a pipe holds (a readahead window then splits evenly, with no
 * small request at its end). Returns that cap, 0 when none is needed. */
static unsigned splice_max_read(void)
{
	long page = sysconf(_SC_PAGESIZE), big = (1l << 20) + page * (SPLICE_RANGES + 3), got = 0;
	int p[2];
	if (pipe(p))
		return 0;
	if (fcntl(p[0], F_SETPIPE_SZ, big) < 0) {
		FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
		if (!f || fscanf(f, "%ld", &got) != 1 || fcntl(p[0], F_SETPIPE_SZ, got) < 0)
			got = fcntl(p[0], F_GETPIPE_SZ);
		if (f)
			fclose(f);
	}
	close(p[0]);
	close(p[1]);
	if (got <= 0)
		return 0;
	got -= page * (SPLICE_RANGES + 2) + 16;
	unsigned cap = (unsigned)page;
	while ((long)cap * 2 <= got)
		cap *= 2;
	return cap;
}

static int run_session(struct fs *fs, struct fuse_args *args, struct fuse_cmdline_opts *co)
{
	struct fuse_session *se = fuse_session_new(args, &sparsefs_ops, sizeof(sparsefs_ops), fs);
	int rc = 1;
	if (!se)
		return 1;
	if (fuse_set_signal_handlers(se) == 0) {
		if (fuse_session_mount(se, co->mountpoint) == 0) {
			fuse_daemonize(co->foreground);
			if (!co->foreground) {
				openlog("sparsefs", LOG_PID, LOG_DAEMON);
				sp_set_log(log_syslog);
			}
			struct fuse_loop_config *cfg = fuse_loop_cfg_create();
			fuse_loop_cfg_set_clone_fd(cfg, (unsigned)co->clone_fd);
			if (co->max_idle_threads != UINT_MAX) /* UINT_MAX: not given */
				fuse_loop_cfg_set_idle_threads(cfg, co->max_idle_threads);
			fuse_loop_cfg_set_max_threads(cfg, co->max_threads);
			rc = co->singlethread ? fuse_session_loop(se) : fuse_session_loop_mt(se, cfg);
			/* Ended by a signal (fusermount3 -u, Ctrl-C, SIGTERM): a clean exit. */
			if (rc == SIGINT || rc == SIGTERM || rc == SIGHUP)
				rc = 0;
			else if (rc < 0) /* a read from the kernel failed */
				sp_log("%s: the FUSE session ended: %s", co->mountpoint, strerror(-rc));
			fuse_loop_cfg_destroy(cfg);
			fuse_session_unmount(se);
		} else {
			fprintf(stderr, "sparsefs: cannot mount on %s\n", co->mountpoint);
		}
		fuse_remove_signal_handlers(se);
	}
	fuse_session_destroy(se);
	return rc ? 1 : 0;
}

static int mount_main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct mount_opts o = {.readahead_kb = 1024};
	struct fuse_cmdline_opts co = {0};
	struct fs fs = {.uid = getuid(), .gid = getgid(), .open = STREAMS_SET_INIT};
	uint64_t cache = SP_CACHE_DEFAULT;
	struct sp_remote *remote = NULL;
	struct sp_err err;
	int rc = 2;
	if (check_options(argc, argv) || fuse_opt_parse(&args, &o, opt_spec, opt_proc) ||
	    fuse_opt_add_arg(&args, "-oro,default_permissions,fsname=sparsefs,subtype=sparsefs") ||
	    fuse_parse_cmdline(&args, &co))
		goto out;
	if (co.show_help || co.show_version) {
		co.show_help ? usage(stdout) : (void)printf("sparsefs %s\n", SPARSE_VERSION_STRING);
		rc = close_stdout(0);
		goto out;
	}
	if (!o.delta || !co.mountpoint) {
		usage(stderr);
		goto out;
	}
	if (o.cache_size && (sp_parse_size(o.cache_size, &cache) || cache > SIZE_MAX)) {
		fprintf(stderr, "sparsefs: cache_size=%s: not a size\n", o.cache_size);
		goto out;
	}
	if (parse_prefetch(o.prefetch, &fs.prefetch)) {
		fprintf(stderr, "sparsefs: prefetch=%s: none, sequential or all\n", o.prefetch);
		goto out;
	}
	unsigned open_flags;
	if (base_check_flags(o.base_check, &open_flags))
		goto out;
	/* The user's max_read and splice's cap, the smaller: op_init must tell libfuse the same. */
	unsigned cap = o.splice ? splice_max_read() : 0;
	unsigned max_read = cap && (!o.max_read || cap < o.max_read) ? cap : o.max_read;
	char arg[64];
	snprintf(arg, sizeof(arg), "-omax_read=%u", max_read);
	if (max_read && fuse_opt_add_arg(&args, arg))
		goto out;
	if (cap && max_read == cap && cap != o.max_read)
		fprintf(stderr, "sparsefs: -o splice: reads capped to %u KiB, what a pipe holds here "
				"(sysctl fs.pipe-max-size, or CAP_SYS_RESOURCE, lifts it)\n",
			max_read >> 10);
	rc = 1;
	if (check_mountpoint(co.mountpoint) || remote_for(o.delta, &o.remote, &remote))
		goto out;
	fs.mountpoint = co.mountpoint;
	fs.readahead_kb = (unsigned)o.readahead_kb;
	fs.splice = o.splice;
	fs.max_read = max_read;
	if (tree_build(&fs.tree, remote, o.delta, o.base, open_flags, &err)) {
		fprintf(stderr, "sparsefs: %s\n", err.msg);
		goto out;
	}
	/* Half the cache: what is decoded ahead must still be there when it is read. */
	fs.max_window = cache / 2 < STREAM_WINDOW_MAX ? cache / 2 : STREAM_WINDOW_MAX;
	fs.decoders = o.decoders;
	if ((fs.cache = sp_cache_new((size_t)cache)))
		rc = run_session(&fs, &args, &co);
	sp_cache_free(fs.cache);
	tree_free(&fs.tree);
out:
	sp_remote_free(remote);
	remote_opts_free(&o.remote);
	free(o.base);
	free(o.cache_size);
	free(o.prefetch);
	free(o.base_check);
	free(o.delta);
	free(co.mountpoint);
	fuse_opt_free_args(&args);
	return rc;
}

int main(int argc, char **argv)
{
	/* Reads allocate and free chunk-sized buffers all the time: keep them in the heap, where
	 * freed memory is reused, rather than in fresh mappings that fault page by page. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 128 << 20);
	/* Requests already run on many threads; BLAS threads under each would oversubscribe. */
	sp_blas_threads(1);
	sp_set_log(log_stderr);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--info") || !strcmp(argv[i], "--check") ||
		    !strcmp(argv[i], "--extract"))
			return tools_main(argc, argv);
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return close_stdout(0);
		}
	}
	return mount_main(argc, argv);
}
