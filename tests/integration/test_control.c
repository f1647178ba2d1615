// SPDX-License-Identifier: Apache-2.0
/* The control plane as an operator and its agents see it: the real conclave-joind (its own
 * swtpm) starts without a master secret; the operator inits it over attested TLS; nodes (each
 * with its own swtpm) join and hold their sessions; peer sets converge and a revocation reaches
 * everyone; a node whose disk the operator released binds a new one, and the old disk's key is
 * gone; the member list verifies against the attested control plane; a new policy with
 * --enforce revokes who no longer matches; a control plane on a swapped TPM fails verify; and
 * a restarted one waits for `recover`. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "attest_fixture.h"
#include "joind_proc.h"
#include "conclave/admin.h"
#include "conclave/agent.h"
#include "conclave/atls.h"
#include "conclave/joinclient.h"
#include "conclave/kms.h"
#include "conclave/net.h"
#include "conclave/tpm.h"
#include "conclave/util.h"

#define N_NODES	 4 /* A, B, C boot the golden image; D booted another kernel */
#define NODE_NEW 3
#define JOIND_MS test_ms(3000)
#define PUSH_MS	 1000 /* what the issue promises for a change to reach every agent */

struct node {
	struct fixture fx;
	uint8_t wg[32], uuid[16];
	char endpoint[32];
	struct join_info info;
	struct joinclient_session *sess;
	int last;   /* last joinclient_next result that ended the session, 0 while open */
	int64_t id; /* from its first join */
};

static struct fixture cp, swapped; /* the control plane's TPM, and another one */
static struct node nodes[N_NODES];
static char dir[] = "/tmp/conclave-control-XXXXXX";
static char db_path[PATH_MAX], policy_path[PATH_MAX], pub_path[PATH_MAX], ca_path[PATH_MAX],
    port_path[PATH_MAX], log_path[PATH_MAX], op_pub[PATH_MAX];
static EVP_PKEY *operator_key, *intruder_key, *policy_key;
static X509_STORE *cp_roots; /* both control-plane TPMs' roots: only the EK pin tells them apart */
static struct kms *master;   /* what the operator sent at init, and sends again to recover */
static uint8_t cluster_id[32], cp_ek[32];
static pid_t joind_pid = -1;
static uint16_t joind_port;

