/* SPDX-License-Identifier: Apache-2.0 */
/* The CNI protocol as a chained plugin sees it (SPEC 1.0/1.1): the CNI_* environment, the
 * network configuration on stdin with the previous plugin's result, the result passed on, and
 * the error object. Everything here is a parser of untrusted input or a writer; nothing
 * touches the node (that is cniplugin.c). Fuzzed by tests/fuzz/fuzz_cni_config.c. */
#ifndef CONCLAVE_CNI_H
#define CONCLAVE_CNI_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "conclave/datapath_abi.h"

/* Error codes of the spec (0-99 reserved) and ours (>= 100). */
enum cni_code {
	CNI_ERR_INCOMPATIBLE_VERSION = 1,
	CNI_ERR_UNSUPPORTED_FIELD = 2,
	CNI_ERR_UNKNOWN_CONTAINER = 3,
	CNI_ERR_INVALID_ENV = 4,
	CNI_ERR_IO = 5,
	CNI_ERR_DECODE = 6,
	CNI_ERR_INVALID_CONFIG = 7,
	CNI_ERR_TRY_AGAIN = 11,
	CNI_ERR_NOT_AVAILABLE = 50,
	CNI_ERR_DATAPATH = 100, /* the node's datapath refused or failed an operation */
	CNI_ERR_CHECK = 101,	/* CHECK found the pod not (or not fully) enforced */
};

struct cni_error {
	unsigned int code; /* 0: no error */
	char msg[256];
	char details[512];
};

/* Set err (first error wins) and return -1, for "return cni_fail(...)". */
__attribute__((format(printf, 3, 4))) int cni_fail(struct cni_error *err, unsigned int code,
						   const char *fmt, ...);

enum cni_command {
	CNI_CMD_ADD,
	CNI_CMD_DEL,
	CNI_CMD_CHECK,
	CNI_CMD_VERSION,
	CNI_CMD_STATUS,
	CNI_CMD_GC
};

#define CNI_VERSION_LATEST "1.1.0"
#define CNI_MAX_INPUT	   (1u << 20) /* bytes of stdin we read: configs are a few KiB */
#define CNI_MAX_IFACES	   16
#define CNI_MAX_IPS	   16

/* The CNI_* environment. Strings point into the environment (or the lookup's storage). */
struct cni_env {
	enum cni_command cmd;
	const char *container_id; /* CNI_CONTAINERID */
	const char *netns;	  /* CNI_NETNS, "" when absent (allowed for DEL) */
	const char *ifname;	  /* CNI_IFNAME */
	const char *args;	  /* CNI_ARGS, "" when absent */
	char
	    pod_name[DP_POD_NAME_MAX]; /* "K8S_POD_NAMESPACE/K8S_POD_NAME", else the container id */
};

/* Read and check the environment through get (getenv in the binary): the variables the
 * command requires, their syntax (container id: alnum first, then alnum _ . -; interface name
 * 1-15 bytes, no '/', ':' or space; netns an absolute path). CNI_INVALID_ENV on failure. */
int cni_env_parse(struct cni_env *e, const char *(*get)(const char *name), struct cni_error *err);

/* "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=name;..." into "ns/name" (printable, bounded); 1 if both
 * were present, 0 if not (out untouched), -1 on malformed CNI_ARGS (err set). */
int cni_args_pod_name(const char *args, char *out, size_t len, struct cni_error *err);

struct cni_iface {
	char name[16];
	bool sandbox; /* inside a container (the result names its netns), not on the host */
};

struct cni_ip {
	int family; /* AF_INET / AF_INET6 */
	uint8_t addr[16];
	uint8_t prefixlen;
	int iface; /* index into interfaces, -1 when the result does not say */
};

/* A network configuration from stdin. */
struct cni_config {
	char version[16]; /* cniVersion */
	char name[128];
	char pin_root[PATH_MAX]; /* "pinRoot", default DP_PIN_ROOT */
	bool has_prev;		 /* prevResult present */
	struct cni_iface ifaces[CNI_MAX_IFACES];
	size_t n_ifaces;
	struct cni_ip ips[CNI_MAX_IPS];
	size_t n_ips;
	void *prev;  /* the prevResult JSON object (json_object *), owned via root */
	void *valid; /* GC: "cni.dev/valid-attachments" (json_object * array), checked; or NULL */
	void *root;  /* the whole configuration (json_object *) */
};

/* Parse and check a configuration (len bytes, need not be NUL-terminated): a JSON object,
 * a supported cniVersion, a name, an optional absolute pinRoot, and prevResult's interfaces
 * and ips when present. Unknown keys are kept (the spec lets runtimes add them). */
int cni_config_parse(const char *buf, size_t len, struct cni_config *c, struct cni_error *err);
void cni_config_free(struct cni_config *c);

/* GC: whether container_id/ifname is among the configuration's valid attachments. */
bool cni_attachment_valid(const struct cni_config *c, const char *container_id, const char *ifname);

/* Whether this plugin speaks the version ("0.4.0", "1.0.0", "1.1.0"). */
bool cni_version_supported(const char *v);

/* The pod's addresses from prevResult: the ips on the sandbox interface named ifname (or with
 * no interface given), at most max. Several on one family are fine; none is an error. */
int cni_pod_addresses(const struct cni_config *c, const char *ifname, struct cni_ip *out,
		      size_t max, size_t *n, struct cni_error *err);

/* The ADD/CHECK result: prevResult unchanged, with the config's cniVersion. Malloc'ed text. */
char *cni_result_text(const struct cni_config *c);

/* {"cniVersion", "supportedVersions"} for VERSION; version NULL: the latest. Malloc'ed. */
char *cni_version_text(const char *version);

/* VERSION's answer to stdin in[0..len): in its cniVersion if we speak it, else the latest. */
char *cni_version_answer(const char *in, size_t len);

/* {"cniVersion", "code", "msg", "details"}: what a failing plugin prints on stdout. */
char *cni_error_text(const char *version, const struct cni_error *err);

#endif
