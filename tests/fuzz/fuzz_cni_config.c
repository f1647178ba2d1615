// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for conclave-cni's parsers of untrusted input: the network configuration
 * with prevResult (then the pod's addresses, the passed-on result, which must parse back to
 * prevResult, and the GC list), VERSION's answer, CNI_ARGS, and the error object built from
 * whatever message a refusal produced (it must be JSON). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "conclave/cni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_be_json(char *text)
{
	json_object *o;

	if (!text)
		abort();
	o = json_tokener_parse(text);
	if (!o || !json_object_is_type(o, json_type_object))
		abort();
	json_object_put(o);
	free(text);
}

static void check_config(const struct cni_config *c)
{
	struct cni_ip ips[DP_POD_ADDRS_MAX];
	struct cni_error err = { 0 };
	json_object *out, *prev = NULL;
	size_t n;
	char *text;

	if (cni_pod_addresses(c, "eth0", ips, DP_POD_ADDRS_MAX, &n, &err) == 0 &&
	    (n == 0 || n > DP_POD_ADDRS_MAX))
		abort();
	(void)cni_attachment_valid(c, "id", "eth0");
	if (!c->prev)
		return;
	text = cni_result_text(c);
	if (!text)
		abort();
	out = json_tokener_parse(text);
	if (json_object_deep_copy(c->prev, &prev, NULL) != 0)
		abort();
	json_object_object_add(prev, "cniVersion", json_object_new_string(c->version));
	if (!out || !json_object_equal(out, prev))
		abort();
	json_object_put(out);
	json_object_put(prev);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cni_error err = { 0 };
	struct cni_config c;
	char name[DP_POD_NAME_MAX], *args;

	if (cni_config_parse((const char *)data, size, &c, &err) == 0) {
		check_config(&c);
		cni_config_free(&c);
	} else if (!err.code || c.root) {
		abort(); /* a refusal says why and keeps nothing */
	}
	must_be_json(cni_error_text(NULL, &err));
	must_be_json(cni_version_answer((const char *)data, size));
	args = malloc(size + 1);
	if (!args)
		return 0;
	memcpy(args, data, size);
	args[size] = '\0';
	memset(&err, 0, sizeof(err));
	if (cni_args_pod_name(args, name, sizeof(name), &err) == 1 && !strchr(name, '/'))
		abort();
	free(args);
	return 0;
}
