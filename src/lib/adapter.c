/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PEFT LoRA adapters as low-rank deltas. The semantics are PEFT's (peft/tuners/lora): a module
 * with lora_A [r, in] and lora_B [out, r] adds scale·B·A to its nn.Linear weight [out, in], or
 * scale·(B·A)ᵀ to a Conv1D weight [in, out] (fan_in_fan_out) or an nn.Embedding weight
 * [num, dim] (lora_embedding_A [r, num], lora_embedding_B [dim, r]). scale is lora_alpha / r, or
 * lora_alpha / sqrt(r) with use_rslora, where rank_pattern and alpha_pattern may override r and
 * lora_alpha per module. Which modules are adapted is read from the weights file; the config's
 * target_modules only has to agree with it.
 */
#include "adapter.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_FILE "adapter_config.json"
#define WEIGHTS_FILE "adapter_model.safetensors"
/* PeftModel saves the wrapped model's parameters under this prefix. */
#define PREFIX "base_model.model."

/* ---- Python regular expressions, as far as module-name patterns need them ---- */

#define ERE_SPECIAL ".[]()*+?{}|^$\\"

/* \d \w \s and their negations as ERE; inside a bracket expression, the positive ones only. */
static const char *py_class_escape(char c, int in_class)
{
	switch (c) {
	case 'd':
		return in_class ? "0-9" : "[0-9]";
	case 'w':
		return in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]";
	case 's':
		return in_class ? "[:space:]" : "[[:space:]]";
	case 'D':
		return in_class ? NULL : "[^0-9]";
	case 'W':
		return in_class ? NULL : "[^A-Za-z0-9_]";
	case 'S':
		return in_class ? NULL : "[^[:space:]]";
	}
	return NULL;
}

/* Translates a Python regex into POSIX ERE: literals, . [...] (...) | * + ? {m,n} ^ $ pass
 * through; (?:...) becomes (...); lazy quantifiers lose their '?' (only whether a full match
 * exists matters here, and laziness does not change that); \d \w \s, their negations and
 * escaped punctuation are rewritten. Anything else (other escapes, (?...) groups, possessive
 * quantifiers, \] \^ \- inside brackets) sets *why and returns NULL. */
static char *py_to_ere(const char *py, const char **why)
{
	char *out = malloc(strlen(py) * 8 + 1), *o = out; /* \W grows 7-fold */
	int in_class = 0, after_quant = 0;
	if (!out) {
		*why = "out of memory";
		return NULL;
	}
	for (const char *p = py; *p; p++) {
		int quant = 0;
		const char *cls = *p == '\\' ? py_class_escape(p[1], in_class) : NULL;
		if (cls) {
			o = stpcpy(o, cls);
			p++;
		} else if (*p == '\\') {
			if (!p[1] || !ispunct((unsigned char)p[1]) || (in_class && strchr("]^-", p[1]))) {
				*why = "an escape other than \\d \\w \\s, their negations or escaped punctuation";
				goto fail;
			}
			if (!in_class && strchr(ERE_SPECIAL, p[1]))
				*o++ = '\\';
			*o++ = *++p;
		} else if (in_class) {
			in_class = *p != ']';
			*o++ = *p;
		} else if (*p == '[') {
			*o++ = *p;
			in_class = 1;
			if (p[1] == '^')
				*o++ = *++p;
			if (p[1] == ']')
				*o++ = *++p;
		} else if (*p == '(' && p[1] == '?') {
			if (p[2] != ':') {
				*why = "a (?...) group other than (?:...)";
				goto fail;
			}
			*o++ = '(';
			p += 2;
		} else if (after_quant && *p == '+') {
			*why = "a possessive quantifier";
			goto fail;
		} else if (!(after_quant && *p == '?')) {
			quant = strchr("*+?}", *p) != NULL;
			*o++ = *p;
		}
		after_quant = quant;
	}
	*o = 0;
	return out;
fail:
	free(out);
	return NULL;
}

