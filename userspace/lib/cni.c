// SPDX-License-Identifier: Apache-2.0
/* The CNI protocol for a chained plugin: environment, configuration and prevResult parsing,
 * and the result, version and error writers (json-c). Strict about what we use, tolerant of
 * keys we do not know (runtimes add runtimeConfig, args, cni.dev/... as the spec allows). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "conclave/cni.h"
#include "conclave/datapath.h"
#include "conclave/util.h"

#define JSON_DEPTH_MAX 32 /* a CNI config nests a handful of levels */

static const char *const versions[] = { "0.4.0", "1.0.0", "1.1.0" };

int cni_fail(struct cni_error *err, unsigned int code, const char *fmt, ...)
{
	va_list ap;

	if (err->code)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

bool cni_version_supported(const char *v)
{
	for (size_t i = 0; i < ARRAY_SIZE(versions); i++)
		if (!strcmp(v, versions[i]))
			return true;
	return false;
}

/* ---- environment ---- */

static const struct {
	const char *name;
	enum cni_command cmd;
} commands[] = {
	{ "ADD", CNI_CMD_ADD },		{ "DEL", CNI_CMD_DEL },	      { "CHECK", CNI_CMD_CHECK },
	{ "VERSION", CNI_CMD_VERSION }, { "STATUS", CNI_CMD_STATUS }, { "GC", CNI_CMD_GC },
};

/* The spec's container id: alphanumeric first, then alphanumerics, '_', '.', '-'. */
static bool valid_container_id(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= DP_POD_ID_MAX || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
			return false;
	return true;
}

/* What the kernel accepts as an interface name (dev_valid_name). */
static bool valid_ifname(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= 16 || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '/' || s[i] == ':' || isspace((unsigned char)s[i]))
			return false;
	return true;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if (!isprint((unsigned char)*s))
			return false;
	return true;
}

int cni_env_parse(struct cni_env *e, const char *(*get)(const char *name), struct cni_error *err)
{
	const char *cmd = get("CNI_COMMAND");
	bool needs_id, needs_netns;
	size_t i;

	memset(e, 0, sizeof(*e));
	if (!cmd || !*cmd)
		return cni_fail(err, CNI_ERR_INVALID_ENV, "CNI_COMMAND is not set");
	for (i = 0; i < ARRAY_SIZE(commands) && strcmp(cmd, commands[i].name); i++)
		;
	if (i == ARRAY_SIZE(commands))
		return cni_fail(
		    err, CNI_ERR_INVALID_ENV,
		    "CNI_COMMAND '%.32s' is none of ADD, DEL, CHECK, VERSION, STATUS, GC", cmd);
	e->cmd = commands[i].cmd;
	needs_id = e->cmd == CNI_CMD_ADD || e->cmd == CNI_CMD_DEL || e->cmd == CNI_CMD_CHECK;
	needs_netns = e->cmd == CNI_CMD_ADD || e->cmd == CNI_CMD_CHECK;
	e->container_id = get("CNI_CONTAINERID");
	e->netns = get("CNI_NETNS");
	e->ifname = get("CNI_IFNAME");
	e->args = get("CNI_ARGS");
	e->netns = e->netns ? e->netns : "";
	e->args = e->args ? e->args : "";
	if (!needs_id)
		return 0;
	if (!e->container_id || !valid_container_id(e->container_id))
		return cni_fail(
		    err, CNI_ERR_INVALID_ENV,
		    "CNI_CONTAINERID '%.80s' is missing or not a container id (a letter "
		    "or digit, then letters, digits, '_', '.', '-'; under %d bytes)",
		    e->container_id ? e->container_id : "", DP_POD_ID_MAX);
	if (!e->ifname || !valid_ifname(e->ifname))
		return cni_fail(err, CNI_ERR_INVALID_ENV,
				"CNI_IFNAME '%.32s' is missing or not an interface name",
				e->ifname ? e->ifname : "");
	if (needs_netns && !*e->netns)
		return cni_fail(err, CNI_ERR_INVALID_ENV, "CNI_NETNS is not set (%s needs it)",
				cmd);
	if (*e->netns && (e->netns[0] != '/' || strlen(e->netns) >= PATH_MAX))
		return cni_fail(err, CNI_ERR_INVALID_ENV,
				"CNI_NETNS '%.80s' is not an absolute path", e->netns);
	if (cni_args_pod_name(e->args, e->pod_name, sizeof(e->pod_name), err) < 0)
		return -1;
	if (!e->pod_name[0])
		snprintf(e->pod_name, sizeof(e->pod_name), "%s", e->container_id);
	return 0;
}

