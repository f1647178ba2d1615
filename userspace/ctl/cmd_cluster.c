// SPDX-License-Identifier: Apache-2.0
/* The operator's cluster commands (docs/joind.md, "Operator requests"): init, verify,
 * cluster-status, recover, revoke, replace-disk, set-policy. Each attests the join service, sends
 * one request and reports what came back; the cluster file that init writes pins the control
 * plane's EK and the cluster identity for every later command. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <json.h>
#include <openssl/evp.h>

#include "conclave/admin.h"
#include "conclave/clusterca.h"
#include "conclave/kms.h"
#include "conclave/net.h"
#include "conclave/policy.h"
#include "conclave/util.h"
#include "conclave/verify.h"
#include "conclave/wire.h"
#include "ctl.h"

#define CLUSTER_FILE_VERSION  1
#define CLUSTER_FILE_MAX_SIZE (64u << 10)
#define HOSTPORT_MAX	      (INET6_ADDRSTRLEN + 8) /* "[" IPv6 "]:" port */

/* ---- options ------------------------------------------------------------------------------ */

enum opt {
	O_CLUSTER,
	O_JOIN,
	O_TIMEOUT,
	O_JSON,
	O_OPERATOR_KEY,
	O_RECOVERY,
	O_CP_POLICY,
	O_POLICY_KEY,
	O_EK_ROOTS,
	O_RECOVERY_OUT,
	O_CLUSTER_OUT,
	O_NODE,
	O_COUNT,
};

#define BIT(o) (1u << (o))

static const struct option long_opts[] = {
	{ "cluster", required_argument, NULL, 256 + O_CLUSTER },
	{ "join", required_argument, NULL, 256 + O_JOIN },
	{ "timeout-ms", required_argument, NULL, 256 + O_TIMEOUT },
	{ "json", no_argument, NULL, 256 + O_JSON },
	{ "operator-key", required_argument, NULL, 256 + O_OPERATOR_KEY },
	{ "recovery", required_argument, NULL, 256 + O_RECOVERY },
	{ "cp-policy", required_argument, NULL, 256 + O_CP_POLICY },
	{ "policy-key", required_argument, NULL, 256 + O_POLICY_KEY },
	{ "ek-roots", required_argument, NULL, 256 + O_EK_ROOTS },
	{ "recovery-out", required_argument, NULL, 256 + O_RECOVERY_OUT },
	{ "cluster-out", required_argument, NULL, 256 + O_CLUSTER_OUT },
	{ "node", required_argument, NULL, 256 + O_NODE },
	{ "help", no_argument, NULL, 'h' },
	{ 0 },
};

struct cluster_args {
	const char *opt[O_COUNT]; /* the value of each option given ("" for flags) */
	const char *operand;	  /* NODE_ID or POLICY_FILE */
	int timeout_ms;
	bool json;
};

struct cluster_cmd {
	const char *name, *usage;
	unsigned int allowed, required; /* BIT(enum opt) */
	bool operand;			/* takes exactly one positional argument */
	int (*run)(const struct cluster_args *a);
};

#define CONNECT_HELP                                                                           \
	"  --cluster FILE       the cluster file from 'conclavectl init' (address and pins)\n" \
	"  --join HOST:PORT     reach the join service here instead of the file's address\n"   \
	"  --timeout-ms N       deadline per message and handshake (default 10000)\n"
#define EXIT_HELP                                                                                \
	"\nExit status: 0 success, 1 refused or failed (the reason is printed), 2 usage error\n" \
	"or unreadable input.\n"

/* ---- the cluster file --------------------------------------------------------------------- */

/* What a cluster command needs to reach and trust the join service. */
struct cluster {
	char join[HOSTPORT_MAX];
	char host[HOSTPORT_MAX];
	uint8_t id[CLUSTER_ID_LEN];
	uint8_t ek[32];
	char cp_policy_path[PATH_MAX], policy_key_path[PATH_MAX], ek_roots_path[PATH_MAX];
	struct policy cp_policy;
	X509_STORE *ek_roots;
	EVP_PKEY *operator_key;
	struct admin_config cfg;
};

static void cluster_free(struct cluster *c)
{
	policy_free(&c->cp_policy);
	X509_STORE_free(c->ek_roots);
	EVP_PKEY_free(c->operator_key);
	memset(c, 0, sizeof(*c));
}

static int set_address(struct cluster *c, const char *hostport)
{
	struct in6_addr a;

	if (snprintf(c->join, sizeof(c->join), "%s", hostport) >= (int)sizeof(c->join) ||
	    net_parse_hostport(hostport, c->host, sizeof(c->host), &c->cfg.port) < 0 ||
	    (inet_pton(AF_INET, c->host, &a) != 1 && inet_pton(AF_INET6, c->host, &a) != 1)) {
		fprintf(stderr,
			"conclavectl: bad join address '%s': want IPV4:PORT or [IPV6]:PORT\n",
			hostport);
		return -EINVAL;
	}
	c->cfg.host = c->host;
	return 0;
}

/* The control-plane policy (verified against its key) and the EK roots. */
static int load_trust(struct cluster *c, const char *policy_path, const char *key_path,
		      const char *roots_path)
{
	struct diag d = { { 0 } };
	EVP_PKEY *pub = NULL;
	uint8_t *buf = NULL;
	size_t len;
	int ret = EXIT_USAGE;

	if (read_input("control-plane policy", policy_path, POLICY_MAX_SIZE, &buf, &len) < 0)
		return EXIT_USAGE;
	if (policy_load_public(key_path, &pub, &d) < 0 ||
	    ca_store_load(roots_path, &c->ek_roots, &d) < 0) {
		fprintf(stderr, "conclavectl: %s\n", d.msg);
		goto out;
	}
	if (policy_verify((const char *)buf, len, pub, &c->cp_policy, &d) < 0) {
		fprintf(stderr, "conclavectl: control-plane policy %s refused: %s\n", policy_path,
			d.msg);
		ret = EXIT_REFUSED;
		goto out;
	}
	c->cfg.cp_policy = &c->cp_policy;
	c->cfg.cp_ca = c->ek_roots;
	ret = EXIT_OK;
out:
	EVP_PKEY_free(pub);
	free(buf);
	return ret;
}