/* Compiles prefix + the Python regex py + suffix. */
static int py_regcomp(regex_t *re, const char *py, const char *prefix, const char *suffix,
		      const char **why)
{
	char *ere = py_to_ere(py, why), *full = NULL;
	int rc = -1;
	if (ere && asprintf(&full, "%s%s%s", prefix, ere, suffix) >= 0) {
		rc = regcomp(re, full, REG_EXTENDED | REG_NOSUB) ? -1 : 0;
		if (rc)
			*why = "a regular expression POSIX cannot compile";
	}
	free(full);
	free(ere);
	return rc;
}

/* ---- adapter_config.json ---- */

/* A rank_pattern or alpha_pattern entry. */
struct pattern {
	regex_t re;
	double value;
};

struct config {
	char *path;
	cJSON *root;
	double r, alpha;
	int rslora, fan_in_fan_out;
	struct pattern *ranks, *alphas;
	size_t nranks, nalphas;
	const cJSON *target_list; /* target_modules as a list of names, or NULL */
	regex_t target_re;        /* target_modules as a regex, when has_target_re */
	int has_target_re;
};

/* Options that make the adapter mean more than W + scale·B·A: merging such an adapter as plain
 * LoRA would give another model, so they are refused when set. */
static const struct {
	const char *key, *why;
} refused[] = {
	{"use_dora", "DoRA rescales the merged weight by a magnitude vector"},
	{"lora_bias", "lora_B carries a bias"},
	{"use_qalora", "QALoRA pools the input before lora_A"},
	{"layer_replication", "the base's layers are replicated"},
	{"trainable_token_indices", "token embeddings are trained sparsely"},
	{"target_parameters", "bare parameters (such as MoE experts) are targeted"},
	{"alora_invocation_tokens", "activated LoRA applies only after its invocation tokens"},
};

/* Initialisations that rewrite the base weights: the adapter is relative to the rewritten base. */
static const char *const base_rewriting_inits[] = {"pissa", "olora", "corda", "loftq"};

/* PiSSA and kin ("pissa_niter_16", ...) save B·A relative to base - B0·A0 unless converted. */
static int check_init(const struct config *c, struct sp_err *err)
{
	const cJSON *init = cJSON_GetObjectItemCaseSensitive(c->root, "init_lora_weights");
	size_t n = sizeof(base_rewriting_inits) / sizeof(base_rewriting_inits[0]);
	for (size_t i = 0; i < n; i++) {
		const char *name = base_rewriting_inits[i];
		if (cJSON_IsString(init) && !strncmp(init->valuestring, name, strlen(name))) {
			sp_err_set(err, "%s: init_lora_weights \"%s\" rewrites the base weights, so the "
				   "adapter does not apply to the base as published (PEFT can convert "
				   "it: path_initial_model_for_weight_conversion)", c->path,
				   init->valuestring);
			return -1;
		}
	}
	return 0;
}

/* Is the option present and not null, false, 0, "" or empty? */
static int is_set(const cJSON *js)
{
	if (!js || cJSON_IsNull(js) || cJSON_IsFalse(js))
		return 0;
	if (cJSON_IsNumber(js))
		return js->valuedouble != 0;
	if (cJSON_IsString(js))
		return js->valuestring[0] != 0;
	if (cJSON_IsArray(js) || cJSON_IsObject(js))
		return js->child != NULL;
	return 1;
}

static int check_supported(const struct config *c, struct sp_err *err)
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(c->root, "peft_type");
	if (!cJSON_IsString(type) || strcmp(type->valuestring, "LORA")) {
		sp_err_set(err, "%s: peft_type is %s, not \"LORA\": only LoRA adapters are supported",
			   c->path, cJSON_IsString(type) ? type->valuestring : "missing");
		return -1;
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (is_set(cJSON_GetObjectItemCaseSensitive(c->root, refused[i].key))) {
			sp_err_set(err, "%s: %s is set, which is not supported: %s", c->path,
				   refused[i].key, refused[i].why);
			return -1;
		}
	}
	return check_init(c, err);
}