int cni_args_pod_name(const char *args, char *out, size_t len, struct cni_error *err)
{
	const char *ns = NULL, *name = NULL, *p = args;
	size_t ns_len = 0, name_len = 0;

	while (*p) {
		const char *end = strchrnul(p, ';'), *eq = memchr(p, '=', (size_t)(end - p));

		if (!eq || eq == p)
			return cni_fail(err, CNI_ERR_INVALID_ENV,
					"CNI_ARGS '%.80s' is not KEY=VALUE;KEY=VALUE", args);
		if ((size_t)(eq - p) == 17 && !memcmp(p, "K8S_POD_NAMESPACE", 17))
			ns = eq + 1, ns_len = (size_t)(end - eq - 1);
		else if ((size_t)(eq - p) == 12 && !memcmp(p, "K8S_POD_NAME", 12))
			name = eq + 1, name_len = (size_t)(end - eq - 1);
		p = *end ? end + 1 : end;
	}
	if (!ns || !name || !ns_len || !name_len)
		return 0;
	if (ns_len + name_len + 2 > len)
		return cni_fail(err, CNI_ERR_INVALID_ENV,
				"CNI_ARGS: pod %.*s/%.*s is longer than %zu bytes", (int)ns_len, ns,
				(int)name_len, name, len - 1);
	snprintf(out, len, "%.*s/%.*s", (int)ns_len, ns, (int)name_len, name);
	if (!printable(out)) {
		out[0] = '\0';
		return cni_fail(err, CNI_ERR_INVALID_ENV,
				"CNI_ARGS: the pod name holds unprintable bytes");
	}
	return 1;
}

/* ---- configuration ---- */