static int load_operator_key(struct cluster *c, const char *path)
{
	struct diag d = { { 0 } };

	if (policy_load_private(path, &c->operator_key, &d) < 0) {
		fprintf(stderr, "conclavectl: operator key: %s\n", d.msg);
		return EXIT_USAGE;
	}
	c->cfg.operator_key = c->operator_key;
	return EXIT_OK;
}

static const char *const cluster_keys[] = {
	"conclave-cluster",	"join",	      "cluster_id", "control_plane_ek",
	"control_plane_policy", "policy_key", "ek_roots",
};

static int string_field(json_object *o, const char *key, char *out, size_t cap, struct diag *d)
{
	json_object *v;
	const char *s;

	if (!json_object_object_get_ex(o, key, &v)) {
		diag_set(d, "\"%s\" is missing", key);
		return -EINVAL;
	}
	if (!json_object_is_type(v, json_type_string)) {
		diag_set(d, "\"%s\" is not a string", key);
		return -EINVAL;
	}
	s = json_object_get_string(v);
	if (!*s || strlen(s) >= cap) {
		diag_set(d, "\"%s\" is empty or too long", key);
		return -EINVAL;
	}
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static int hex32_field(json_object *o, const char *key, uint8_t out[32], struct diag *d)
{
	char hex[2 * 32 + 2];
	size_t len;

	if (string_field(o, key, hex, sizeof(hex), d) < 0)
		return -EINVAL;
	if (strlen(hex) != 64 || hex_decode(hex, out, 32, &len) < 0 || len != 32) {
		diag_set(d, "\"%s\" is not 64 hex characters", key);
		return -EINVAL;
	}
	return 0;
}

/* Strict parse: one JSON object, version 1, every key present, no other key. */
static int parse_cluster_file(const char *text, size_t len, struct cluster *c, struct diag *d)
{
	struct json_tokener *tok = json_tokener_new_ex(4);
	json_object *o = NULL, *v;
	int ret = -EINVAL;

	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)len);
	/* One object, then at most trailing whitespace. */
	if (o && strspn(text + json_tokener_get_parse_end(tok), " \t\r\n") !=
		     len - json_tokener_get_parse_end(tok)) {
		json_object_put(o);
		o = NULL;
	}
	if (!o || !json_object_is_type(o, json_type_object)) {
		diag_set(d, "not a single JSON object");
		goto out;
	}
	json_object_object_foreach(o, key, val)
	{
		size_t i = 0;

		(void)val;
		while (i < ARRAY_SIZE(cluster_keys) && strcmp(key, cluster_keys[i]) != 0)
			i++;
		if (i == ARRAY_SIZE(cluster_keys)) {
			diag_set(d, "unknown key \"%s\"", key);
			goto out;
		}
	}
	if (!json_object_object_get_ex(o, "conclave-cluster", &v) ||
	    !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) != CLUSTER_FILE_VERSION) {
		diag_set(d, "\"conclave-cluster\" must be %d", CLUSTER_FILE_VERSION);
		goto out;
	}
	if (string_field(o, "join", c->join, sizeof(c->join), d) < 0 ||
	    hex32_field(o, "cluster_id", c->id, d) < 0 ||
	    hex32_field(o, "control_plane_ek", c->ek, d) < 0 ||
	    string_field(o, "control_plane_policy", c->cp_policy_path, sizeof(c->cp_policy_path),
			 d) < 0 ||
	    string_field(o, "policy_key", c->policy_key_path, sizeof(c->policy_key_path), d) < 0 ||
	    string_field(o, "ek_roots", c->ek_roots_path, sizeof(c->ek_roots_path), d) < 0)
		goto out;
	ret = 0;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return ret;
}

/* The cluster file and everything it names; join overrides its address. Exit code. */
static int load_cluster(const char *path, const char *join, struct cluster *c)
{
	struct diag d = { { 0 } };
	char file_join[HOSTPORT_MAX];
	uint8_t *buf = NULL;
	size_t len;
	int ret;

	memset(c, 0, sizeof(*c));
	if (read_input("cluster file", path, CLUSTER_FILE_MAX_SIZE, &buf, &len) < 0)
		return EXIT_USAGE;
	ret = parse_cluster_file((const char *)buf, len, c, &d);
	free(buf);
	if (ret < 0) {
		fprintf(stderr, "conclavectl: cluster file %s: %s\n", path, d.msg);
		return EXIT_USAGE;
	}
	memcpy(file_join, c->join, sizeof(file_join));
	if (set_address(c, join ? join : file_join) < 0)
		return EXIT_USAGE;
	c->cfg.expect_ek = c->ek;
	c->cfg.expect_cluster = c->id;
	return load_trust(c, c->cp_policy_path, c->policy_key_path, c->ek_roots_path);
}

/* ---- output helpers ----------------------------------------------------------------------- */

static json_object *hex_json(const uint8_t *b, size_t len)
{
	char hex[2 * 32 + 1];

	hex_encode(b, len, hex);
	return json_object_new_string(hex);
}

static void iso_time(uint64_t t, char *out, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!t || !gmtime_r(&tt, &tm) || !strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, cap, "never");
}

static void sha256_hex(const uint8_t *p, size_t len, char out[65])
{
	uint8_t md[32];

	EVP_Digest(p, len, md, NULL, EVP_sha256(), NULL);
	hex_encode(md, sizeof(md), out);
}

static const char *or_dash(const char *s)
{
	return *s ? s : "-";
}