/* A number option; def when absent or null (LoraConfig's default). */
static int get_number(const struct config *c, const char *key, double def, double *out,
		      struct sp_err *err)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(c->root, key);
	*out = def;
	if (!js || cJSON_IsNull(js))
		return 0;
	if (!cJSON_IsNumber(js)) {
		sp_err_set(err, "%s: %s is not a number", c->path, key);
		return -1;
	}
	*out = js->valuedouble;
	return 0;
}

static int get_bool(const struct config *c, const char *key, int *out, struct sp_err *err)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(c->root, key);
	*out = cJSON_IsTrue(js);
	if (js && !cJSON_IsBool(js) && !cJSON_IsNull(js)) {
		sp_err_set(err, "%s: %s is not true or false", c->path, key);
		return -1;
	}
	return 0;
}

static int valid_rank(double r)
{
	return r >= 1 && r <= UINT32_MAX && r == floor(r);
}

/* rank_pattern or alpha_pattern: {"key": value}, a key matching a module the way PEFT's
 * get_pattern_key does, re.match(rf"(.*\.)?({key})$", module). */
static int parse_patterns(struct config *c, const char *key, int ranks, struct pattern **out,
			  size_t *n, struct sp_err *err)
{
	const cJSON *obj = cJSON_GetObjectItemCaseSensitive(c->root, key), *js;
	if (!obj || cJSON_IsNull(obj))
		return 0;
	if (!cJSON_IsObject(obj)) {
		sp_err_set(err, "%s: %s is not an object", c->path, key);
		return -1;
	}
	if (!(*out = calloc((size_t)cJSON_GetArraySize(obj) + 1, sizeof(**out)))) {
		sp_err_set(err, "%s: out of memory", c->path);
		return -1;
	}
	cJSON_ArrayForEach(js, obj) {
		const char *why = "its value is not a valid rank";
		if (!cJSON_IsNumber(js) || (ranks && !valid_rank(js->valuedouble)) ||
		    py_regcomp(&(*out)[*n].re, js->string, "^(.*\\.)?(", ")$", &why)) {
			sp_err_set(err, "%s: %s key \"%s\": %s", c->path, key, js->string, why);
			return -1;
		}
		(*out)[(*n)++].value = js->valuedouble;
	}
	return 0;
}

/* target_modules: a list of names (a module matches one it equals or ends with after a '.'), a
 * regex the whole module name must match, or absent / "all-linear" (nothing to check against:
 * PEFT picked the modules from their types, which safetensors does not record). */
static int parse_targets(struct config *c, struct sp_err *err)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(c->root, "target_modules"), *t;
	const char *why;
	if (cJSON_IsArray(js)) {
		cJSON_ArrayForEach(t, js) {
			if (!cJSON_IsString(t)) {
				sp_err_set(err, "%s: target_modules holds a non-string", c->path);
				return -1;
			}
		}
		c->target_list = js;
	} else if (cJSON_IsString(js) && strcmp(js->valuestring, "all-linear")) {
		if (py_regcomp(&c->target_re, js->valuestring, "^(", ")$", &why)) {
			sp_err_set(err, "%s: target_modules \"%s\": %s", c->path, js->valuestring, why);
			return -1;
		}
		c->has_target_re = 1;
	} else if (js && !cJSON_IsNull(js) && !cJSON_IsString(js)) {
		sp_err_set(err, "%s: target_modules is neither a list nor a string", c->path);
		return -1;
	}
	return 0;
}

/* bias "all" and "lora_only" save trained biases, which load as whole tensors. */
static int check_bias(const struct config *c, struct sp_err *err)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(c->root, "bias");
	if (js && !cJSON_IsNull(js) &&
	    (!cJSON_IsString(js) || (strcmp(js->valuestring, "none") &&
				     strcmp(js->valuestring, "all") &&
				     strcmp(js->valuestring, "lora_only")))) {
		sp_err_set(err, "%s: bias must be \"none\", \"all\" or \"lora_only\"", c->path);
		return -1;
	}
	return 0;
}