static json_object *member(json_object *o, const char *key)
{
	json_object *v = NULL;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* A string member into out: 1 if present, 0 if absent, -1 (err set) if not a string or too
 * long or with unprintable bytes. */
static int string_member(json_object *o, const char *where, const char *key, char *out, size_t len,
			 struct cni_error *err)
{
	json_object *v = member(o, key);
	const char *s;

	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return cni_fail(err, CNI_ERR_DECODE, "%s%s must be a string", where, key);
	s = json_object_get_string(v);
	if ((size_t)json_object_get_string_len(v) >= len ||
	    strlen(s) != (size_t)json_object_get_string_len(v))
		return cni_fail(err, CNI_ERR_DECODE, "%s%s is longer than %zu bytes", where, key,
				len - 1);
	if (!printable(s))
		return cni_fail(err, CNI_ERR_DECODE, "%s%s holds unprintable bytes", where, key);
	snprintf(out, len, "%s", s);
	return 1;
}

/* A ".." path component: pinRoot must name one place, not climb out of bpffs. */
static bool has_dotdot(const char *path)
{
	for (const char *s = path; (s = strstr(s, "..")); s += 2)
		if ((s == path || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
			return true;
	return false;
}

static int parse_interfaces(struct cni_config *c, json_object *prev, struct cni_error *err)
{
	json_object *list = member(prev, "interfaces");
	char sandbox[PATH_MAX] = "";
	size_t n;

	if (!list)
		return 0;
	if (!json_object_is_type(list, json_type_array))
		return cni_fail(err, CNI_ERR_DECODE, "prevResult.interfaces must be an array");
	n = json_object_array_length(list);
	if (n > CNI_MAX_IFACES)
		return cni_fail(err, CNI_ERR_DECODE, "prevResult lists %zu interfaces, at most %d",
				n, CNI_MAX_IFACES);
	for (size_t i = 0; i < n; i++) {
		json_object *it = json_object_array_get_idx(list, i);
		struct cni_iface *f = &c->ifaces[i];
		int ret;

		if (!json_object_is_type(it, json_type_object))
			return cni_fail(err, CNI_ERR_DECODE,
					"prevResult.interfaces[%zu] must be an object", i);
		ret = string_member(it, "prevResult.interfaces[].", "name", f->name,
				    sizeof(f->name), err);
		if (ret == 0)
			return cni_fail(err, CNI_ERR_DECODE,
					"prevResult.interfaces[%zu] has no name", i);
		if (ret < 0)
			return -1;
		ret = string_member(it, "prevResult.interfaces[].", "sandbox", sandbox,
				    sizeof(sandbox), err);
		if (ret < 0)
			return -1;
		f->sandbox = ret > 0 && sandbox[0];
	}
	c->n_ifaces = n;
	return 0;
}

static int parse_ip(struct cni_config *c, json_object *it, size_t i, struct cni_error *err)
{
	struct cni_ip *ip = &c->ips[i];
	json_object *iface = member(it, "interface");
	char text[INET6_ADDRSTRLEN + 8];
	struct dp_cidr cidr;
	int64_t idx;
	int ret;

	if (!json_object_is_type(it, json_type_object))
		return cni_fail(err, CNI_ERR_DECODE, "prevResult.ips[%zu] must be an object", i);
	ret = string_member(it, "prevResult.ips[].", "address", text, sizeof(text), err);
	if (ret <= 0)
		return cni_fail(err, CNI_ERR_DECODE, "prevResult.ips[%zu] has no address string",
				i);
	if (dp_cidr_parse(text, 0, &cidr) < 0)
		return cni_fail(err, CNI_ERR_DECODE,
				"prevResult.ips[%zu].address '%s' is not an address/prefix", i,
				text);
	ip->family = cidr.family;
	ip->prefixlen = cidr.prefixlen;
	memcpy(ip->addr, cidr.addr, sizeof(ip->addr));
	ip->iface = -1;
	if (!iface)
		return 0;
	if (!json_object_is_type(iface, json_type_int))
		return cni_fail(err, CNI_ERR_DECODE,
				"prevResult.ips[%zu].interface must be an integer", i);
	idx = json_object_get_int64(iface);
	if (idx < 0 || (size_t)idx >= c->n_ifaces)
		return cni_fail(err, CNI_ERR_DECODE,
				"prevResult.ips[%zu].interface %lld names no listed interface", i,
				(long long)idx);
	ip->iface = (int)idx;
	return 0;
}

static int parse_prev(struct cni_config *c, json_object *prev, struct cni_error *err)
{
	json_object *ips;
	size_t n;

	if (!json_object_is_type(prev, json_type_object))
		return cni_fail(err, CNI_ERR_DECODE, "prevResult must be an object");
	if (parse_interfaces(c, prev, err) < 0)
		return -1;
	ips = member(prev, "ips");
	if (!ips)
		return 0;
	if (!json_object_is_type(ips, json_type_array))
		return cni_fail(err, CNI_ERR_DECODE, "prevResult.ips must be an array");
	n = json_object_array_length(ips);
	if (n > CNI_MAX_IPS)
		return cni_fail(err, CNI_ERR_DECODE, "prevResult lists %zu addresses, at most %d",
				n, CNI_MAX_IPS);
	for (size_t i = 0; i < n; i++)
		if (parse_ip(c, json_object_array_get_idx(ips, i), i, err) < 0)
			return -1;
	c->n_ips = n;
	return 0;
}

/* GC's list: objects with string containerID and ifname. */
static int parse_valid(struct cni_config *c, json_object *list, struct cni_error *err)
{
	if (!json_object_is_type(list, json_type_array))
		return cni_fail(err, CNI_ERR_DECODE, "cni.dev/valid-attachments must be an array");
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *it = json_object_array_get_idx(list, i), *id, *ifname;

		if (!json_object_is_type(it, json_type_object) ||
		    !(id = member(it, "containerID")) || !(ifname = member(it, "ifname")) ||
		    !json_object_is_type(id, json_type_string) ||
		    !json_object_is_type(ifname, json_type_string))
			return cni_fail(
			    err, CNI_ERR_DECODE,
			    "cni.dev/valid-attachments[%zu] needs string containerID and "
			    "ifname",
			    i);
	}
	c->valid = list;
	return 0;
}

bool cni_attachment_valid(const struct cni_config *c, const char *container_id, const char *ifname)
{
	json_object *list = c->valid;

	for (size_t i = 0; list && i < json_object_array_length(list); i++) {
		json_object *it = json_object_array_get_idx(list, i);

		if (!strcmp(json_object_get_string(member(it, "containerID")), container_id) &&
		    !strcmp(json_object_get_string(member(it, "ifname")), ifname))
			return true;
	}
	return false;
}

static json_object *parse_json(const char *buf, size_t len, struct cni_error *err)
{
	struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH_MAX);
	json_object *o = NULL;

	if (!tok) {
		cni_fail(err, CNI_ERR_IO, "out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	if (len > CNI_MAX_INPUT)
		cni_fail(err, CNI_ERR_DECODE, "the configuration is %zu bytes, at most %u", len,
			 CNI_MAX_INPUT);
	else if (memchr(buf, '\0', len))
		cni_fail(err, CNI_ERR_DECODE, "the configuration holds a NUL byte");
	else
		o = json_tokener_parse_ex(tok, buf, (int)len);
	/* Trailing bytes after the object, other than white space, are an error too. */
	if (o && (json_tokener_get_parse_end(tok) < len &&
		  strspn(buf + json_tokener_get_parse_end(tok), " \t\r\n") !=
		      len - json_tokener_get_parse_end(tok))) {
		json_object_put(o);
		o = NULL;
		cni_fail(err, CNI_ERR_DECODE, "the configuration has data after its JSON object");
	} else if (!o && !err->code) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		cni_fail(err, CNI_ERR_DECODE, "the configuration is not valid JSON: %s at byte %zu",
			 e == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(e),
			 json_tokener_get_parse_end(tok));
	} else if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
		cni_fail(err, CNI_ERR_DECODE, "the configuration must be a JSON object");
	}
	json_tokener_free(tok);
	return o;
}

int cni_config_parse(const char *buf, size_t len, struct cni_config *c, struct cni_error *err)
{
	json_object *root, *prev;
	int ret;

	memset(c, 0, sizeof(*c));
	root = parse_json(buf, len, err);
	if (!root)
		return -1;
	c->root = root;
	ret = string_member(root, "", "cniVersion", c->version, sizeof(c->version), err);
	if (ret == 0)
		cni_fail(err, CNI_ERR_INVALID_CONFIG, "the configuration has no cniVersion");
	if (ret <= 0)
		goto fail;
	if (!cni_version_supported(c->version)) {
		cni_fail(err, CNI_ERR_INCOMPATIBLE_VERSION,
			 "cniVersion %s is not supported (0.4.0, 1.0.0, 1.1.0 are)", c->version);
		goto fail;
	}
	ret = string_member(root, "", "name", c->name, sizeof(c->name), err);
	if (ret == 0)
		cni_fail(err, CNI_ERR_INVALID_CONFIG, "the configuration has no network name");
	if (ret <= 0)
		goto fail;
	ret = string_member(root, "", "pinRoot", c->pin_root, sizeof(c->pin_root), err);
	if (ret < 0)
		goto fail;
	if (ret == 0)
		snprintf(c->pin_root, sizeof(c->pin_root), "%s", DP_PIN_ROOT);
	if (c->pin_root[0] != '/' || has_dotdot(c->pin_root)) {
		cni_fail(err, CNI_ERR_INVALID_CONFIG,
			 "pinRoot '%s' must be an absolute path without '..'", c->pin_root);
		goto fail;
	}
	if (member(root, "cni.dev/valid-attachments") &&
	    parse_valid(c, member(root, "cni.dev/valid-attachments"), err) < 0)
		goto fail;
	prev = member(root, "prevResult");
	if (prev) {
		c->has_prev = true;
		c->prev = prev;
		if (parse_prev(c, prev, err) < 0)
			goto fail;
	}
	return 0;
fail:
	cni_config_free(c);
	return -1;
}

void cni_config_free(struct cni_config *c)
{
	json_object_put(c->root);
	c->root = c->prev = c->valid = NULL;
}

int cni_pod_addresses(const struct cni_config *c, const char *ifname, struct cni_ip *out,
		      size_t max, size_t *n, struct cni_error *err)
{
	*n = 0;
	for (size_t i = 0; i < c->n_ips; i++) {
		const struct cni_ip *ip = &c->ips[i];

		if (ip->iface >= 0 &&
		    (!c->ifaces[ip->iface].sandbox || strcmp(c->ifaces[ip->iface].name, ifname)))
			continue;
		if (*n == max)
			return cni_fail(err, CNI_ERR_INVALID_CONFIG,
					"prevResult gives %s more than %zu addresses", ifname, max);
		out[(*n)++] = *ip;
	}
	if (!*n)
		return cni_fail(
		    err, CNI_ERR_INVALID_CONFIG,
		    "prevResult has no address for %s: conclave-cni must follow a plugin "
		    "with IPAM (e.g. bridge + host-local) in the chain",
		    ifname);
	return 0;
}

/* ---- writers ---- */

static char *to_text(json_object *o)
{
	char *s = o ? strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN)) : NULL;

	json_object_put(o);
	return s;
}