static void print_json(json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							     JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Whether the join service attested (its verdict ran and passed). */
static bool attested(const struct admin_result *r)
{
	return r->verdict.ok;
}

/* Whether the attestation ran at all (the join service was reached and sent evidence). */
static bool attestation_ran(const struct admin_result *r)
{
	return r->verdict.checks[CHECK_FORMAT].status != CHECK_NOT_RUN;
}

/* What the operator should read about a failed call: the reason and, for a refused
 * attestation, each failed check. */
static void print_call_failure(const char *what, const struct admin_result *r, const struct diag *d)
{
	fprintf(stderr, "conclavectl: %s: %s\n", what, d->msg);
	if (!attestation_ran(r) || attested(r))
		return;
	for (int c = 0; c < CHECK_COUNT; c++)
		if (r->verdict.checks[c].status == CHECK_FAIL)
			fprintf(stderr, "conclavectl:   failed check %s: %s\n",
				verify_check_name(c), r->verdict.checks[c].msg);
}

/* ---- verify and cluster-status ------------------------------------------------------------ */

struct status_view {
	bool verified;
	char reason[WIRE_TEXT_MAX + sizeof(((struct diag *)0)->msg) + 64];
	const uint8_t *cluster_id;
	unsigned int active, revoked;
};

static void judge(int ret, const struct admin_result *r, const struct diag *d,
		  const struct cluster *c, struct status_view *v)
{
	v->cluster_id = c->id; /* what the pins made the join service prove */
	for (size_t i = 0; r->has_members && i < r->members.n; i++) {
		if (r->members.members[i].active)
			v->active++;
		else
			v->revoked++;
	}
	if (ret < 0)
		snprintf(v->reason, sizeof(v->reason), "%s", d->msg);
	else if (r->code != WIRE_OK)
		snprintf(v->reason, sizeof(v->reason), "the join service answered %s: %s",
			 wire_code_name(r->code), r->text[0] ? r->text : "(no reason given)");
	else if (!r->has_members)
		snprintf(v->reason, sizeof(v->reason),
			 "the join service sent no member list signed by its cluster CA");
	else
		v->verified = true;
}

static void print_failed_checks(const struct verdict *vd)
{
	for (int c = 0; c < CHECK_COUNT; c++)
		if (vd->checks[c].status == CHECK_FAIL)
			printf("  failed check %s: %s\n", verify_check_name(c), vd->checks[c].msg);
}

static void print_control_plane(const struct admin_result *r)
{
	char hex[65];

	hex_encode(r->ek_id, 32, hex);
	if (!attestation_ran(r)) {
		printf("control plane: not attested (no evidence received)\n");
		return;
	}
	if (!attested(r)) {
		printf("control plane: attestation FAILED (EK %s)\n", hex);
		print_failed_checks(&r->verdict);
		return;
	}
	printf("control plane: attested (EK %s)\n", hex);
	for (int i = 0; i < 24; i++) {
		if (!r->verdict.pcrs[i].in_policy)
			continue;
		hex_encode(r->verdict.pcrs[i].actual, 32, hex);
		printf("  PCR %-2d %s\n", i, hex);
	}
}

static void print_members_table(const struct memberlist *l)
{
	char when[32];

	printf("%-6s %-8s %-8s %-15s %-22s %-18s %-24s %s\n", "NODE", "STATE", "POLICY",
	       "OVERLAY-V4", "OVERLAY-V6", "POD-CIDR", "ENDPOINTS", "LAST-ATTESTED");
	for (size_t i = 0; i < l->n; i++) {
		const struct member_entry *e = &l->members[i];

		iso_time(e->attested_at, when, sizeof(when));
		printf("%-6lld %-8s %-8s %-15s %-22s %-18s %-24s %s\n", (long long)e->peer.node_id,
		       e->active ? "active" : "revoked", e->policy_ok ? "ok" : "MISMATCH",
		       or_dash(e->peer.overlay_v4), or_dash(e->peer.overlay_v6),
		       or_dash(e->peer.pod_cidr), or_dash(e->peer.endpoints), when);
	}
}

static void print_verify_text(const struct admin_result *r, const struct status_view *v)
{
	char hex[65];

	hex_encode(v->cluster_id, CLUSTER_ID_LEN, hex);
	printf("cluster %s\n", hex);
	print_control_plane(r);
	if (r->ca_cert) {
		sha256_hex(r->ca_cert, r->ca_len, hex);
		printf("CA certificate sha256 %s\n", hex);
	}
	if (r->has_members) {
		printf("generation %llu\n\n", (unsigned long long)r->members.generation);
		print_members_table(&r->members);
		printf("\n");
	}
	if (v->verified)
		printf("verified: %u active members, %u revoked\n", v->active, v->revoked);
	else
		printf("NOT VERIFIED: %s\n", v->reason);
}

static void print_status_text(const struct admin_result *r, const struct status_view *v)
{
	char hex[65], when[32];

	hex_encode(v->cluster_id, CLUSTER_ID_LEN, hex);
	if (!v->verified) {
		printf("cluster %s: NOT VERIFIED: %s\n", hex, v->reason);
		if (attestation_ran(r) && !attested(r))
			print_failed_checks(&r->verdict);
		return;
	}
	printf("cluster %s: generation %llu, %u active, %u revoked\n", hex,
	       (unsigned long long)r->members.generation, v->active, v->revoked);
	for (size_t i = 0; i < r->members.n; i++) {
		const struct member_entry *e = &r->members.members[i];

		iso_time(e->attested_at, when, sizeof(when));
		printf("node %lld %s policy %s %s %s %s attested %s\n", (long long)e->peer.node_id,
		       e->active ? "active" : "revoked", e->policy_ok ? "ok" : "MISMATCH",
		       or_dash(e->peer.overlay_v4), or_dash(e->peer.overlay_v6),
		       or_dash(e->peer.pod_cidr), when);
	}
}

static json_object *endpoints_json(const char *s)
{
	json_object *a = json_object_new_array();

	while (*s) {
		size_t n = strcspn(s, ",");

		if (n)
			json_object_array_add(a, json_object_new_string_len(s, (int)n));
		s += n + (s[n] == ',');
	}
	return a;
}

static json_object *member_json(const struct member_entry *e)
{
	json_object *o = json_object_new_object();
	char when[32];

	json_object_object_add(o, "node_id", json_object_new_int64(e->peer.node_id));
	json_object_object_add(o, "active", json_object_new_boolean(e->active));
	json_object_object_add(o, "policy_ok", json_object_new_boolean(e->policy_ok));
	json_object_object_add(o, "ek", hex_json(e->ek_id, sizeof(e->ek_id)));
	json_object_object_add(o, "wg_pubkey", hex_json(e->peer.wg_pubkey, 32));
	json_object_object_add(o, "overlay_v4", json_object_new_string(e->peer.overlay_v4));
	json_object_object_add(o, "overlay_v6", json_object_new_string(e->peer.overlay_v6));
	json_object_object_add(o, "pod_cidr", json_object_new_string(e->peer.pod_cidr));
	json_object_object_add(o, "endpoints", endpoints_json(e->peer.endpoints));
	iso_time(e->joined_at, when, sizeof(when));
	json_object_object_add(o, "joined_at", json_object_new_string(when));
	iso_time(e->attested_at, when, sizeof(when));
	json_object_object_add(o, "attested_at", json_object_new_string(when));
	return o;
}

static void print_status_json(const struct admin_result *r, const struct status_view *v)
{
	json_object *root = json_object_new_object(), *cp = json_object_new_object();
	json_object *pcrs = json_object_new_object(), *failed = json_object_new_array();
	char hex[65], idx[4];

	json_object_object_add(root, "verified", json_object_new_boolean(v->verified));
	json_object_object_add(root, "reason",
			       v->verified ? NULL : json_object_new_string(v->reason));
	json_object_object_add(root, "cluster_id", hex_json(v->cluster_id, CLUSTER_ID_LEN));
	json_object_object_add(cp, "attested", json_object_new_boolean(attested(r)));
	json_object_object_add(cp, "ek",
			       attestation_ran(r) ? hex_json(r->ek_id, sizeof(r->ek_id)) : NULL);
	for (int i = 0; i < 24 && attested(r); i++) {
		if (!r->verdict.pcrs[i].in_policy)
			continue;
		snprintf(idx, sizeof(idx), "%d", i);
		json_object_object_add(pcrs, idx, hex_json(r->verdict.pcrs[i].actual, 32));
	}
	for (int c = 0; c < CHECK_COUNT; c++)
		if (r->verdict.checks[c].status == CHECK_FAIL)
			json_object_array_add(failed, json_object_new_string(verify_check_name(c)));
	json_object_object_add(cp, "pcrs", pcrs);
	json_object_object_add(cp, "failed_checks", failed);
	json_object_object_add(root, "control_plane", cp);
	if (r->ca_cert)
		sha256_hex(r->ca_cert, r->ca_len, hex);
	json_object_object_add(root, "ca_sha256", r->ca_cert ? json_object_new_string(hex) : NULL);
	json_object_object_add(
	    root, "generation",
	    r->has_members ? json_object_new_int64((int64_t)r->members.generation) : NULL);
	if (r->has_members) {
		json_object *members = json_object_new_array();

		for (size_t i = 0; i < r->members.n; i++)
			json_object_array_add(members, member_json(&r->members.members[i]));
		json_object_object_add(root, "members", members);
		json_object_object_add(root, "active", json_object_new_int64(v->active));
		json_object_object_add(root, "revoked", json_object_new_int64(v->revoked));
	} else {
		json_object_object_add(root, "members", json_object_new_array());
	}
	print_json(root);
	json_object_put(root);
}

static int run_status(const struct cluster_args *a, bool full)
{
	struct admin_request req = { .op = ADMIN_STATUS };
	struct admin_result out;
	struct status_view v = { 0 };
	struct diag d = { { 0 } };
	struct cluster c;
	int ret;

	ret = load_cluster(a->opt[O_CLUSTER], a->opt[O_JOIN], &c);
	if (ret != EXIT_OK)
		goto out;
	c.cfg.timeout_ms = a->timeout_ms;
	ret = admin_call(&c.cfg, &req, &out, &d);
	judge(ret, &out, &d, &c, &v);
	if (a->json)
		print_status_json(&out, &v);
	else if (full)
		print_verify_text(&out, &v);
	else
		print_status_text(&out, &v);
	if (!v.verified && a->json)
		fprintf(stderr, "conclavectl: cluster not verified: %s\n", v.reason);
	ret = v.verified ? EXIT_OK : EXIT_REFUSED;
	admin_result_clear(&out);
out:
	cluster_free(&c);
	return ret;
}

static int run_verify(const struct cluster_args *a)
{
	return run_status(a, true);
}

static int run_cluster_status(const struct cluster_args *a)
{
	return run_status(a, false);
}

/* ---- init and recover --------------------------------------------------------------------- */

/* The identity of the cluster a master secret makes, and its CA certificate's fingerprint. */
static int cluster_identity(const struct kms *k, uint8_t id[CLUSTER_ID_LEN], char fp[65])
{
	struct cluster_ca *ca = NULL;
	struct diag d = { { 0 } };
	const uint8_t *der;
	size_t len;

	if (cluster_ca_derive(k, &ca, &d) < 0) {
		fprintf(stderr, "conclavectl: deriving the cluster CA: %s\n", d.msg);
		return -EINVAL;
	}
	cluster_ca_id(ca, id);
	cluster_ca_cert(ca, &der, &len);
	if (fp)
		sha256_hex(der, len, fp);
	cluster_ca_free(ca);
	return 0;
}

enum outcome { TOOK_IT, REFUSED_IT, UNKNOWN };

/* Whether admin_call stopped at a pin (and so sent nothing). */
static bool pin_refused(const struct admin_config *cfg, const struct admin_result *r)
{
	return (cfg->expect_ek && memcmp(cfg->expect_ek, r->ek_id, 32) != 0) ||
	       (cfg->expect_cluster &&
		(!r->has_cluster_id || memcmp(cfg->expect_cluster, r->cluster_id, 32) != 0));
}

/* The request may have reached the join service but no verified answer came back: ask again
 * in a new session pinned to the EK and to the cluster our secret makes. Only an attested,
 * signed answer for that cluster counts as "it took it". */
static bool confirm_master(const struct cluster *c, const uint8_t *ek,
			   const uint8_t id[CLUSTER_ID_LEN], uint8_t ek_out[32], struct diag *why)
{
	struct admin_config cfg = c->cfg;
	struct admin_request req = { .op = ADMIN_STATUS };
	struct admin_result out;
	bool took;

	cfg.expect_ek = ek;
	cfg.expect_cluster = id;
	took = admin_call(&cfg, &req, &out, why) == 0 && out.code == WIRE_OK && out.has_members;
	if (took)
		memcpy(ek_out, out.ek_id, 32);
	else if (!why->msg[0])
		snprintf(why->msg, sizeof(why->msg), "%s: %s", wire_code_name(out.code), out.text);
	admin_result_clear(&out);
	return took;
}

struct init_paths {
	char cp_policy[PATH_MAX], policy_key[PATH_MAX], ek_roots[PATH_MAX];
};

static int absolute_paths(const struct cluster_args *a, struct init_paths *p)
{
	const char *in[] = { a->opt[O_CP_POLICY], a->opt[O_POLICY_KEY], a->opt[O_EK_ROOTS] };
	char *out[] = { p->cp_policy, p->policy_key, p->ek_roots };

	for (size_t i = 0; i < ARRAY_SIZE(in); i++)
		if (!realpath(in[i], out[i])) {
			fprintf(stderr, "conclavectl: cannot resolve %s: %s\n", in[i],
				strerror(errno));
			return -errno;
		}
	return 0;
}

static char *cluster_file_text(const char *join, const uint8_t id[CLUSTER_ID_LEN],
			       const uint8_t ek[32], const struct init_paths *p)
{
	json_object *o = json_object_new_object();
	char *text;

	json_object_object_add(o, "conclave-cluster", json_object_new_int(CLUSTER_FILE_VERSION));
	json_object_object_add(o, "join", json_object_new_string(join));
	json_object_object_add(o, "cluster_id", hex_json(id, CLUSTER_ID_LEN));
	json_object_object_add(o, "control_plane_ek", hex_json(ek, 32));
	json_object_object_add(o, "control_plane_policy", json_object_new_string(p->cp_policy));
	json_object_object_add(o, "policy_key", json_object_new_string(p->policy_key));
	json_object_object_add(o, "ek_roots", json_object_new_string(p->ek_roots));
	if (asprintf(&text, "%s\n",
		     json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							   JSON_C_TO_STRING_NOSLASHESCAPE)) < 0)
		text = NULL;
	json_object_put(o);
	return text;
}