static char *read_text(const char *path, struct sp_err *err)
{
	char *buf = NULL;
	long n = -1;
	errno = 0; /* a short fread sets none */
	FILE *f = fopen(path, "rb");
	if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
		buf[n] = 0;
	} else {
		sp_err_set(err, "%s: %s", path, errno ? strerror(errno) : "short read");
		free(buf);
		buf = NULL;
	}
	if (f)
		fclose(f);
	return buf;
}

static void config_free(struct config *c)
{
	for (size_t i = 0; i < c->nranks; i++)
		regfree(&c->ranks[i].re);
	for (size_t i = 0; i < c->nalphas; i++)
		regfree(&c->alphas[i].re);
	if (c->has_target_re)
		regfree(&c->target_re);
	free(c->ranks);
	free(c->alphas);
	cJSON_Delete(c->root);
	free(c->path);
	memset(c, 0, sizeof(*c));
}

static int config_load(const char *dir, struct config *c, struct sp_err *err)
{
	memset(c, 0, sizeof(*c));
	if (asprintf(&c->path, "%s/%s", dir, CONFIG_FILE) < 0) {
		c->path = NULL;
		sp_err_set(err, "%s: out of memory", dir);
		return -1;
	}
	char *text = read_text(c->path, err);
	if (!text)
		goto fail;
	c->root = cJSON_Parse(text);
	free(text);
	if (!cJSON_IsObject(c->root)) {
		sp_err_set(err, "%s: not a JSON object", c->path);
		goto fail;
	}
	if (check_supported(c, err) || get_number(c, "r", 8, &c->r, err) ||
	    get_number(c, "lora_alpha", 8, &c->alpha, err) ||
	    get_bool(c, "use_rslora", &c->rslora, err) ||
	    get_bool(c, "fan_in_fan_out", &c->fan_in_fan_out, err) || check_bias(c, err) ||
	    parse_patterns(c, "rank_pattern", 1, &c->ranks, &c->nranks, err) ||
	    parse_patterns(c, "alpha_pattern", 0, &c->alphas, &c->nalphas, err) ||
	    parse_targets(c, err))
		goto fail;
	if (!valid_rank(c->r)) {
		sp_err_set(err, "%s: r must be a positive integer", c->path);
		goto fail;
	}
	return 0;
fail:
	config_free(c);
	return -1;
}

/* The value of the first pattern matching module, else def (PEFT's get_pattern_key). */
static double pattern_value(const struct pattern *p, size_t n, const char *module, double def)
{
	for (size_t i = 0; i < n; i++)
		if (regexec(&p[i].re, module, 0, NULL, 0) == 0)
			return p[i].value;
	return def;
}

static int is_targeted(const struct config *c, const char *module)
{
	const cJSON *t;
	if (c->has_target_re)
		return regexec(&c->target_re, module, 0, NULL, 0) == 0;
	if (!c->target_list)
		return 1;
	cJSON_ArrayForEach(t, c->target_list) {
		size_t n = strlen(module), k = strlen(t->valuestring);
		if (!strcmp(module, t->valuestring) ||
		    (n > k && module[n - k - 1] == '.' && !strcmp(module + n - k, t->valuestring)))
			return 1;
	}
	return 0;
}

/* ---- the weights ---- */

/* One lora_A or lora_B tensor, with the module it belongs to. */
struct part {
	char *module;
	int is_b;
	int embedding; /* lora_embedding_A/B: the delta is (B·A)ᵀ whatever fan_in_fan_out says */
	const struct sp_tensor *t;
};

/* How PEFT names LoRA weights after the module; ".default" is the adapter name, which PEFT
 * strips when saving but converted checkpoints sometimes keep. */
static const struct {
	const char *suffix;
	int is_b, embedding;
} lora_suffixes[] = {
	{".lora_A.weight", 0, 0},	      {".lora_A.default.weight", 0, 0},
	{".lora_B.weight", 1, 0},	      {".lora_B.default.weight", 1, 0},
	{".lora_embedding_A", 0, 1},	      {".lora_embedding_A.default", 0, 1},
	{".lora_embedding_B", 1, 1},	      {".lora_embedding_B.default", 1, 1},
};