char *cni_result_text(const struct cni_config *c)
{
	json_object *out = NULL;

	/* A deep copy, so the configuration's own object stays as it came. */
	if (c->prev && json_object_deep_copy(c->prev, &out, NULL) == 0)
		json_object_object_add(out, "cniVersion", json_object_new_string(c->version));
	return to_text(out);
}

char *cni_version_answer(const char *in, size_t len)
{
	struct cni_error ignored = { 0 };
	json_object *o = len ? parse_json(in, len, &ignored) : NULL;
	char version[16] = "";
	char *out;

	if (o && string_member(o, "", "cniVersion", version, sizeof(version), &ignored) <= 0)
		version[0] = '\0';
	out = cni_version_text(cni_version_supported(version) ? version : NULL);
	json_object_put(o);
	return out;
}

char *cni_version_text(const char *version)
{
	json_object *o = json_object_new_object(), *list = json_object_new_array();

	json_object_object_add(o, "cniVersion",
			       json_object_new_string(version ? version : CNI_VERSION_LATEST));
	for (size_t i = 0; i < ARRAY_SIZE(versions); i++)
		json_object_array_add(list, json_object_new_string(versions[i]));
	json_object_object_add(o, "supportedVersions", list);
	return to_text(o);
}

char *cni_error_text(const char *version, const struct cni_error *err)
{
	json_object *o = json_object_new_object();

	json_object_object_add(
	    o, "cniVersion",
	    json_object_new_string(version && *version ? version : CNI_VERSION_LATEST));
	json_object_object_add(o, "code", json_object_new_int((int)err->code));
	json_object_object_add(o, "msg", json_object_new_string(err->msg));
	if (err->details[0])
		json_object_object_add(o, "details", json_object_new_string(err->details));
	return to_text(o);
}