static void print_init_result(const struct cluster_args *a, const uint8_t id[CLUSTER_ID_LEN],
			      const char *fp, const uint8_t ek[32])
{
	char id_hex[65], ek_hex[65];

	hex_encode(id, CLUSTER_ID_LEN, id_hex);
	hex_encode(ek, 32, ek_hex);
	if (a->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "cluster_id", json_object_new_string(id_hex));
		json_object_object_add(o, "ca_sha256", json_object_new_string(fp));
		json_object_object_add(o, "control_plane_ek", json_object_new_string(ek_hex));
		json_object_object_add(o, "recovery",
				       json_object_new_string(a->opt[O_RECOVERY_OUT]));
		json_object_object_add(o, "cluster_file",
				       json_object_new_string(a->opt[O_CLUSTER_OUT]));
		print_json(o);
		json_object_put(o);
		return;
	}
	printf("cluster %s\n"
	       "CA certificate sha256 %s\n"
	       "control plane EK %s\n"
	       "cluster file: %s (give it to 'conclavectl verify --cluster')\n"
	       "recovery secret: %s (mode 0600)\n"
	       "  It holds the cluster's master secret: keep it offline. It is the only way to\n"
	       "  bring the cluster back after the control plane restarts ('conclavectl "
	       "recover').\n",
	       id_hex, fp, ek_hex, a->opt[O_CLUSTER_OUT], a->opt[O_RECOVERY_OUT]);
}