static void print_joind_log(void)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (read_file(log_path, 1u << 20, &buf, &len) == 0) {
		char *tail = (char *)buf + (len > 3000 ? len - 3000 : 0), *save = NULL;

		print_message("# --- conclave-joind log (tail):\n");
		for (char *l = strtok_r(tail, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
			print_message("#   %s\n", l);
	}
	free(buf);
}

static void __attribute__((noreturn)) failed(void)
{
	print_joind_log();
	fail();
	abort();
}

#define check(cond, ...)                                                             \
	do {                                                                         \
		if (!(cond)) {                                                       \
			print_message("# %s:%d: %s\n# ", __FILE__, __LINE__, #cond); \
			print_message(__VA_ARGS__);                                  \
			print_message("\n");                                         \
			failed();                                                    \
		}                                                                    \
	} while (0)

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- the join service -------------------------------------------------------------------- */

static int reattest_deadline_s = -1; /* never, until the test of the deadline */
static char recovery_path[PATH_MAX];

static void joind_start(struct fixture *tpm)
{
	const struct joind_args a = {
		.port_file = port_path,
		.log_file = log_path,
		.tcti = tpm->tpm.tcti,
		.ak_state = tpm->ak_state,
		.event_log = tpm->log_path,
		.ek_chain = tpm->tpm.issuer,
		.node_policy = policy_path,
		.policy_key = pub_path,
		.ca = ca_path,
		.db = db_path,
		.operator_key = op_pub,
		.enforce = true,
		.reattest_deadline_s = reattest_deadline_s,
		.recovery = recovery_path[0] ? recovery_path : NULL,
		.overlay_v4 = "10.100.0.0/16",
		.overlay_v6 = "fd00:100::/64",
		.pod_pool = "10.244.0.0/16",
		.workers = 4,
		.timeout_ms = JOIND_MS,
		.verbose = true,
	};
	const char *why = NULL;

	joind_pid = joind_proc_start(&a, 20000, &joind_port, &why);
	check(joind_pid > 0, "%s (log: %s)", why, log_path);
}

static void joind_stop(void)
{
	int status = 0;

	kill(joind_pid, SIGTERM);
	check(waitpid(joind_pid, &status, 0) == joind_pid, "waitpid");
	joind_pid = -1;
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "joind status 0x%x", status);
}

/* ---- the operator ------------------------------------------------------------------------ */

static int call(uint16_t op, int64_t node_id, EVP_PKEY *signer, bool pin, const uint8_t *policy,
		size_t policy_len, struct admin_result *out, struct diag *d)
{
	struct admin_config c = {
		.host = "127.0.0.1",
		.port = joind_port,
		.timeout_ms = JOIND_MS,
		.cp_policy = &cp.policy,
		.cp_ca = cp_roots,
		.operator_key = signer,
		.expect_ek = pin ? cp_ek : NULL,
		.expect_cluster = pin ? cluster_id : NULL,
	};
	struct admin_request r = { .op = op,
				   .node_id = node_id,
				   .key_material = op == ADMIN_INIT || op == ADMIN_RECOVER
						       ? master->keys
						       : NULL,
				   .policy = policy,
				   .policy_len = policy_len };

	memset(d, 0, sizeof(*d));
	return admin_call(&c, &r, out, d);
}

static const struct member_entry *member(const struct admin_result *r, int64_t id)
{
	for (size_t i = 0; i < r->members.n; i++)
		if (r->members.members[i].peer.node_id == id)
			return &r->members.members[i];
	return NULL;
}

/* ---- nodes ------------------------------------------------------------------------------- */

static int node_subscribe(struct node *n, struct diag *d)
{
	struct joinclient_config c = {
		.host = "127.0.0.1",
		.port = joind_port,
		.connect_timeout_ms = test_ms(2000),
		.timeout_ms = test_ms(5000),
		.cp_policy = &cp.policy,
		.cp_ca = cp_roots,
		.attest = { .tcti = n->fx.tpm.tcti,
			    .ak_state = n->fx.ak_state,
			    .pcr_mask = NODE_QUOTE_PCRS,
			    /* D's extra kernel measurement has no log event: it sends no log,
			       and the policy alone judges its PCRs. */
			    .event_log = n == &nodes[NODE_NEW] ? NULL : n->fx.log_path,
			    .ek_chain = n->fx.tpm.issuer },
		.wg_pubkey = n->wg,
		.disk_uuid = n->uuid,
		.endpoints = { n->endpoint },
		.n_endpoints = 1,
	};

	memset(d, 0, sizeof(*d));
	joinclient_close(n->sess);
	n->sess = NULL;
	join_info_clear(&n->info);
	n->last = 0;
	return joinclient_subscribe(&c, &n->info, &n->sess, d);
}

static void subscribe_ok(struct node *n)
{
	struct diag d;
	int ret = node_subscribe(n, &d);

	check(ret == 0, "%s: join failed (%d): %s", n->endpoint, ret, d.msg);
	check(!memcmp(n->info.cluster_id, cluster_id, 32), "%s joined another cluster",
	      n->endpoint);
	check(!n->id || n->id == n->info.view.self.node_id, "%s came back as node %lld, was %lld",
	      n->endpoint, (long long)n->info.view.self.node_id, (long long)n->id);
	n->id = n->info.view.self.node_id;
}

static int64_t id_of(const struct node *n)
{
	return n->id;
}

static bool sees(const struct node *n, int64_t id)
{
	for (size_t i = 0; i < n->info.view.n_peers; i++)
		if (n->info.view.peers[i].node_id == id)
			return true;
	return false;
}

/* Read every open session's updates for up to ms, until done() holds. */
static bool pump_until(bool (*done)(void), int ms)
{
	int64_t deadline = now_ms() + ms;

	do {
		for (int i = 0; i < N_NODES; i++) {
			struct node *n = &nodes[i];
			struct diag d;
			int ret;

			if (!n->sess || n->last)
				continue;
			ret = joinclient_next(n->sess, &n->info.view, 10, &d);
			if (ret < 0) {
				n->last = ret;
				print_message("# %s: session ended (%d): %s\n", n->endpoint, ret,
					      d.msg);
			}
		}
		if (done())
			return true;
	} while (now_ms() < deadline);
	return done();
}

static int reattest(struct node *n, const uint8_t wg[32], int64_t wait_ms, struct diag *d);

/* ---- scenarios --------------------------------------------------------------------------- */

static void nodes_wait_until_the_operator_inits(void **state)
{
	struct admin_result r;
	struct diag d;
	int ret = node_subscribe(&nodes[0], &d);

	check(ret == -EAGAIN, "join before init returned %d: %s", ret, d.msg);
	check(strstr(d.msg, "init"), "the refusal does not tell what to do: %s", d.msg);
	ret = call(ADMIN_STATUS, 0, NULL, false, NULL, 0, &r, &d);
	check(ret == 0, "status: %s", d.msg);
	check(r.code == WIRE_NOT_READY && !r.has_cluster_id && !r.has_members,
	      "an uninitialised control plane answered code %u", r.code);
	admin_result_clear(&r);
}

static void init_signed_by_another_key_is_refused(void **state)
{
	struct admin_result r;
	struct diag d;

	check(call(ADMIN_INIT, 0, intruder_key, false, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(r.code == WIRE_REFUSED && strstr(r.text, "operator"),
	      "init by another key: code %u, %s", r.code, r.text);
	admin_result_clear(&r);
	check(call(ADMIN_STATUS, 0, NULL, false, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(r.code == WIRE_NOT_READY, "the refused init changed the service: code %u", r.code);
	admin_result_clear(&r);
}

static void init_installs_the_master_and_binds_the_cluster_identity(void **state)
{
	struct admin_result r;
	struct diag d;

	check(call(ADMIN_INIT, 0, operator_key, false, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(r.code == WIRE_OK, "init: code %u: %s", r.code, r.text);
	check(r.has_cluster_id && r.ca_cert && r.has_members && r.members.n == 0,
	      "init answer lacks the identity, CA or (empty) member list");
	memcpy(cluster_id, r.cluster_id, 32);
	memcpy(cp_ek, r.ek_id, 32);
	admin_result_clear(&r);
	/* A second init would hand the cluster to whoever sent it. */
	check(call(ADMIN_INIT, 0, operator_key, true, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(r.code == WIRE_REFUSED && strstr(r.text, "already"), "second init: code %u, %s",
	      r.code, r.text);
	check(!memcmp(r.cluster_id, cluster_id, 32), "the cluster identity changed");
	admin_result_clear(&r);
}

static bool abc_converged(void)
{
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++)
			if (i != k && !sees(&nodes[i], id_of(&nodes[k])))
				return false;
	return true;
}

static void three_agents_join_and_their_peer_sets_converge(void **state)
{
	for (int i = 0; i < 3; i++)
		subscribe_ok(&nodes[i]);
	/* A joined first and saw nobody; the hub tells it about B and C. */
	check(nodes[0].info.view.n_peers == 0, "first node saw %zu peers",
	      nodes[0].info.view.n_peers);
	check(pump_until(abc_converged, PUSH_MS), "peer sets did not converge within %d ms",
	      PUSH_MS);
	for (int i = 0; i < 3; i++) {
		check(nodes[i].info.view.n_peers == 2, "%s sees %zu peers", nodes[i].endpoint,
		      nodes[i].info.view.n_peers);
		check(nodes[i].info.node_cert && nodes[i].info.ca_cert, "no certificates");
	}
}

static bool b_gone(void)
{
	return !sees(&nodes[0], id_of(&nodes[1])) && !sees(&nodes[2], id_of(&nodes[1])) &&
	       nodes[1].last == -EACCES;
}

static void revoked_node_leaves_every_peer_set_within_a_second(void **state)
{
	struct admin_result r;
	struct diag d;
	int64_t t0 = now_ms(), took;

	check(call(ADMIN_REVOKE, id_of(&nodes[1]), operator_key, true, NULL, 0, &r, &d) == 0, "%s",
	      d.msg);
	check(r.code == WIRE_OK, "revoke: code %u: %s", r.code, r.text);
	admin_result_clear(&r);
	check(pump_until(b_gone, PUSH_MS), "after %d ms: A sees B %d, C sees B %d, B's session %d",
	      PUSH_MS, sees(&nodes[0], id_of(&nodes[1])), sees(&nodes[2], id_of(&nodes[1])),
	      nodes[1].last);
	took = now_ms() - t0;
	print_message("# revocation reached both peers and the node in %lld ms (operator "
		      "session included)\n",
		      (long long)took);
	/* The revoked node cannot come back. */
	check(node_subscribe(&nodes[1], &d) == -EACCES, "revoked node rejoined: %s", d.msg);
	check(nodes[1].info.disk_key == NULL, "the revoked node got a disk key");
}

/* ---- replace-disk ------------------------------------------------------------------------ */

/* An operator session to joind, verified like admin_call does it (without the pins). */
struct op_session {
	struct atls_ctx *ctx;
	struct atls_session *s;
	int fd;
};

static void op_open(struct op_session *o)
{
	struct atls_opts opts = { ATLS_ROLE_OPERATOR, ATLS_ROLE_JOIND, JOIND_MS };
	struct atls_verifier v = { &cp.policy, cp_roots, NULL, NULL };
	struct atls_peer peer;
	struct diag d = { { 0 } };

	memset(o, 0, sizeof(*o));
	o->fd = -1;
	check(net_connect("127.0.0.1", joind_port, 2000, &o->fd, &d) == 0, "%s", d.msg);
	check(atls_ctx_new(false, &o->ctx, &d) == 0 &&
		  atls_client_connect(o->ctx, o->fd, &opts, &o->s, &d) == 0,
	      "%s", d.msg);
	check(atls_verify_peer(o->s, &v, &peer, &d) == 0, "%s", d.msg);
}

static void op_close(struct op_session *o)
{
	atls_close(o->s);
	atls_ctx_free(o->ctx);
	if (o->fd >= 0)
		close(o->fd);
	memset(o, 0, sizeof(*o));
}

/* The operator's signature over (exporter, op, node id), as admin_call makes it. */
static void operator_sign(const uint8_t exporter[32], uint16_t op, int64_t node_id, uint8_t sig[64])
{
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	uint8_t digest[32];
	size_t len = 64;

	admin_request_digest(exporter, op, (uint64_t)node_id, NULL, 0, NULL, 0, digest);
	check(mc && EVP_DigestSignInit(mc, NULL, NULL, NULL, operator_key) == 1 &&
		  EVP_DigestSign(mc, sig, &len, digest, 32) == 1 && len == 64,
	      "signing");
	EVP_MD_CTX_free(mc);
}

/* Send op for node_id on o with sig; joind's answer must be a refusal. */
static void refused_on(struct op_session *o, uint16_t op, int64_t node_id, const uint8_t sig[64],
		       const char *what)
{
	struct wire_msg m = { .type = WIRE_ADMIN_REQUEST, .op = op, .node_id = (uint64_t)node_id };
	struct diag d = { { 0 } };

	m.signature = (struct blob){ sig, 64 };
	check(atls_send(o->s, &m, &d) == 0, "%s", d.msg);
	memset(&m, 0, sizeof(m));
	check(atls_recv(o->s, &m, &d) == 0, "%s", d.msg);
	check(m.type == WIRE_ERROR && m.code == WIRE_REFUSED && m.text.p &&
		  memmem(m.text.p, m.text.len, "not signed by the operator key", 30),
	      "%s got %s code %u: %.*s", what, wire_type_name(m.type), m.code, (int)m.text.len,
	      m.text.p ? (const char *)m.text.p : "");
	wire_msg_free(&m);
}

static void replace_disk_not_signed_by_the_operator_is_refused(void **state)
{
	struct admin_result r;
	struct diag d;

	check(call(ADMIN_REPLACE_DISK, id_of(&nodes[0]), intruder_key, true, NULL, 0, &r, &d) == 0,
	      "%s", d.msg);
	check(r.code == WIRE_REFUSED && strstr(r.text, "not signed by the operator key"),
	      "replace-disk by another key: code %u, %s", r.code, r.text);
	admin_result_clear(&r);
	/* That it released nothing shows when the operator's own request is the first release
	 * (node_with_a_replaced_disk_binds_its_new_disk_at_its_next_join). */
}

static void replace_disk_replayed_or_reused_from_revoke_is_refused(void **state)
{
	struct op_session first, second;
	uint8_t sig[64];
	int64_t a = id_of(&nodes[0]);

	/* A genuine signature for one session, replayed on the next. */
	op_open(&first);
	operator_sign(atls_exporter(first.s), ADMIN_REPLACE_DISK, a, sig);
	op_close(&first);
	op_open(&second);
	refused_on(&second, ADMIN_REPLACE_DISK, a, sig, "a replayed replace-disk");
	op_close(&second);
	/* The operator's signature of a revoke on this very session is no replace-disk. */
	op_open(&first);
	operator_sign(atls_exporter(first.s), ADMIN_REVOKE, a, sig);
	refused_on(&first, ADMIN_REPLACE_DISK, a, sig, "a revoke's signature on replace-disk");
	op_close(&first);
}

static void replace_disk_of_a_revoked_node_is_refused(void **state)
{
	struct admin_result r;
	struct diag d;

	check(call(ADMIN_REPLACE_DISK, id_of(&nodes[1]), operator_key, true, NULL, 0, &r, &d) == 0,
	      "%s", d.msg);
	check(r.code == WIRE_REFUSED && strstr(r.text, "revoked"),
	      "replace-disk of revoked B: code %u, %s", r.code, r.text);
	check(member(&r, id_of(&nodes[1])) && !member(&r, id_of(&nodes[1]))->active,
	      "B is active again");
	admin_result_clear(&r);
	memset(nodes[1].uuid, 0x4b, sizeof(nodes[1].uuid));
	check(node_subscribe(&nodes[1], &d) == -EACCES, "revoked B joined with a new disk: %s",
	      d.msg);
	check(nodes[1].info.disk_key == NULL, "revoked B got a disk key");
}

static void replace_disk_of_an_unknown_node_is_refused(void **state)
{
	struct admin_result r;
	struct diag d;

	check(call(ADMIN_REPLACE_DISK, 999, operator_key, true, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(r.code == WIRE_REFUSED && strstr(r.text, "no node 999"),
	      "replace-disk of node 999: code %u, %s", r.code, r.text);
	admin_result_clear(&r);
}

static struct secret *disk_key_of(const uint8_t ek[32], const uint8_t uuid[16])
{
	struct secret *k = NULL;
	struct diag d = { { 0 } };

	check(kms_disk_key(master, ek, uuid, &k, &d) == 0, "%s", d.msg);
	return k;
}

static void node_with_a_replaced_disk_binds_its_new_disk_at_its_next_join(void **state)
{
	struct node *a = &nodes[0];
	struct secret *old_key, *new_key;
	uint8_t ek[32], old[16];
	struct admin_result r;
	uint64_t gen;
	struct diag d;
	int ret;

	check(call(ADMIN_STATUS, 0, NULL, true, NULL, 0, &r, &d) == 0 && member(&r, id_of(a)),
	      "status: %s", d.msg);
	memcpy(ek, member(&r, id_of(a))->ek_id, 32);
	gen = r.generation;
	admin_result_clear(&r);
	memcpy(old, a->uuid, sizeof(old));
	old_key = disk_key_of(ek, old);
	/* A's disk was wiped: it boots on a blank one with a new UUID, and is refused. */
	memset(a->uuid, 0xa1, sizeof(a->uuid));
	ret = node_subscribe(a, &d);
	check(ret == -EACCES && strstr(d.msg, "different disk"),
	      "A with a new disk before replace-disk: %d: %s", ret, d.msg);
	check(a->info.disk_key == NULL, "A got a key for an unregistered disk");
	/* The operator releases A's disk: nothing changes for its peers. */
	check(call(ADMIN_REPLACE_DISK, id_of(a), operator_key, true, NULL, 0, &r, &d) == 0, "%s",
	      d.msg);
	check(r.code == WIRE_OK, "replace-disk: code %u: %s", r.code, r.text);
	check(r.generation == gen, "replace-disk moved the generation from %llu to %llu",
	      (unsigned long long)gen, (unsigned long long)r.generation);
	check(member(&r, id_of(a)) && member(&r, id_of(a))->active, "A is not active");
	admin_result_clear(&r);
	/* The old disk, put back by the host, gets nothing. */
	memcpy(a->uuid, old, sizeof(old));
	ret = node_subscribe(a, &d);
	check(ret == -EACCES && strstr(d.msg, "released"), "A with its released disk: %d: %s", ret,
	      d.msg);
	check(a->info.disk_key == NULL, "A got the released disk's key");
	/* The new disk is bound at the next attested join, under the same node id. */
	memset(a->uuid, 0xa1, sizeof(a->uuid));
	subscribe_ok(a);
	new_key = disk_key_of(ek, a->uuid);
	check(a->info.disk_key && a->info.disk_key->len == new_key->len &&
		  !memcmp(a->info.disk_key->data, new_key->data, new_key->len),
	      "A's key is not the new disk's");
	check(memcmp(new_key->data, old_key->data, new_key->len) != 0,
	      "the new disk has the old disk's key");
	/* And from now on, the old disk is refused like any other. */
	memcpy(a->uuid, old, sizeof(old));
	ret = node_subscribe(a, &d);
	check(ret == -EACCES && strstr(d.msg, "different disk"),
	      "A with its old disk after the rebind: %d: %s", ret, d.msg);
	check(a->info.disk_key == NULL, "A got its old disk's key after the rebind");
	memset(a->uuid, 0xa1, sizeof(a->uuid));
	subscribe_ok(a);
	secret_free(old_key);
	secret_free(new_key);
}

static void reattestation_on_a_released_disk_ends_the_session_without_revoking(void **state)
{
	struct node *c = &nodes[2];
	struct admin_result r;
	struct diag d;
	int ret;

	check(call(ADMIN_REPLACE_DISK, id_of(c), operator_key, true, NULL, 0, &r, &d) == 0 &&
		  r.code == WIRE_OK,
	      "replace-disk of C: %s %s", d.msg, r.text);
	admin_result_clear(&r);
	/* C still runs on the disk the operator released and re-attests with it. */
	ret = reattest(c, c->wg, 5000, &d);
	check(ret == -EACCES && strstr(d.msg, "rejoin to bind a new one"),
	      "re-attestation on a released disk returned %d: %s", ret, d.msg);
	c->last = ret;
	check(call(ADMIN_STATUS, 0, NULL, true, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(member(&r, id_of(c)) && member(&r, id_of(c))->active,
	      "C was revoked for re-attesting on a released disk");
	admin_result_clear(&r);
	memset(c->uuid, 0xc1, sizeof(c->uuid));
	subscribe_ok(c);
}

static void verify_checks_the_member_list_against_the_attested_control_plane(void **state)
{
	struct admin_result r;
	const struct member_entry *a, *b;
	struct diag d;

	check(call(ADMIN_STATUS, 0, NULL, true, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(r.code == WIRE_OK && r.has_members, "status: code %u, members %d", r.code,
	      r.has_members);
	check(r.verdict.ok, "the control plane's verdict is not ok");
	a = member(&r, id_of(&nodes[0]));
	b = member(&r, id_of(&nodes[1]));
	check(r.members.n == 3 && a && b, "member list has %zu entries", r.members.n);
	check(a->active && a->policy_ok && !b->active, "A active %d policy %d, B active %d",
	      a->active, a->policy_ok, b->active);
	check(a->attested_at >= a->joined_at && a->joined_at > 0, "times %llu / %llu",
	      (unsigned long long)a->joined_at, (unsigned long long)a->attested_at);
	admin_result_clear(&r);
}

/* A signature made for one session proves nothing in another: here, one over a digest with
 * another exporter than this session's. */
static void operator_signature_for_another_session_is_refused(void **state)
{
	static const uint8_t other[32] = { 0 };
	struct op_session o;
	struct admin_result r;
	struct diag d = { { 0 } };
	uint8_t sig[64];

	op_open(&o);
	operator_sign(other, ADMIN_REVOKE, id_of(&nodes[0]), sig);
	refused_on(&o, ADMIN_REVOKE, id_of(&nodes[0]), sig, "a replayed signature");
	op_close(&o);
	check(call(ADMIN_STATUS, 0, NULL, true, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(member(&r, id_of(&nodes[0])) && member(&r, id_of(&nodes[0]))->active,
	      "node A was revoked by a replayed signature");
	admin_result_clear(&r);
}

/* The node policy admits the golden boot with PCR 4 of pcr4 (another kernel). */
static int signed_policy_with_pcr4(const uint8_t pcr4[32], char **out)
{
	struct policy p = cp.policy;
	char *json = NULL;
	struct diag d;
	int ret;

	p.n_reference = 0;
	p.reference = NULL;
	memcpy(p.pcrs[4].expected, pcr4, 32);
	ret = policy_to_json(&p, &json);
	if (ret == 0)
		ret = policy_sign(policy_key, json, strlen(json), out, &d);
	free(json);
	return ret;
}

static bool a_revoked(void)
{
	return nodes[0].last == -EACCES;
}

static void new_policy_with_enforce_revokes_who_no_longer_matches(void **state)
{
	struct node *dn = &nodes[NODE_NEW];
	struct admin_result r;
	struct evidence ev;
	uint8_t *buf = NULL;
	size_t len = 0;
	char *doc = NULL, *foreign = NULL;
	struct diag d;
	int ret;

	/* D booted another kernel: refused under the current policy. */
	check(node_subscribe(dn, &d) == -EACCES, "D joined under the old policy: %s", d.msg);
	check(fixture_attest(&dn->fx, "0123456789abcdef", NULL, 0, &buf, &len, &ev) == 0,
	      "D's evidence");
	check(signed_policy_with_pcr4(ev.pcrs[4], &doc) == 0, "signing the new policy");
	free(buf);
	/* A policy signed by another key is refused and changes nothing. */
	{
		EVP_PKEY *saved = policy_key;

		policy_key = intruder_key;
		check(signed_policy_with_pcr4(ev.pcrs[4], &foreign) == 0, "foreign policy");
		policy_key = saved;
	}
	check(call(ADMIN_POLICY, 0, operator_key, true, (const uint8_t *)foreign, strlen(foreign),
		   &r, &d) == 0,
	      "%s", d.msg);
	check(r.code == WIRE_REFUSED, "a policy by another key: code %u: %s", r.code, r.text);
	admin_result_clear(&r);
	free(foreign);
	/* The new kernel's policy: A (old kernel; C is already gone) no longer matches, and
	 * --enforce is on. */
	ret = call(ADMIN_POLICY, 0, operator_key, true, (const uint8_t *)doc, strlen(doc), &r, &d);
	check(ret == 0 && r.code == WIRE_OK, "policy: %d code %u: %s %s", ret, r.code, r.text,
	      d.msg);
	check(strstr(r.text, "1 member(s) do not match it, 1 revoked"), "report: %s", r.text);
	check(member(&r, id_of(&nodes[0])) && !member(&r, id_of(&nodes[0]))->active &&
		  !member(&r, id_of(&nodes[0]))->policy_ok,
	      "A is not reported revoked and mismatched");
	admin_result_clear(&r);
	check(pump_until(a_revoked, PUSH_MS), "A was not told (%d)", nodes[0].last);
	subscribe_ok(dn);
	free(doc);
}

static void control_plane_on_a_swapped_tpm_fails_verify(void **state)
{
	struct admin_result r;
	struct diag d;
	int ret;

	joind_stop();
	joind_start(&swapped);
	ret = call(ADMIN_STATUS, 0, NULL, true, NULL, 0, &r, &d);
	check(ret == -EACCES && strstr(d.msg, "TPM is not the one"),
	      "verify against a swapped TPM returned %d: %s", ret, d.msg);
	admin_result_clear(&r);
	joind_stop();
}

static void restarted_control_plane_waits_for_recover(void **state)
{
	struct kms *right = master, *wrong = NULL;
	struct admin_result r;
	struct node *dn = &nodes[NODE_NEW];
	struct diag d;

	joind_start(&cp);
	check(call(ADMIN_STATUS, 0, NULL, false, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(r.code == WIRE_NOT_READY, "restarted without a master: code %u", r.code);
	admin_result_clear(&r);
	/* Another cluster's secret is refused. */
	check(kms_new_random(&wrong, &d) == 0, "%s", d.msg);
	master = wrong;
	check(call(ADMIN_RECOVER, 0, operator_key, false, NULL, 0, &r, &d) == 0, "%s", d.msg);
	master = right;
	kms_free(wrong);
	check(r.code == WIRE_REFUSED && strstr(r.text, "another cluster"),
	      "recover with a foreign secret: code %u, %s", r.code, r.text);
	admin_result_clear(&r);
	check(call(ADMIN_RECOVER, 0, operator_key, false, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(r.code == WIRE_OK && !memcmp(r.cluster_id, cluster_id, 32), "recover: code %u: %s",
	      r.code, r.text);
	check(r.has_members && r.members.n == 4, "members after recover: %zu", r.members.n);
	admin_result_clear(&r);
	/* The node reconnects and gets its own id back (checked inside). */
	subscribe_ok(dn);
}

/* Re-attest n on its session with wg as its key; the verdict comes through the pump. */
static int reattest(struct node *n, const uint8_t wg[32], int64_t wait_ms, struct diag *d)
{
	struct joinclient_config c = {
		.attest = { .tcti = n->fx.tpm.tcti,
			    .ak_state = n->fx.ak_state,
			    .pcr_mask = NODE_QUOTE_PCRS,
			    .event_log = n == &nodes[NODE_NEW] ? NULL : n->fx.log_path,
			    .ek_chain = n->fx.tpm.issuer },
		.disk_uuid = n->uuid,
	};
	int64_t deadline = now_ms() + wait_ms;
	int ret;

	memset(d, 0, sizeof(*d));
	ret = joinclient_reattest(n->sess, &c, wg, d);
	while (ret == 0 && now_ms() < deadline) {
		ret = joinclient_next(n->sess, &n->info.view, 50, d);
		if (ret == JOINCLIENT_REATTESTED)
			return 0;
		if (ret > 0)
			ret = 0;
	}
	return ret < 0 ? ret : -ETIMEDOUT;
}

static uint8_t rotated[32];

static bool a_has_c_rotated(void)
{
	for (size_t i = 0; i < nodes[0].info.view.n_peers; i++)
		if (nodes[0].info.view.peers[i].node_id == id_of(&nodes[2]))
			return !memcmp(nodes[0].info.view.peers[i].wg_pubkey, rotated, 32);
	return false;
}

static void reattestation_with_a_new_key_reaches_the_peers(void **state)
{
	struct diag d;
	int ret;

	memset(rotated, 0x77, sizeof(rotated));
	ret = reattest(&nodes[2], rotated, 5000, &d);
	check(ret == 0, "re-attestation of C: %d: %s", ret, d.msg);
	check(pump_until(a_has_c_rotated, PUSH_MS), "A did not learn C's new key within %d ms",
	      PUSH_MS);
	check(!memcmp(nodes[2].info.view.self.wg_pubkey, rotated, 32),
	      "C's own view still has its old key");
	memcpy(nodes[2].wg, rotated, 32);
}

static bool c_gone(void)
{
	return !sees(&nodes[0], id_of(&nodes[2]));
}

static void failed_reattestation_revokes_the_node(void **state)
{
	static const uint8_t tampered[32] = { 0x66 };
	struct tpm *t;
	struct diag d;
	int ret;

	/* C's kernel changes under it (a PCR it cannot take back). */
	check(tpm_open(nodes[2].fx.tpm.tcti, &t, &d) == 0 &&
		  tpm_pcr_extend(t, 4, tampered, &d) == 0,
	      "%s", d.msg);
	tpm_close(t);
	ret = reattest(&nodes[2], nodes[2].wg, 5000, &d);
	check(ret == -EACCES, "re-attestation with another PCR 4 returned %d: %s", ret, d.msg);
	nodes[2].last = ret;
	check(pump_until(c_gone, PUSH_MS), "A still sees C after its failed re-attestation");
}

static bool d_revoked(void)
{
	return nodes[NODE_NEW].last == -EACCES || nodes[NODE_NEW].last == -ECONNRESET;
}

static void node_that_stops_reattesting_is_revoked(void **state)
{
	struct node *dn = &nodes[NODE_NEW];
	struct admin_result r;
	struct diag d;
	int ret;

	snprintf(recovery_path, sizeof(recovery_path), "%s/recovery", dir);
	check(kms_recovery_write(master, recovery_path, &d) == 0, "%s", d.msg);
	joind_stop();
	reattest_deadline_s = 2;
	joind_start(&cp);
	subscribe_ok(dn);
	/* In time: the deadline starts again. */
	usleep(1200 * 1000);
	ret = reattest(dn, dn->wg, 5000, &d);
	check(ret == 0, "re-attestation in time: %d: %s", ret, d.msg);
	/* Then silence. */
	check(pump_until(d_revoked, 5000), "D kept its session without re-attesting");
	check(call(ADMIN_STATUS, 0, NULL, true, NULL, 0, &r, &d) == 0, "%s", d.msg);
	check(member(&r, id_of(dn)) && !member(&r, id_of(dn))->active, "D is still active");
	admin_result_clear(&r);
}

static struct fixture wanderer; /* a node that tries to join two clusters in one boot */

static int wanderer_join(uint32_t mask, struct join_info *j, struct diag *d)
{
	static const uint8_t wg[32] = { 0x55 }, uuid[16] = { 0xe5 };
	struct joinclient_config c = {
		.host = "127.0.0.1",
		.port = joind_port,
		.connect_timeout_ms = test_ms(2000),
		.timeout_ms = test_ms(5000),
		.cp_policy = &cp.policy,
		.cp_ca = cp_roots,
		.attest = { .tcti = wanderer.tpm.tcti,
			    .ak_state = wanderer.ak_state,
			    .pcr_mask = mask,
			    .event_log = wanderer.log_path,
			    .ek_chain = wanderer.tpm.issuer },
		.wg_pubkey = wg,
		.disk_uuid = uuid,
		.endpoints = { "192.0.2.99:51820" },
		.n_endpoints = 1,
	};

	memset(d, 0, sizeof(*d));
	return joinclient_join(&c, j, d);
}

static void pcr15_binds_a_boot_to_one_cluster(void **state)
{
	uint8_t other[32];
	struct admin_result r;
	struct join_info j;
	struct tpm *t;
	char *golden = NULL;
	struct diag d;
	int ret;

	/* Back to the golden boot's policy (the previous tests moved on to another kernel). */
	check(signed_policy_with_pcr4(cp.policy.pcrs[4].expected, &golden) == 0, "golden policy");
	ret = call(ADMIN_POLICY, 0, operator_key, true, (const uint8_t *)golden, strlen(golden), &r,
		   &d);
	check(ret == 0 && r.code == WIRE_OK, "policy: %d code %u: %s %s", ret, r.code, r.text,
	      d.msg);
	admin_result_clear(&r);
	free(golden);
	/* A quote that leaves PCR 15 out cannot show where the node has been. */
	ret = wanderer_join(LOG_COVERED_PCRS, &j, &d);
	check(ret == -EACCES && strstr(d.msg, "PCR 15"), "quote without PCR 15: %d: %s", ret,
	      d.msg);
	/* Joined this cluster earlier in this boot (the agent extended PCR 15): welcome back. */
	check(tpm_open(wanderer.tpm.tcti, &t, &d) == 0 &&
		  tpm_pcr_extend(t, AGENT_CLUSTER_PCR, cluster_id, &d) == 0,
	      "%s", d.msg);
	tpm_close(t);
	ret = wanderer_join(NODE_QUOTE_PCRS, &j, &d);
	check(ret == 0, "a node whose PCR 15 holds this cluster: %d: %s", ret, d.msg);
	join_info_clear(&j);
	/* After a reboot, it joined another cluster first: refused here. */
	check(fixture_reboot(&wanderer) == 0, "reboot");
	memset(other, 0x0c, sizeof(other));
	check(tpm_open(wanderer.tpm.tcti, &t, &d) == 0 &&
		  tpm_pcr_extend(t, AGENT_CLUSTER_PCR, other, &d) == 0,
	      "%s", d.msg);
	tpm_close(t);
	ret = wanderer_join(NODE_QUOTE_PCRS, &j, &d);
	check(ret == -EACCES && strstr(d.msg, "another cluster"),
	      "a node that joined another cluster since boot: %d: %s", ret, d.msg);
}

/* ---- set-up ------------------------------------------------------------------------------ */

static int keypair(const char *name, char *pub, size_t cap, EVP_PKEY **priv)
{
	char prefix[PATH_MAX], key[PATH_MAX + 8];
	struct diag d;

	snprintf(prefix, sizeof(prefix), "%s/%s", dir, name);
	snprintf(key, sizeof(key), "%s.key", prefix);
	if (pub)
		snprintf(pub, cap, "%s.pub", prefix);
	if (policy_keygen(prefix, &d) < 0 || policy_load_private(key, priv, &d) < 0) {
		fprintf(stderr, "%s: %s\n", name, d.msg);
		return -1;
	}
	return 0;
}

static int write_files(void)
{
	char *json = NULL, *signed_doc = NULL;
	FILE *out;
	struct diag d;
	int ret;

	ret = policy_to_json(&cp.policy, &json);
	if (ret == 0)
		ret = policy_sign(policy_key, json, strlen(json), &signed_doc, &d);
	if (ret == 0)
		ret = write_file_new(policy_path, signed_doc, strlen(signed_doc), 0644);
	free(json);
	free(signed_doc);
	out = fopen(ca_path, "we");
	if (ret < 0 || !out)
		return -1;
	for (int i = -3; i < N_NODES; i++) {
		struct fixture *f = i == -3   ? &wanderer
				    : i == -2 ? &cp
				    : i == -1 ? &swapped
					      : &nodes[i].fx;
		uint8_t *buf = NULL;
		size_t len;

		if (read_file(f->tpm.ca, 1u << 20, &buf, &len) == 0)
			fwrite(buf, 1, len, out);
		free(buf);
	}
	return fclose(out) == 0 && ca_store_load(ca_path, &cp_roots, &d) == 0 ? 0 : -1;
}

static int group_setup(void **state)
{
	static const uint8_t other_kernel[32] = { 0xba, 0xd0 };
	struct tpm *t;
	struct diag d;

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		return -1;
	snprintf(db_path, sizeof(db_path), "%s/members.db", dir);
	snprintf(policy_path, sizeof(policy_path), "%s/node-policy.json", dir);
	snprintf(ca_path, sizeof(ca_path), "%s/ek-roots.pem", dir);
	snprintf(port_path, sizeof(port_path), "%s/port", dir);
	snprintf(log_path, sizeof(log_path), "%s/joind.log", dir);
	recovery_path[0] = '\0';
	if (fixture_start(&cp) < 0 || fixture_start(&swapped) < 0 || fixture_start(&wanderer) < 0)
		return -1;
	for (int i = 0; i < N_NODES; i++) {
		if (fixture_start(&nodes[i].fx) < 0)
			return -1;
		memset(nodes[i].wg, 0x20 + i, sizeof(nodes[i].wg));
		memset(nodes[i].uuid, 0xb0 + i, sizeof(nodes[i].uuid));
		snprintf(nodes[i].endpoint, sizeof(nodes[i].endpoint), "192.0.2.%d:51820", i + 1);
	}
	if (tpm_open(nodes[NODE_NEW].fx.tpm.tcti, &t, &d) < 0 ||
	    tpm_pcr_extend(t, 4, other_kernel, &d) < 0)
		return -1;
	tpm_close(t);
	if (keypair("operator", op_pub, sizeof(op_pub), &operator_key) < 0 ||
	    keypair("intruder", NULL, 0, &intruder_key) < 0 ||
	    keypair("policy", pub_path, sizeof(pub_path), &policy_key) < 0 ||
	    kms_new_random(&master, &d) < 0 || write_files() < 0)
		return -1;
	joind_start(&cp);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	if (joind_pid > 0) {
		kill(joind_pid, SIGKILL);
		waitpid(joind_pid, NULL, 0);
	}
	for (int i = 0; i < N_NODES; i++) {
		joinclient_close(nodes[i].sess);
		join_info_clear(&nodes[i].info);
		fixture_stop(&nodes[i].fx);
	}
	fixture_stop(&cp);
	fixture_stop(&swapped);
	fixture_stop(&wanderer);
	X509_STORE_free(cp_roots);
	EVP_PKEY_free(operator_key);
	EVP_PKEY_free(intruder_key);
	EVP_PKEY_free(policy_key);
	kms_free(master);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nodes_wait_until_the_operator_inits),
		cmocka_unit_test(init_signed_by_another_key_is_refused),
		cmocka_unit_test(init_installs_the_master_and_binds_the_cluster_identity),
		cmocka_unit_test(three_agents_join_and_their_peer_sets_converge),
		cmocka_unit_test(revoked_node_leaves_every_peer_set_within_a_second),
		cmocka_unit_test(replace_disk_not_signed_by_the_operator_is_refused),
		cmocka_unit_test(replace_disk_replayed_or_reused_from_revoke_is_refused),
		cmocka_unit_test(replace_disk_of_a_revoked_node_is_refused),
		cmocka_unit_test(replace_disk_of_an_unknown_node_is_refused),
		cmocka_unit_test(node_with_a_replaced_disk_binds_its_new_disk_at_its_next_join),
		cmocka_unit_test(
		    reattestation_on_a_released_disk_ends_the_session_without_revoking),
		cmocka_unit_test(reattestation_with_a_new_key_reaches_the_peers),
		cmocka_unit_test(verify_checks_the_member_list_against_the_attested_control_plane),
		cmocka_unit_test(operator_signature_for_another_session_is_refused),
		cmocka_unit_test(failed_reattestation_revokes_the_node),
		cmocka_unit_test(new_policy_with_enforce_revokes_who_no_longer_matches),
		cmocka_unit_test(control_plane_on_a_swapped_tpm_fails_verify),
		cmocka_unit_test(restarted_control_plane_waits_for_recover),
		cmocka_unit_test(node_that_stops_reattesting_is_revoked),
		cmocka_unit_test(pcr15_binds_a_boot_to_one_cluster),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