/* Is name (without PREFIX) a LoRA weight? Fills p with its module if so. */
static int as_lora_part(const char *name, const struct sp_tensor *t, struct part *p)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < sizeof(lora_suffixes) / sizeof(lora_suffixes[0]); i++) {
		size_t k = strlen(lora_suffixes[i].suffix);
		if (n > k && !strcmp(name + n - k, lora_suffixes[i].suffix)) {
			*p = (struct part){.module = strndup(name, n - k),
					   .is_b = lora_suffixes[i].is_b,
					   .embedding = lora_suffixes[i].embedding,
					   .t = t};
			return 1;
		}
	}
	return 0;
}

/* The base tensor a whole-saved tensor replaces: PEFT saves modules_to_save as
 * "<module>.<param>" (it strips "modules_to_save.<adapter>."); older or converted files keep
 * "<module>.modules_to_save[.default].<param>". */
static char *full_base_name(const char *name)
{
	static const char *const infixes[] = {".modules_to_save.default.", ".modules_to_save."};
	for (size_t i = 0; i < 2; i++) {
		const char *at = strstr(name, infixes[i]);
		char *out;
		if (at && asprintf(&out, "%.*s.%s", (int)(at - name), name,
				   at + strlen(infixes[i])) >= 0)
			return out;
		if (at)
			return NULL;
	}
	return strdup(name);
}

static void shape_str(const struct sp_tensor *t, char *buf, size_t size)
{
	size_t n = (size_t)snprintf(buf, size, "[");
	for (int i = 0; i < t->ndim && n < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%s%llu", i ? ", " : "",
				      (unsigned long long)t->shape[i]);
	if (n < size)
		snprintf(buf + n, size - n, "]");
}

static int same_shape(const struct sp_tensor *x, const struct sp_tensor *y)
{
	if (x->ndim != y->ndim)
		return 0;
	for (int i = 0; i < x->ndim; i++)
		if (x->shape[i] != y->shape[i])
			return 0;
	return 1;
}

/* Records a tensor saved whole, which must fit the base tensor it replaces. */
static int add_full(struct sp_lora *lora, const struct sp_model *base, const struct sp_mfile *f,
		    const struct sp_tensor *t, const char *name, struct sp_err *err)
{
	char *bname = full_base_name(name), have[128], want[128];
	const struct sp_tensor_ref *ref = bname ? sp_model_find(base, bname) : NULL;
	int rc = -1;
	if (!ref) {
		sp_err_set(err, "%s: tensor %s is neither a LoRA weight nor a tensor of the base "
			   "(%s has no %s)", f->path, t->name, base->dir, bname ? bname : name);
	} else if (!same_shape(t, ref->t)) {
		shape_str(t, have, sizeof(have));
		shape_str(ref->t, want, sizeof(want));
		sp_err_set(err, "%s: tensor %s is %s but the base tensor %s it replaces is %s",
			   f->path, t->name, have, bname, want);
	} else if (t->dtype != ref->t->dtype &&
		   !(sp_dtype_is_float(t->dtype) && sp_dtype_is_float(ref->t->dtype))) {
		sp_err_set(err, "%s: tensor %s is %s but the base tensor %s it replaces is %s",
			   f->path, t->name, t->dtype_name, bname, ref->t->dtype_name);
	} else {
		lora->full[lora->nfull++] = (struct sp_lora_full){
			.base = ref, .t = t, .data = f->map + t->off};
		rc = 0;
	}
	free(bname);
	return rc;
}

static int cmp_part(const void *x, const void *y)
{
	const struct part *a = x, *b = y;
	int c = strcmp(a->module, b->module);
	return c ? c : a->is_b - b->is_b;
}

/* The tensor as f32 (malloc'd), from any float dtype. */
static float *load_f32(const struct sp_mfile *f, const struct sp_tensor *t)
{
	float *v = malloc((size_t)t->nelem * sizeof(float) + 1);
	if (v)
		sp_dtype_convert(t->dtype, f->map + t->off, SP_DT_F32, v, (size_t)t->nelem);
	return v;
}