/* Send the master secret; whether the join service took it (TOOK_IT fills ek). REFUSED_IT only
 * when it certainly did not: it refused, or the request was never sent. */
static enum outcome send_master(const struct cluster *c, uint16_t op, const struct kms *k,
				const uint8_t id[CLUSTER_ID_LEN], uint8_t ek[32])
{
	struct admin_request req = { .op = op, .key_material = k->keys };
	const char *what = op == ADMIN_INIT ? "init" : "recover";
	struct admin_result out;
	struct diag d = { { 0 } }, again = { { 0 } };
	char have[65], want[65];
	enum outcome o = UNKNOWN;
	int ret;

	/* On success admin_call has asked again in a new session, which binds the cluster
	 * identity: out describes that one. */
	ret = admin_call(&c->cfg, &req, &out, &d);
	if (ret == 0 && out.code == WIRE_OK) {
		if (out.has_cluster_id && !memcmp(out.cluster_id, id, CLUSTER_ID_LEN)) {
			memcpy(ek, out.ek_id, 32);
			o = TOOK_IT;
		} else {
			hex_encode(id, CLUSTER_ID_LEN, want);
			hex_encode(out.cluster_id, CLUSTER_ID_LEN, have);
			fprintf(stderr,
				"conclavectl: %s: the join service accepted, but then serves "
				"cluster %s, not %s (the one this secret makes)\n",
				what, out.has_cluster_id ? have : "(none)", want);
		}
	} else if (ret == 0) {
		fprintf(stderr, "conclavectl: %s refused by the join service (%s): %s\n", what,
			wire_code_name(out.code), out.text[0] ? out.text : "no reason given");
		o = REFUSED_IT;
	} else if (!attested(&out) || pin_refused(&c->cfg, &out)) {
		/* Nothing was sent: the request goes out only to an attested, pinned service. */
		print_call_failure(what, &out, &d);
		o = REFUSED_IT;
	} else if (confirm_master(c, c->cfg.expect_ek ? c->cfg.expect_ek : out.ek_id, id, ek,
				  &again)) {
		o = TOOK_IT;
	} else {
		print_call_failure(what, &out, &d);
		fprintf(stderr, "conclavectl: %s: asking the join service again: %s\n", what,
			again.msg);
	}
	admin_result_clear(&out);
	return o;
}

