// SPDX-License-Identifier: Apache-2.0
/* The CNI codec (cni.c): the environment each command needs, CNI_ARGS, configurations and
 * prevResult (what is accepted, what is refused and with which code), choosing the pod's
 * addresses, and the result, version and error JSON. No node is touched. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json.h>

#include "conclave/cni.h"

/* ---- environment ---- */

static const char *const *env_now;

static const char *lookup(const char *name)
{
	size_t n = strlen(name);

	for (const char *const *e = env_now; *e; e++)
		if (!strncmp(*e, name, n) && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

static int env_parse(const char *const *vars, struct cni_env *e, struct cni_error *err)
{
	memset(err, 0, sizeof(*err));
	env_now = vars;
	return cni_env_parse(e, lookup, err);
}

static void add_needs_container_netns_and_ifname(void **state)
{
	const char *const good[] = { "CNI_COMMAND=ADD", "CNI_CONTAINERID=abc-1.x_y",
				     "CNI_NETNS=/run/netns/p", "CNI_IFNAME=eth0", NULL };
	const char *const no_netns[] = { "CNI_COMMAND=ADD", "CNI_CONTAINERID=abc",
					 "CNI_IFNAME=eth0", NULL };
	const char *const bad_id[] = { "CNI_COMMAND=ADD", "CNI_CONTAINERID=-abc",
				       "CNI_NETNS=/run/netns/p", "CNI_IFNAME=eth0", NULL };
	const char *const bad_if[] = { "CNI_COMMAND=ADD", "CNI_CONTAINERID=abc",
				       "CNI_NETNS=/run/netns/p", "CNI_IFNAME=a/b", NULL };
	const char *const rel_netns[] = { "CNI_COMMAND=ADD", "CNI_CONTAINERID=abc",
					  "CNI_NETNS=run/netns/p", "CNI_IFNAME=eth0", NULL };
	struct cni_error err;
	struct cni_env e;

	assert_int_equal(env_parse(good, &e, &err), 0);
	assert_int_equal(e.cmd, CNI_CMD_ADD);
	assert_string_equal(e.container_id, "abc-1.x_y");
	assert_string_equal(e.pod_name, "abc-1.x_y"); /* no pod name in CNI_ARGS */
	assert_int_equal(env_parse(no_netns, &e, &err), -1);
	assert_int_equal(err.code, CNI_ERR_INVALID_ENV);
	assert_non_null(strstr(err.msg, "CNI_NETNS"));
	assert_int_equal(env_parse(bad_id, &e, &err), -1);
	assert_non_null(strstr(err.msg, "CNI_CONTAINERID"));
	assert_int_equal(env_parse(bad_if, &e, &err), -1);
	assert_non_null(strstr(err.msg, "CNI_IFNAME"));
	assert_int_equal(env_parse(rel_netns, &e, &err), -1);
	assert_non_null(strstr(err.msg, "absolute"));
}

static void del_needs_no_netns_and_version_nothing(void **state)
{
	const char *const del[] = { "CNI_COMMAND=DEL", "CNI_CONTAINERID=abc", "CNI_IFNAME=eth0",
				    NULL };
	const char *const version[] = { "CNI_COMMAND=VERSION", NULL };
	const char *const unknown[] = { "CNI_COMMAND=FROB", NULL };
	const char *const none[] = { NULL };
	struct cni_error err;
	struct cni_env e;

	assert_int_equal(env_parse(del, &e, &err), 0);
	assert_string_equal(e.netns, "");
	assert_int_equal(env_parse(version, &e, &err), 0);
	assert_int_equal(e.cmd, CNI_CMD_VERSION);
	assert_int_equal(env_parse(unknown, &e, &err), -1);
	assert_int_equal(err.code, CNI_ERR_INVALID_ENV);
	assert_non_null(strstr(err.msg, "FROB"));
	assert_int_equal(env_parse(none, &e, &err), -1);
	assert_non_null(strstr(err.msg, "CNI_COMMAND is not set"));
}

static void cni_args_name_the_pod(void **state)
{
	struct cni_error err = { 0 };
	char name[DP_POD_NAME_MAX] = "";

	assert_int_equal(cni_args_pod_name("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;"
					   "K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=x",
					   name, sizeof(name), &err),
			 1);
	assert_string_equal(name, "default/web-1");
	name[0] = '\0';
	assert_int_equal(cni_args_pod_name("K8S_POD_NAME=web-1", name, sizeof(name), &err), 0);
	assert_string_equal(name, "");
	assert_int_equal(cni_args_pod_name("", name, sizeof(name), &err), 0);
	assert_int_equal(cni_args_pod_name("novalue;x=1", name, sizeof(name), &err), -1);
	assert_int_equal(err.code, CNI_ERR_INVALID_ENV);
	memset(&err, 0, sizeof(err));
	assert_int_equal(
	    cni_args_pod_name("K8S_POD_NAMESPACE=a;K8S_POD_NAME=b\x01", name, sizeof(name), &err),
	    -1);
	assert_non_null(strstr(err.msg, "unprintable"));
}

/* ---- configuration ---- */

#define PREV                                                                                    \
	"{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"br0\",\"mac\":\"aa:bb:cc:dd:ee:" \
	"ff\"},"                                                                                \
	"{\"name\":\"veth1\"},{\"name\":\"eth0\",\"sandbox\":\"/run/netns/p\"}],"               \
	"\"ips\":[{\"interface\":2,\"address\":\"10.244.1.2/24\",\"gateway\":\"10.244.1.1\"},"  \
	"{\"interface\":2,\"address\":\"fd10::2/64\"},{\"interface\":0,"                        \
	"\"address\":\"10.244.1.1/24\"}],\"dns\":{}}"
#define CONF(extra) "{\"cniVersion\":\"1.0.0\",\"name\":\"net\",\"type\":\"conclave-cni\"" extra "}"

static int parse(const char *text, struct cni_config *c, struct cni_error *err)
{
	memset(err, 0, sizeof(*err));
	return cni_config_parse(text, strlen(text), c, err);
}

static void config_with_prev_result_parses(void **state)
{
	struct cni_config c;
	struct cni_error err;

	assert_int_equal(
	    parse(CONF(",\"pinRoot\":\"/sys/fs/bpf/t\",\"prevResult\":" PREV), &c, &err), 0);
	assert_string_equal(c.version, "1.0.0");
	assert_string_equal(c.name, "net");
	assert_string_equal(c.pin_root, "/sys/fs/bpf/t");
	assert_true(c.has_prev);
	assert_int_equal(c.n_ifaces, 3);
	assert_true(c.ifaces[2].sandbox);
	assert_false(c.ifaces[0].sandbox);
	assert_int_equal(c.n_ips, 3);
	assert_int_equal(c.ips[1].family, AF_INET6);
	assert_int_equal(c.ips[1].prefixlen, 64);
	cni_config_free(&c);
	assert_int_equal(parse(CONF(""), &c, &err), 0);
	assert_string_equal(c.pin_root, DP_PIN_ROOT);
	assert_false(c.has_prev);
	cni_config_free(&c);
}

/* Each malformed input is refused with its code and a message naming what is wrong. */
static void malformed_configs_are_refused(void **state)
{
	static const struct {
		const char *text;
		unsigned int code;
		const char *msg;
	} cases[] = {
		{ "", CNI_ERR_DECODE, "not valid JSON" },
		{ "{\"cniVersion\":", CNI_ERR_DECODE, "not valid JSON" },
		{ "[1]", CNI_ERR_DECODE, "JSON object" },
		{ CONF("") " {}", CNI_ERR_DECODE, "JSON" },
		{ "{\"name\":\"n\"}", CNI_ERR_INVALID_CONFIG, "no cniVersion" },
		{ "{\"cniVersion\":1,\"name\":\"n\"}", CNI_ERR_DECODE,
		  "cniVersion must be a string" },
		{ "{\"cniVersion\":\"0.3.1\",\"name\":\"n\"}", CNI_ERR_INCOMPATIBLE_VERSION,
		  "0.3.1" },
		{ "{\"cniVersion\":\"1.0.0\"}", CNI_ERR_INVALID_CONFIG, "no network name" },
		{ CONF(",\"pinRoot\":\"relative\""), CNI_ERR_INVALID_CONFIG, "absolute" },
		{ CONF(",\"pinRoot\":\"/sys/fs/bpf/../../etc\""), CNI_ERR_INVALID_CONFIG, ".." },
		{ CONF(",\"prevResult\":[]"), CNI_ERR_DECODE, "prevResult must be an object" },
		{ CONF(",\"prevResult\":{\"ips\":{}}"), CNI_ERR_DECODE, "ips must be an array" },
		{ CONF(",\"prevResult\":{\"ips\":[{\"address\":\"10.0.0.1\"}]}"), CNI_ERR_DECODE,
		  "address/prefix" },
		{ CONF(",\"prevResult\":{\"ips\":[{\"address\":\"10.0.0.1/33\"}]}"), CNI_ERR_DECODE,
		  "address/prefix" },
		{ CONF(",\"prevResult\":{\"ips\":[{}]}"), CNI_ERR_DECODE, "no address" },
		{ CONF(",\"prevResult\":{\"ips\":[{\"address\":\"10.0.0.1/8\",\"interface\":0}]}"),
		  CNI_ERR_DECODE, "names no listed interface" },
		{ CONF(",\"prevResult\":{\"interfaces\":[{\"mac\":\"x\"}]}"), CNI_ERR_DECODE,
		  "has no name" },
		{ CONF(",\"prevResult\":{\"interfaces\":[{\"name\":\"way-too-long-ifname\"}]}"),
		  CNI_ERR_DECODE, "longer than" },
		{ CONF(",\"name\":\"a\\u0000b\""), CNI_ERR_DECODE, "name" },
		{ CONF(",\"cni.dev/valid-attachments\":[{\"containerID\":1}]"), CNI_ERR_DECODE,
		  "valid-attachments" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cni_config c;
		struct cni_error err;

		if (parse(cases[i].text, &c, &err) == 0)
			fail_msg("case %zu accepted: %s", i, cases[i].text);
		if (err.code != cases[i].code || !strstr(err.msg, cases[i].msg))
			fail_msg("case %zu: code %u, msg '%s' (want %u, '%s')", i, err.code,
				 err.msg, cases[i].code, cases[i].msg);
		assert_null(c.root); /* nothing left allocated */
	}
}

static void deep_nesting_is_refused(void **state)
{
	char text[600];
	struct cni_config c;
	struct cni_error err;
	size_t n = 0;

	n +=
	    (size_t)snprintf(text, sizeof(text), "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"x\":");
	for (int i = 0; i < 100; i++)
		text[n++] = '[';
	for (int i = 0; i < 100; i++)
		text[n++] = ']';
	text[n++] = '}';
	text[n] = '\0';
	assert_int_equal(parse(text, &c, &err), -1);
	assert_int_equal(err.code, CNI_ERR_DECODE);
}

static void pod_addresses_are_the_sandbox_interfaces(void **state)
{
	struct cni_ip ips[4];
	struct cni_config c;
	struct cni_error err;
	size_t n;

	assert_int_equal(parse(CONF(",\"prevResult\":" PREV), &c, &err), 0);
	assert_int_equal(cni_pod_addresses(&c, "eth0", ips, 4, &n, &err), 0);
	assert_int_equal(n, 2); /* not the bridge's 10.244.1.1 */
	assert_int_equal(ips[0].family, AF_INET);
	assert_int_equal(ips[0].addr[3], 2);
	assert_int_equal(cni_pod_addresses(&c, "eth0", ips, 1, &n, &err), -1);
	assert_non_null(strstr(err.msg, "more than 1"));
	memset(&err, 0, sizeof(err));
	assert_int_equal(cni_pod_addresses(&c, "net1", ips, 4, &n, &err), -1);
	assert_int_equal(err.code, CNI_ERR_INVALID_CONFIG);
	assert_non_null(strstr(err.msg, "no address for net1"));
	cni_config_free(&c);
	/* Without interface indexes every address is the pod's. */
	assert_int_equal(
	    parse(CONF(",\"prevResult\":{\"ips\":[{\"address\":\"10.1.0.5/16\"}]}"), &c, &err), 0);
	assert_int_equal(cni_pod_addresses(&c, "eth0", ips, 4, &n, &err), 0);
	assert_int_equal(n, 1);
	cni_config_free(&c);
}

/* ---- writers ---- */

static void result_is_prev_result_unchanged(void **state)
{
	json_object *prev = json_tokener_parse(PREV), *out;
	struct cni_config c;
	struct cni_error err;
	char *text;

	assert_int_equal(
	    parse("{\"cniVersion\":\"1.1.0\",\"name\":\"n\",\"prevResult\":" PREV "}", &c, &err),
	    0);
	text = cni_result_text(&c);
	assert_non_null(text);
	out = json_tokener_parse(text);
	assert_non_null(out);
	/* The same object, except that it speaks the configuration's version. */
	json_object_object_add(prev, "cniVersion", json_object_new_string("1.1.0"));
	assert_true(json_object_equal(prev, out));
	json_object_put(prev);
	json_object_put(out);
	free(text);
	cni_config_free(&c);
}

static void version_and_error_objects(void **state)
{
	struct cni_error err = { 0 };
	json_object *o;
	char *text;

	text = cni_version_answer("{\"cniVersion\":\"0.4.0\"}", 22);
	o = json_tokener_parse(text);
	assert_string_equal(json_object_get_string(json_object_object_get(o, "cniVersion")),
			    "0.4.0");
	assert_int_equal(json_object_array_length(json_object_object_get(o, "supportedVersions")),
			 3);
	json_object_put(o);
	free(text);
	text = cni_version_answer("garbage", 7); /* the latest, rather than no answer */
	assert_non_null(strstr(text, "\"cniVersion\":\"" CNI_VERSION_LATEST "\""));
	free(text);

	cni_fail(&err, CNI_ERR_TRY_AGAIN, "datapath %s", "missing");
	cni_fail(&err, CNI_ERR_IO, "second error is ignored");
	snprintf(err.details, sizeof(err.details), "more");
	text = cni_error_text("1.0.0", &err);
	o = json_tokener_parse(text);
	assert_int_equal(json_object_get_int(json_object_object_get(o, "code")), 11);
	assert_string_equal(json_object_get_string(json_object_object_get(o, "msg")),
			    "datapath missing");
	assert_string_equal(json_object_get_string(json_object_object_get(o, "details")), "more");
	assert_string_equal(json_object_get_string(json_object_object_get(o, "cniVersion")),
			    "1.0.0");
	json_object_put(o);
	free(text);
}

static void gc_valid_attachments(void **state)
{
	struct cni_config c;
	struct cni_error err;

	assert_int_equal(parse(CONF(",\"cni.dev/valid-attachments\":[{\"containerID\":\"a\","
				    "\"ifname\":\"eth0\"}]"),
			       &c, &err),
			 0);
	assert_true(cni_attachment_valid(&c, "a", "eth0"));
	assert_false(cni_attachment_valid(&c, "a", "eth1"));
	assert_false(cni_attachment_valid(&c, "b", "eth0"));
	cni_config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(add_needs_container_netns_and_ifname),
		cmocka_unit_test(del_needs_no_netns_and_version_nothing),
		cmocka_unit_test(cni_args_name_the_pod),
		cmocka_unit_test(config_with_prev_result_parses),
		cmocka_unit_test(malformed_configs_are_refused),
		cmocka_unit_test(deep_nesting_is_refused),
		cmocka_unit_test(pod_addresses_are_the_sandbox_interfaces),
		cmocka_unit_test(result_is_prev_result_unchanged),
		cmocka_unit_test(version_and_error_objects),
		cmocka_unit_test(gc_valid_attachments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