/* Checks that A [r, in] and B [out, r] are a usable pair of the rank the config gives. */
static int check_pair(const struct config *c, const struct sp_mfile *f, const char *module,
		      const struct sp_tensor *ta, const struct sp_tensor *tb, struct sp_err *err)
{
	char sa[128], sb[128];
	shape_str(ta, sa, sizeof(sa));
	shape_str(tb, sb, sizeof(sb));
	double r = pattern_value(c->ranks, c->nranks, module, c->r);
	if (!sp_dtype_is_float(ta->dtype) || !sp_dtype_is_float(tb->dtype)) {
		sp_err_set(err, "%s: module %s: lora_A is %s and lora_B %s; only F16, BF16, F32 "
			   "and F64 are supported", f->path, module, ta->dtype_name, tb->dtype_name);
	} else if (ta->ndim != 2 || tb->ndim != 2) {
		sp_err_set(err, "%s: module %s: lora_A is %s and lora_B %s; only 2-D weights are "
			   "supported (not convolutions)", f->path, module, sa, sb);
	} else if (ta->shape[0] != tb->shape[1]) {
		sp_err_set(err, "%s: module %s: lora_A is %s but lora_B %s: their ranks differ",
			   f->path, module, sa, sb);
	} else if ((double)ta->shape[0] != r) {
		sp_err_set(err, "%s: module %s: the weights have rank %llu but %s gives r = %g",
			   f->path, module, (unsigned long long)ta->shape[0], c->path, r);
	} else {
		return 0;
	}
	return -1;
}

/* The base weight of module, laid out as the delta needs: [in, out] when transposed, else
 * [out, in]. */
static const struct sp_tensor_ref *find_base(const struct sp_model *base,
					     const struct sp_mfile *f, const char *module,
					     const struct sp_tensor *ta, const struct sp_tensor *tb,
					     int transposed, struct sp_err *err)
{
	char *name, have[128], sa[128], sb[128];
	if (asprintf(&name, "%s.weight", module) < 0) {
		sp_err_set(err, "%s: out of memory", f->path);
		return NULL;
	}
	const struct sp_tensor_ref *ref = sp_model_find(base, name);
	uint64_t rows = transposed ? ta->shape[1] : tb->shape[0];
	uint64_t cols = transposed ? tb->shape[0] : ta->shape[1];
	if (!ref) {
		sp_err_set(err, "%s: LoRA module %s is not in the base: %s has no tensor %s",
			   f->path, module, base->dir, name);
	} else if (ref->t->ndim != 2 || ref->t->shape[0] != rows || ref->t->shape[1] != cols) {
		shape_str(ref->t, have, sizeof(have));
		shape_str(ta, sa, sizeof(sa));
		shape_str(tb, sb, sizeof(sb));
		sp_err_set(err, "%s: module %s: the base tensor %s is %s, but lora_A %s and lora_B %s "
			   "make a [%llu, %llu] delta (fan_in_fan_out %s)", f->path, module, name,
			   have, sa, sb, (unsigned long long)rows, (unsigned long long)cols,
			   transposed ? "true" : "false");
		ref = NULL;
	} else if (!sp_dtype_is_float(ref->t->dtype)) {
		sp_err_set(err, "%s: module %s: the base tensor %s is %s, not a float type", f->path,
			   module, name, ref->t->dtype_name);
		ref = NULL;
	}
	free(name);
	return ref;
}

/* Fills t->a and t->b from A [r, in] and B [out, r]: a = scale·B, b = A for the [out, in]
 * layout; a = scale·Aᵀ, b = Bᵀ for the transposed one. */