/* Refuse before contacting anything if the cluster file could not be written afterwards. */
static bool cluster_out_unusable(const char *path)
{
	char dir[PATH_MAX];
	struct stat st;

	if (lstat(path, &st) == 0) {
		fprintf(stderr, "conclavectl: cluster file %s exists; init never overwrites it\n",
			path);
		return true;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	if (access(dirname(dir), W_OK) < 0) {
		fprintf(stderr, "conclavectl: cannot create the cluster file %s: %s\n", path,
			strerror(errno));
		return true;
	}
	return false;
}

static int run_init(const struct cluster_args *a)
{
	const char *rec = a->opt[O_RECOVERY_OUT], *cluster_out = a->opt[O_CLUSTER_OUT];
	_cleanup_kms_ struct kms *k = NULL;
	uint8_t id[CLUSTER_ID_LEN], ek[32];
	struct init_paths paths;
	struct diag d = { { 0 } };
	struct cluster c = { 0 };
	char fp[65], *text = NULL;
	struct stat st;
	int ret = EXIT_USAGE;

	if (set_address(&c, a->opt[O_JOIN]) < 0)
		goto out;
	if (cluster_out_unusable(cluster_out))
		goto out;
	ret = load_trust(&c, a->opt[O_CP_POLICY], a->opt[O_POLICY_KEY], a->opt[O_EK_ROOTS]);
	if (ret == EXIT_OK)
		ret = load_operator_key(&c, a->opt[O_OPERATOR_KEY]);
	if (ret != EXIT_OK)
		goto out;
	ret = EXIT_USAGE;
	if (absolute_paths(a, &paths) < 0)
		goto out;
	c.cfg.timeout_ms = a->timeout_ms;
	ret = EXIT_REFUSED;
	if (kms_new_random(&k, &d) < 0) {
		fprintf(stderr, "conclavectl: %s\n", d.msg);
		goto out;
	}
	if (cluster_identity(k, id, fp) < 0)
		goto out;
	/* The operator's copy exists before the join service ever holds the secret. */
	if (kms_recovery_write(k, rec, &d) < 0) {
		fprintf(stderr, "conclavectl: %s\n", d.msg);
		ret = EXIT_USAGE;
		goto out;
	}
	if (lstat(cluster_out, &st) == 0) { /* the same file under another name */
		unlink(rec);
		fprintf(stderr, "conclavectl: --cluster-out and --recovery-out name one file\n");
		ret = EXIT_USAGE;
		goto out;
	}
	switch (send_master(&c, ADMIN_INIT, k, id, ek)) {
	case TOOK_IT: break;
	case REFUSED_IT:
		unlink(rec);
		fprintf(stderr, "conclavectl: init failed; removed the unused recovery file %s\n",
			rec);
		goto out;
	case UNKNOWN:
		fprintf(stderr,
			"conclavectl: init: cannot tell whether the join service took the new "
			"master secret; %s is kept: if it did, that file is the only copy\n",
			rec);
		goto out;
	}
	text = cluster_file_text(c.join, id, ek, &paths);
	if (!text) {
		fprintf(stderr, "conclavectl: out of memory\n");
		goto out;
	}
	ret = write_file_new(cluster_out, text, strlen(text), 0644);
	if (ret < 0) {
		fprintf(
		    stderr,
		    "conclavectl: the cluster is initialised, but the cluster file %s cannot be "
		    "written (%s); save this as the cluster file:\n%s",
		    cluster_out, strerror(-ret), text);
		ret = EXIT_REFUSED;
		goto out;
	}
	print_init_result(a, id, fp, ek);
	ret = EXIT_OK;
out:
	free(text);
	cluster_free(&c);
	return ret;
}

static int run_recover(const struct cluster_args *a)
{
	_cleanup_kms_ struct kms *k = NULL;
	uint8_t id[CLUSTER_ID_LEN], ek[32];
	char have[65], want[65];
	struct diag d = { { 0 } };
	struct cluster c;
	int ret;

	ret = load_cluster(a->opt[O_CLUSTER], a->opt[O_JOIN], &c);
	if (ret == EXIT_OK)
		ret = load_operator_key(&c, a->opt[O_OPERATOR_KEY]);
	if (ret != EXIT_OK)
		goto out;
	ret = EXIT_USAGE;
	if (kms_recovery_read(a->opt[O_RECOVERY], &k, &d) < 0) {
		fprintf(stderr, "conclavectl: recovery file %s: %s\n", a->opt[O_RECOVERY], d.msg);
		goto out;
	}
	ret = EXIT_REFUSED;
	if (cluster_identity(k, id, NULL) < 0)
		goto out;
	/* Another cluster's master secret never leaves this machine. */
	if (memcmp(id, c.id, CLUSTER_ID_LEN) != 0) {
		hex_encode(id, CLUSTER_ID_LEN, have);
		hex_encode(c.id, CLUSTER_ID_LEN, want);
		fprintf(stderr,
			"conclavectl: the recovery file %s holds the master secret of cluster %s, "
			"not of cluster %s (%s); nothing was sent\n",
			a->opt[O_RECOVERY], have, want, a->opt[O_CLUSTER]);
		goto out;
	}
	/* Before recovery the join service serves no cluster: only its EK can be pinned. */
	c.cfg.expect_cluster = NULL;
	c.cfg.timeout_ms = a->timeout_ms;
	if (send_master(&c, ADMIN_RECOVER, k, id, ek) != TOOK_IT)
		goto out;
	hex_encode(id, CLUSTER_ID_LEN, have);
	printf("recovered: the join service holds the master secret of cluster %s again\n", have);
	ret = EXIT_OK;
out:
	cluster_free(&c);
	return ret;
}

/* ---- revoke, replace-disk and set-policy -------------------------------------------------- */

/* A changing request: 0 with out filled when the join service did it, else the exit code. */
static int change(const struct cluster *c, const char *what, const struct admin_request *req,
		  struct admin_result *out)
{
	struct diag d = { { 0 } };
	int ret = admin_call(&c->cfg, req, out, &d);

	if (ret < 0) {
		print_call_failure(what, out, &d);
		return EXIT_REFUSED;
	}
	if (out->code != WIRE_OK) {
		fprintf(stderr, "conclavectl: %s refused by the join service (%s): %s\n", what,
			wire_code_name(out->code), out->text[0] ? out->text : "no reason given");
		return EXIT_REFUSED;
	}
	return EXIT_OK;
}

/* A node id as the join service numbers members: a positive integer. */
static int parse_node_id(const char *s, int64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	if (errno || end == s || *end || *out < 1) {
		fprintf(stderr, "conclavectl: bad node id '%s': want a positive integer\n", s);
		return -EINVAL;
	}
	return 0;
}

/* One operator change to node `id` (revoke, replace-disk): attest, sign, send. */
static int change_node(const struct cluster_args *a, const char *id, enum admin_op op,
		       const char *what, struct admin_request *req, struct admin_result *out)
{
	struct cluster c;
	int ret;

	req->op = op;
	if (parse_node_id(id, &req->node_id) < 0)
		return EXIT_USAGE;
	ret = load_cluster(a->opt[O_CLUSTER], a->opt[O_JOIN], &c);
	if (ret == EXIT_OK)
		ret = load_operator_key(&c, a->opt[O_OPERATOR_KEY]);
	if (ret == EXIT_OK) {
		c.cfg.timeout_ms = a->timeout_ms;
		ret = change(&c, what, req, out);
	}
	cluster_free(&c);
	return ret;
}

static int run_revoke(const struct cluster_args *a)
{
	struct admin_request req = { 0 };
	struct admin_result out = { 0 };
	int ret = change_node(a, a->operand, ADMIN_REVOKE, "revoke", &req, &out);

	if (ret == EXIT_OK)
		printf("node %lld revoked; generation %llu\n", (long long)req.node_id,
		       (unsigned long long)out.generation);
	admin_result_clear(&out);
	return ret;
}

static int run_replace_disk(const struct cluster_args *a)
{
	struct admin_request req = { 0 };
	struct admin_result out = { 0 };
	int ret = change_node(a, a->opt[O_NODE], ADMIN_REPLACE_DISK, "replace-disk", &req, &out);

	if (ret == EXIT_OK)
		printf(
		    "node %lld's disk released: its old disk's key is never given out again; the "
		    "node's next join binds the disk it presents (boot it with a blank disk)\n",
		    (long long)req.node_id);
	admin_result_clear(&out);
	return ret;
}

static int run_set_policy(const struct cluster_args *a)
{
	struct admin_request req = { .op = ADMIN_POLICY };
	struct admin_result out = { 0 };
	uint8_t *pol = NULL;
	struct cluster c;
	size_t len;
	int ret;

	ret = load_cluster(a->opt[O_CLUSTER], a->opt[O_JOIN], &c);
	if (ret == EXIT_OK)
		ret = load_operator_key(&c, a->opt[O_OPERATOR_KEY]);
	if (ret == EXIT_OK &&
	    read_input("node policy", a->operand, POLICY_MAX_SIZE, &pol, &len) < 0)
		ret = EXIT_USAGE;
	if (ret == EXIT_OK) {
		req.policy = pol;
		req.policy_len = len;
		c.cfg.timeout_ms = a->timeout_ms;
		ret = change(&c, "set-policy", &req, &out);
	}
	if (ret == EXIT_OK) {
		printf("%s\n", out.text[0] ? out.text : "policy installed");
		for (size_t i = 0; out.has_members && i < out.members.n; i++) {
			const struct member_entry *e = &out.members.members[i];

			if (!e->policy_ok)
				printf("  node %lld (%s) does not match the policy\n",
				       (long long)e->peer.node_id,
				       e->active ? "active" : "revoked");
		}
	}
	admin_result_clear(&out);
	free(pol);
	cluster_free(&c);
	return ret;
}

/* ---- the commands ------------------------------------------------------------------------- */

#define CONNECT_OPTS (BIT(O_CLUSTER) | BIT(O_JOIN) | BIT(O_TIMEOUT))

static const char init_usage[] =
    "usage: conclavectl init --join HOST:PORT --cp-policy FILE --policy-key FILE\n"
    "                        --ek-roots FILE --operator-key FILE --recovery-out FILE\n"
    "                        --cluster-out FILE [--timeout-ms N] [--json]\n"
    "Start a new cluster on a fresh join service: attest it against the control-plane\n"
    "policy, generate the cluster's master secret here, write it to the recovery file,\n"
    "then hand it over the attested channel with the operator's signature.\n\n"
    "  --join HOST:PORT     the join service (numeric address)\n"
    "  --cp-policy FILE     signed measurements policy the control plane must satisfy\n"
    "  --policy-key FILE    Ed25519 public key (PEM) that signed it\n"
    "  --ek-roots FILE      PEM bundle of EK manufacturer roots for its TPM\n"
    "  --operator-key FILE  the operator's Ed25519 private key (PEM); the join service\n"
    "                       knows its public half (conclave-joind --operator-key)\n"
    "  --recovery-out FILE  new file (0600, never overwritten) for the master secret;\n"
    "                       keep it offline: it is the only way to recover the cluster\n"
    "  --cluster-out FILE   new file (0644) for the cluster's identity and pins, what\n"
    "                       every other cluster command reads with --cluster\n"
    "  --timeout-ms N       deadline per message and handshake (default 10000)\n"
    "  --json               print the result as JSON\n" EXIT_HELP;

static const char verify_usage[] =
    "usage: conclavectl verify --cluster FILE [--join HOST:PORT] [--timeout-ms N] [--json]\n"
    "Verify the whole cluster: the join service attests against the control-plane policy\n"
    "with the pinned EK and binds the pinned cluster identity; its member list must be\n"
    "signed by that cluster's CA for this session. Prints the control plane's PCRs, the\n"
    "CA certificate's fingerprint and every member.\n\n" CONNECT_HELP
    "  --json               print everything as one JSON object\n" EXIT_HELP;

static const char status_usage[] =
    "usage: conclavectl cluster-status --cluster FILE [--join HOST:PORT] [--timeout-ms N]\n"
    "                                  [--json]\n"
    "The checks of 'conclavectl verify', one line per member.\n\n" CONNECT_HELP
    "  --json               print everything as one JSON object\n" EXIT_HELP;

static const char recover_usage[] =
    "usage: conclavectl recover --cluster FILE --operator-key FILE --recovery FILE\n"
    "                           [--join HOST:PORT] [--timeout-ms N]\n"
    "Give a restarted join service its cluster's master secret back. The recovery file\n"
    "must hold this cluster's secret (checked here first); the join service must be the\n"
    "pinned control plane, and checks the secret against its store.\n\n" CONNECT_HELP
    "  --operator-key FILE  the operator's Ed25519 private key (PEM)\n"
    "  --recovery FILE      the recovery file 'conclavectl init' wrote\n" EXIT_HELP;

static const char revoke_usage[] =
    "usage: conclavectl revoke --cluster FILE --operator-key FILE [--join HOST:PORT]\n"
    "                          [--timeout-ms N] NODE_ID\n"
    "Remove a member: its peers drop it with the next peer-set generation.\n\n" CONNECT_HELP
    "  --operator-key FILE  the operator's Ed25519 private key (PEM)\n" EXIT_HELP;

static const char replace_disk_usage[] =
    "usage: conclavectl replace-disk --cluster FILE --operator-key FILE [--join HOST:PORT]\n"
    "                                [--timeout-ms N] --node ID\n"
    "Re-register a member's state disk after it was wiped or replaced: the join service\n"
    "retires the disk the node registered (its key is never given out again, to anyone)\n"
    "and binds the disk the node presents at its next attested join, which must pass\n"
    "every check a rejoin passes. The node then formats its new disk. Run it only for a\n"
    "disk that is gone: data on the old disk can no longer be unlocked. Refused for a\n"
    "revoked node.\n\n" CONNECT_HELP
    "  --operator-key FILE  the operator's Ed25519 private key (PEM)\n"
    "  --node ID            the member's node id (conclavectl cluster-status)\n" EXIT_HELP;

static const char set_policy_usage[] =
    "usage: conclavectl set-policy --cluster FILE --operator-key FILE [--join HOST:PORT]\n"
    "                              [--timeout-ms N] POLICY_FILE\n"
    "Replace the node policy: POLICY_FILE is a signed policy ('conclavectl policy sign')\n"
    "by the key the join service trusts for node policies. Lists the members that do\n"
    "not match it.\n\n" CONNECT_HELP
    "  --operator-key FILE  the operator's Ed25519 private key (PEM)\n" EXIT_HELP;

#define INIT_OPTS                                                               \
	(BIT(O_JOIN) | BIT(O_CP_POLICY) | BIT(O_POLICY_KEY) | BIT(O_EK_ROOTS) | \
	 BIT(O_OPERATOR_KEY) | BIT(O_RECOVERY_OUT) | BIT(O_CLUSTER_OUT))

static const struct cluster_cmd init_cmd = {
	.name = "init",
	.usage = init_usage,
	.allowed = INIT_OPTS | BIT(O_TIMEOUT) | BIT(O_JSON),
	.required = INIT_OPTS,
	.run = run_init,
};

static const struct cluster_cmd verify_cmd = {
	.name = "verify",
	.usage = verify_usage,
	.allowed = CONNECT_OPTS | BIT(O_JSON),
	.required = BIT(O_CLUSTER),
	.run = run_verify,
};

static const struct cluster_cmd status_cmd = {
	.name = "cluster-status",
	.usage = status_usage,
	.allowed = CONNECT_OPTS | BIT(O_JSON),
	.required = BIT(O_CLUSTER),
	.run = run_cluster_status,
};

static const struct cluster_cmd recover_cmd = {
	.name = "recover",
	.usage = recover_usage,
	.allowed = CONNECT_OPTS | BIT(O_OPERATOR_KEY) | BIT(O_RECOVERY),
	.required = BIT(O_CLUSTER) | BIT(O_OPERATOR_KEY) | BIT(O_RECOVERY),
	.run = run_recover,
};

static const struct cluster_cmd revoke_cmd = {
	.name = "revoke",
	.usage = revoke_usage,
	.allowed = CONNECT_OPTS | BIT(O_OPERATOR_KEY),
	.required = BIT(O_CLUSTER) | BIT(O_OPERATOR_KEY),
	.operand = true,
	.run = run_revoke,
};

static const struct cluster_cmd replace_disk_cmd = {
	.name = "replace-disk",
	.usage = replace_disk_usage,
	.allowed = CONNECT_OPTS | BIT(O_OPERATOR_KEY) | BIT(O_NODE),
	.required = BIT(O_CLUSTER) | BIT(O_OPERATOR_KEY) | BIT(O_NODE),
	.run = run_replace_disk,
};

static const struct cluster_cmd set_policy_cmd = {
	.name = "set-policy",
	.usage = set_policy_usage,
	.allowed = CONNECT_OPTS | BIT(O_OPERATOR_KEY),
	.required = BIT(O_CLUSTER) | BIT(O_OPERATOR_KEY),
	.operand = true,
	.run = run_set_policy,
};

static int usage_error(const struct cluster_cmd *cmd)
{
	fputs(cmd->usage, stderr);
	return EXIT_USAGE;
}

static int parse_timeout(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 3600000) {
		fprintf(stderr, "conclavectl: bad --timeout-ms '%s': want 1 to 3600000\n", s);
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int cluster_main(const struct cluster_cmd *cmd, int argc, char **argv)
{
	struct cluster_args a = { 0 };
	int c;

	optind = 1;
	opterr = 0; /* our own messages, with our prefix */
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		unsigned int o = (unsigned int)c - 256;

		if (c == 'h') {
			fputs(cmd->usage, stdout);
			return EXIT_OK;
		}
		if (c < 256 || o >= O_COUNT || !(cmd->allowed & BIT(o))) {
			if (c >= 256 && o < O_COUNT)
				fprintf(stderr, "conclavectl: %s takes no --%s\n", cmd->name,
					long_opts[o].name);
			else
				fprintf(stderr,
					"conclavectl: %s: unknown option or missing value: %s\n",
					cmd->name, argv[optind - 1]);
			return usage_error(cmd);
		}
		a.opt[o] = optarg ? optarg : "";
	}
	for (unsigned int o = 0; o < O_COUNT; o++)
		if ((cmd->required & BIT(o)) && !a.opt[o]) {
			fprintf(stderr, "conclavectl: %s needs --%s\n", cmd->name,
				long_opts[o].name);
			return usage_error(cmd);
		}
	if (optind != argc - (cmd->operand ? 1 : 0)) {
		fprintf(stderr, "conclavectl: %s takes %s\n", cmd->name,
			cmd->operand ? "one argument after its options" : "no arguments");
		return usage_error(cmd);
	}
	if (cmd->operand)
		a.operand = argv[optind];
	if (a.opt[O_TIMEOUT] && parse_timeout(a.opt[O_TIMEOUT], &a.timeout_ms) < 0)
		return EXIT_USAGE;
	a.json = a.opt[O_JSON] != NULL;
	return cmd->run(&a);
}

int cmd_init(int argc, char **argv)
{
	return cluster_main(&init_cmd, argc, argv);
}

int cmd_verify(int argc, char **argv)
{
	return cluster_main(&verify_cmd, argc, argv);
}

int cmd_cluster_status(int argc, char **argv)
{
	return cluster_main(&status_cmd, argc, argv);
}

int cmd_recover(int argc, char **argv)
{
	return cluster_main(&recover_cmd, argc, argv);
}

int cmd_revoke(int argc, char **argv)
{
	return cluster_main(&revoke_cmd, argc, argv);
}

int cmd_replace_disk(int argc, char **argv)
{
	return cluster_main(&replace_disk_cmd, argc, argv);
}

int cmd_set_policy(int argc, char **argv)
{
	return cluster_main(&set_policy_cmd, argc, argv);
}