static int fill_factors(struct sp_lora_target *t, const float *A, const float *B,
			int transposed, double scale)
{
	uint64_t r = t->rank, rows = t->rows, cols = t->cols;
	t->a = malloc((size_t)(rows * r) * sizeof(float) + 1);
	t->b = malloc((size_t)(r * cols) * sizeof(float) + 1);
	if (!t->a || !t->b)
		return -1;
	for (uint64_t i = 0; i < rows; i++)
		for (uint64_t k = 0; k < r; k++)
			t->a[i * r + k] = (float)(scale * (transposed ? A[k * rows + i] : B[i * r + k]));
	for (uint64_t k = 0; k < r; k++)
		for (uint64_t j = 0; j < cols; j++)
			t->b[k * cols + j] = transposed ? B[j * r + k] : A[k * cols + j];
	return 0;
}

static int add_target(struct sp_lora *lora, const struct sp_model *base, const struct config *c,
		      const struct sp_mfile *f, const struct part *pa, const struct part *pb,
		      struct sp_err *err)
{
	const char *module = pa->module;
	int transposed = pa->embedding || c->fan_in_fan_out;
	if (!is_targeted(c, module)) {
		sp_err_set(err, "%s: module %s has LoRA weights but target_modules in %s does not "
			   "name it", f->path, module, c->path);
		return -1;
	}
	if (check_pair(c, f, module, pa->t, pb->t, err))
		return -1;
	const struct sp_tensor_ref *ref = find_base(base, f, module, pa->t, pb->t, transposed, err);
	if (!ref)
		return -1;
	struct sp_lora_target *t = &lora->targets[lora->ntargets++];
	*t = (struct sp_lora_target){.base = ref, .rank = (uint32_t)pa->t->shape[0],
				     .rows = ref->t->shape[0], .cols = ref->t->shape[1]};
	double alpha = pattern_value(c->alphas, c->nalphas, module, c->alpha);
	double scale = alpha / (c->rslora ? sqrt((double)t->rank) : (double)t->rank);
	float *A = load_f32(f, pa->t), *B = load_f32(f, pb->t);
	int rc = A && B ? fill_factors(t, A, B, transposed, scale) : -1;
	free(A);
	free(B);
	if (rc)
		sp_err_set(err, "%s: module %s: out of memory", f->path, module);
	return rc;
}

/* Pairs the sorted parts by module and turns each pair into a target. */
static int add_targets(struct sp_lora *lora, const struct sp_model *base, const struct config *c,
		       const struct sp_mfile *f, const struct part *parts, size_t n,
		       struct sp_err *err)
{
	for (size_t i = 0; i < n; i += 2) {
		const struct part *pa = &parts[i], *pb = i + 1 < n ? &parts[i + 1] : NULL;
		int paired = pb && !strcmp(pa->module, pb->module);
		if (!paired || pa->is_b || !pb->is_b || pa->embedding != pb->embedding ||
		    (i + 2 < n && !strcmp(pa->module, parts[i + 2].module))) {
			sp_err_set(err, "%s: module %s needs exactly one lora_A and one lora_B of "
				   "the same kind, and has %s", f->path, pa->module,
				   !paired ? (pa->is_b ? "lora_B without lora_A" : "lora_A without lora_B")
					   : "a mismatched or duplicated set");
			return -1;
		}
		if (add_target(lora, base, c, f, pa, pb, err))
			return -1;
	}
	return 0;
}

/* Sorts every adapter tensor into LoRA parts and whole tensors. */
static int classify(struct sp_lora *lora, const struct sp_model *base, const struct sp_mfile *f,
		    struct part *parts, size_t *nparts, struct sp_err *err)
{
	for (size_t i = 0; i < f->st.ntensors; i++) {
		const struct sp_tensor *t = &f->st.tensors[i];
		if (strncmp(t->name, PREFIX, strlen(PREFIX))) {
			sp_err_set(err, "%s: tensor %s does not start with \"%s\" as PEFT names them",
				   f->path, t->name, PREFIX);
			return -1;
		}
		const char *name = t->name + strlen(PREFIX);
		if (as_lora_part(name, t, &parts[*nparts])) {
			if (!parts[(*nparts)++].module) {
				sp_err_set(err, "%s: out of memory", f->path);
				return -1;
			}
		} else if (strstr(name, ".lora_")) {
			sp_err_set(err, "%s: tensor %s is a LoRA variant's weight (DoRA magnitude, "
				   "lora_B bias, ...), which is not supported", f->path, t->name);
			return -1;
		} else if (add_full(lora, base, f, t, name, err)) {
			return -1;
		}
	}
	return 0;
}

/* Is whole tensor i's base tensor also adapted, or replaced by an earlier whole tensor? */
static int given_twice(const struct sp_lora *lora, size_t i)
{
	const struct sp_tensor_ref *ref = lora->full[i].base;
	for (size_t j = 0; j < lora->ntargets; j++)
		if (lora->targets[j].base == ref)
			return 1;
	for (size_t j = 0; j < i; j++)
		if (lora->full[j].base == ref)
			return 1;
	return 0;
}

static int check_overlap(const struct sp_lora *lora, const char *path, struct sp_err *err)
{
	for (size_t i = 0; i < lora->nfull; i++) {
		if (given_twice(lora, i)) {
			sp_err_set(err, "%s: base tensor %s is given twice (saved whole and adapted, "
				   "or saved whole twice)", path, lora->full[i].base->name);
			return -1;
		}
	}
	return 0;
}

static int find_weights(const struct sp_model *m, uint32_t *file, struct sp_err *err)
{
	for (uint32_t i = 0; i < m->nfiles; i++) {
		if (strcmp(m->files[i].name, WEIGHTS_FILE))
			continue;
		if (!m->files[i].is_st) {
			sp_err_set(err, "%s: not a valid safetensors file", m->files[i].path);
			return -1;
		}
		*file = i;
		return 0;
	}
	sp_err_set(err, "%s: no %s (adapter_model.bin, a pickle, is not read: convert it to "
		   "safetensors)", m->dir, WEIGHTS_FILE);
	return -1;
}

static int load_weights(struct sp_lora *lora, const struct sp_model *base, const struct config *c,
			struct sp_err *err)
{
	uint32_t file;
	if (find_weights(&lora->adapter, &file, err) || sp_model_map(&lora->adapter, file, err))
		return -1;
	const struct sp_mfile *f = &lora->adapter.files[file];
	size_t n = f->st.ntensors, nparts = 0;
	struct part *parts = calloc(n + 1, sizeof(*parts));
	lora->full = calloc(n + 1, sizeof(*lora->full));
	lora->targets = calloc(n / 2 + 1, sizeof(*lora->targets));
	int rc = -1;
	if (!parts || !lora->full || !lora->targets)
		sp_err_set(err, "%s: out of memory", f->path);
	else if (classify(lora, base, f, parts, &nparts, err) == 0) {
		qsort(parts, nparts, sizeof(*parts), cmp_part);
		rc = add_targets(lora, base, c, f, parts, nparts, err);
	}
	if (rc == 0 && lora->ntargets == 0) {
		sp_err_set(err, "%s: no LoRA weights (lora_A / lora_B) in it", f->path);
		rc = -1;
	}
	if (rc == 0)
		rc = check_overlap(lora, f->path, err);
	for (size_t i = 0; i < nparts; i++)
		free(parts[i].module);
	free(parts);
	return rc;
}

int sp_lora_load(const char *adapter_dir, const struct sp_model *base, struct sp_lora *lora,
		 struct sp_err *err)
{
	struct config c;
	memset(lora, 0, sizeof(*lora));
	if (config_load(adapter_dir, &c, err))
		return -1;
	int rc = sp_model_open(adapter_dir, SP_MODEL_FOLLOW_LINKS, &lora->adapter, err);
	if (rc == 0)
		rc = load_weights(lora, base, &c, err);
	config_free(&c);
	if (rc)
		sp_lora_free(lora);
	return rc;
}

void sp_lora_free(struct sp_lora *lora)
{
	for (size_t i = 0; i < lora->ntargets; i++) {
		free(lora->targets[i].a);
		free(lora->targets[i].b);
	}
	free(lora->targets);
	free(lora->full);
	sp_model_close(&lora->adapter);
	memset(lora, 0, sizeof(*lora));
}
