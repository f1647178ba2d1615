// SPDX-License-Identifier: Apache-2.0
/* Attested TLS over loopback TCP between two real swtpms (a node's and the join service's, both
 * holding the PCRs of a real OVMF boot). The join service runs in a thread, serving a number of
 * connections one after another; every attack is staged on the wire: a live relay, evidence
 * from another session, a substituted WireGuard key, replayed evidence, a join service with a
 * foreign measurement, malformed, oversized, slow and silent clients, TLS 1.2. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "attest_fixture.h"
#include "conclave/atls.h"
#include "conclave/tpm.h"

#define TEST_KEY	  "disk-key-for-an-attested-node-only"
#define SERVER_TIMEOUT_MS test_ms(1000)
#define MAX_CONNS	  8

static struct fixture node_fx, joind_fx;

static const uint8_t node_wg[32] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa };
static const uint8_t other_wg[32] = { 0xee, 0xee, 0xee };
static const uint8_t node_uuid[16] = { 0x0d, 0x15, 0x4a, 0x11 };

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static struct attest_opts fixture_opts(struct fixture *f)
{
	return (struct attest_opts){
		.tcti = f->tpm.tcti,
		.ak_state = f->ak_state,
		.pcr_mask = LOG_COVERED_PCRS,
		.event_log = f->log_path,
		.ek_chain = f->tpm.issuer,
	};
}

/* ---- the join service: a thread serving connections one after another --------------------- */

struct conn_result {
	int accept_ret, prove_ret, verify_ret;
	int after_refusal_ret; /* what a read returned after the node refused us */
	bool sent_keys;
	bool node_accepted_us;
	struct atls_peer peer;
	char diag[512];
	int64_t ms; /* from accept to the end of the connection */
};

struct server {
	int lfd;
	uint16_t port;
	int n_conns;
	struct fixture *fx;	   /* the join service's TPM */
	struct policy node_policy; /* what nodes must have booted */
	bool remember;		   /* keep a node record between connections */
	struct node_record record; /* the membership store of one node */
	pthread_t thread;
	struct conn_result res[MAX_CONNS];
};

static struct node_record *find_node(void *arg, const uint8_t node_id[32])
{
	struct server *srv = arg;

	return srv->remember ? &srv->record : NULL;
}

static void serve_one(struct server *srv, struct atls_ctx *ctx, int fd, struct conn_result *r)
{
	struct atls_opts o = { ATLS_ROLE_JOIND, ATLS_ROLE_NODE, SERVER_TIMEOUT_MS };
	struct attest_opts ao = fixture_opts(srv->fx);
	struct atls_verifier v = { &srv->node_policy, node_fx.ca, find_node, srv };
	struct atls_session *s = NULL;
	struct diag d = { { 0 } };
	struct wire_msg m;

	r->accept_ret = atls_server_accept(ctx, fd, &o, &s, &d);
	if (r->accept_ret < 0)
		goto out;
	/* The join service proves first. */
	r->prove_ret = atls_prove(s, &ao, NULL, NULL, &d);
	r->node_accepted_us = atls_peer_accepted_us(s);
	if (r->prove_ret < 0) {
		struct diag d2;

		r->after_refusal_ret = atls_recv(s, &m, &d2);
		wire_msg_free(&m);
		goto out;
	}
	r->verify_ret = atls_verify_peer(s, &v, &r->peer, &d);
	if (r->verify_ret < 0)
		goto out;
	if (atls_recv(s, &m, &d) == 0 && m.type == WIRE_JOIN_REQUEST) {
		struct wire_msg resp = { .type = WIRE_JOIN_RESPONSE };

		resp.key_material = (struct blob){ (const uint8_t *)TEST_KEY, strlen(TEST_KEY) };
		/* The rest of a JOIN_RESPONSE is joind's business (test_joind); opaque here. */
		resp.peer_set = resp.ca_cert = resp.node_cert =
		    (struct blob){ (const uint8_t *)"x", 1 };
		r->sent_keys = atls_send(s, &resp, &d) == 0;
	}
	wire_msg_free(&m);
out:
	snprintf(r->diag, sizeof(r->diag), "%s", d.msg);
	atls_close(s);
}

static void *serve(void *arg)
{
	struct server *srv = arg;
	struct atls_ctx *ctx;
	struct diag d;

	if (atls_ctx_new(true, &ctx, &d) < 0)
		return NULL;
	for (int i = 0; i < srv->n_conns; i++) {
		int fd = accept(srv->lfd, NULL, NULL);
		int64_t t0 = now_ms();

		if (fd < 0)
			break;
		serve_one(srv, ctx, fd, &srv->res[i]);
		srv->res[i].ms = now_ms() - t0;
		close(fd);
	}
	atls_ctx_free(ctx);
	return NULL;
}

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static struct server *server_start(struct fixture *fx, int n_conns, bool remember)
{
	struct server *srv = calloc(1, sizeof(*srv));

	assert_non_null(srv);
	assert_true(n_conns <= MAX_CONNS);
	srv->fx = fx;
	srv->n_conns = n_conns;
	srv->remember = remember;
	srv->node_policy = node_fx.policy;
	srv->lfd = listen_loopback(&srv->port);
	return srv;
}

static void server_run(struct server *srv)
{
	assert_int_equal(pthread_create(&srv->thread, NULL, serve, srv), 0);
}

static void server_join(struct server *srv)
{
	assert_int_equal(pthread_join(srv->thread, NULL), 0);
	close(srv->lfd);
}

static void server_free(struct server *srv)
{
	node_record_clear(&srv->record);
	free(srv);
}

static int connect_to(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* ---- the node -------------------------------------------------------------------------------- */

struct client {
	int fd;
	struct atls_ctx *ctx;
	struct atls_session *s;
	struct atls_peer joind;
	int verify_ret, prove_ret;
	bool got_keys;
	struct diag d;
};

/* Connect and attest the join service against policy (default: the control-plane image). */
static void client_open(struct client *c, uint16_t port, const struct policy *cp_policy,
			X509_STORE *cp_ca)
{
	struct atls_opts o = { ATLS_ROLE_NODE, ATLS_ROLE_JOIND, 10000 };
	struct atls_verifier v = { cp_policy ? cp_policy : &joind_fx.policy,
				   cp_ca ? cp_ca : joind_fx.ca, NULL, NULL };

	memset(c, 0, sizeof(*c));
	c->fd = connect_to(port);
	assert_int_equal(atls_ctx_new(false, &c->ctx, &c->d), 0);
	if (atls_client_connect(c->ctx, c->fd, &o, &c->s, &c->d) < 0)
		fail_msg("connect: %s", c->d.msg);
	c->verify_ret = atls_verify_peer(c->s, &v, &c->joind, &c->d);
}

static void client_close(struct client *c)
{
	atls_close(c->s);
	atls_ctx_free(c->ctx);
	close(c->fd);
}

/* The whole join as the agent will run it: attest joind, prove, ask for keys. */
static void node_join(struct client *c, uint16_t port, const struct policy *cp_policy,
		      X509_STORE *cp_ca)
{
	struct attest_opts ao = fixture_opts(&node_fx);
	struct wire_msg req = { .type = WIRE_JOIN_REQUEST }, resp;

	client_open(c, port, cp_policy, cp_ca);
	if (c->verify_ret < 0)
		return; /* a node gives nothing of its own to a join service it refused */
	c->prove_ret = atls_prove(c->s, &ao, node_wg, node_uuid, &c->d);
	if (c->prove_ret < 0)
		return;
	req.endpoints[0] = (struct blob){ (const uint8_t *)"127.0.0.1:51820", 15 };
	req.n_endpoints = 1;
	assert_int_equal(atls_send(c->s, &req, &c->d), 0);
	if (atls_recv(c->s, &resp, &c->d) == 0 && resp.type == WIRE_JOIN_RESPONSE)
		c->got_keys = resp.key_material.len == strlen(TEST_KEY) &&
			      !memcmp(resp.key_material.p, TEST_KEY, strlen(TEST_KEY));
	wire_msg_free(&resp);
}

/* The node's half of proving, by hand: quote over any qualifying data, claim any WireGuard key,
 * or send recorded evidence. Returns the VERDICT's code; *last gets the last evidence sent. */
static int manual_prove(struct client *c, const uint8_t qdata[32], const uint8_t *claim_wg,
			const uint8_t *replay, size_t replay_len, uint8_t **last, size_t *last_len)
{
	struct attest_opts ao = fixture_opts(&node_fx);
	uint8_t *ev = NULL;
	size_t len = 0;
	int code = -1;

	ao.qdata = qdata;
	ao.qlen = 32;
	for (int round = 0; round < 2; round++) {
		struct wire_msg m = { .type = WIRE_EVIDENCE }, in;

		free(ev);
		if (replay) {
			ev = malloc(replay_len);
			memcpy(ev, replay, replay_len);
			len = replay_len;
		} else if (attest_produce(&ao, &ev, &len, &c->d) < 0) {
			fail_msg("attest: %s", c->d.msg);
		}
		m.evidence = (struct blob){ ev, len };
		m.wg_pubkey = (struct blob){ claim_wg, 32 };
		m.disk_uuid = (struct blob){ node_uuid, 16 };
		assert_int_equal(atls_send(c->s, &m, &c->d), 0);
		if (atls_recv(c->s, &in, &c->d) < 0)
			fail_msg("no answer to our evidence: %s", c->d.msg);
		if (in.type == WIRE_VERDICT) {
			code = in.code;
			wire_msg_free(&in);
			break;
		}
		assert_int_equal(in.type, WIRE_CHALLENGE);
		assert_null(replay);
		free((void *)ao.challenge);
		ao.challenge = malloc(in.challenge.len);
		memcpy((uint8_t *)ao.challenge, in.challenge.p, in.challenge.len);
		ao.challenge_len = in.challenge.len;
		wire_msg_free(&in);
	}
	free((void *)ao.challenge);
	if (last) {
		*last = ev;
		*last_len = len;
	} else {
		free(ev);
	}
	return code;
}

static void print_failures(const struct verdict *v)
{
	for (int c = 0; c < CHECK_COUNT; c++)
		if (v->checks[c].status == CHECK_FAIL)
			print_message("# %s: %s\n", verify_check_name(c), v->checks[c].msg);
}

static void assert_only_failed(const struct verdict *v, enum verify_check expected)
{
	assert_false(v->ok);
	assert_int_equal(v->checks[expected].status, CHECK_FAIL);
	for (int c = 0; c < CHECK_COUNT; c++)
		if (c != (int)expected && v->checks[c].status == CHECK_FAIL) {
			print_failures(v);
			fail_msg("check %s failed too", verify_check_name(c));
		}
}

/* A first session that enrols the node, so later sessions take the known-node path. */
static void enrol(struct server *srv)
{
	struct client c;

	node_join(&c, srv->port, NULL, NULL);
	if (c.verify_ret || c.prove_ret)
		fail_msg("enrolment: %s", c.d.msg);
	assert_true(c.got_keys);
	client_close(&c);
}

/* ---- scenarios ------------------------------------------------------------------------------- */

static void mutual_attestation_succeeds_and_both_sides_know_the_verdicts(void **state)
{
	struct server *srv = server_start(&joind_fx, 1, false);
	struct conn_result *r = &srv->res[0];
	struct client c;

	server_run(srv);
	node_join(&c, srv->port, NULL, NULL);
	if (c.verify_ret || c.prove_ret)
		fail_msg("node: %s", c.d.msg);
	/* The node accepted the join service, and knows the join service accepted it. */
	assert_true(c.joind.accepted);
	assert_true(c.joind.first_contact);
	assert_int_equal(c.joind.role, ATLS_ROLE_JOIND);
	assert_false(c.joind.has_wg_pubkey);
	assert_true(atls_we_accepted_peer(c.s));
	assert_true(atls_peer_accepted_us(c.s));
	assert_true(c.got_keys);
	client_close(&c);
	server_join(srv);
	/* And the other way round. */
	if (r->verify_ret)
		fail_msg("joind: %s", r->diag);
	assert_int_equal(r->prove_ret, 0);
	assert_true(r->node_accepted_us);
	assert_true(r->peer.accepted);
	assert_true(r->peer.verdict.ok);
	assert_int_equal(r->peer.verdict.checks[CHECK_AK_ACTIVATION].status, CHECK_PASS);
	assert_int_equal(r->peer.verdict.checks[CHECK_NONCE].status, CHECK_PASS);
	assert_true(r->peer.has_wg_pubkey);
	assert_memory_equal(r->peer.wg_pubkey, node_wg, 32);
	assert_memory_equal(r->peer.disk_uuid, node_uuid, 16);
	assert_true(r->sent_keys);
	server_free(srv);
}

static void known_node_reattests_without_a_challenge(void **state)
{
	struct server *srv = server_start(&joind_fx, 2, true);
	struct client c;

	server_run(srv);
	enrol(srv);
	node_join(&c, srv->port, NULL, NULL);
	assert_int_equal(c.verify_ret, 0);
	assert_int_equal(c.prove_ret, 0);
	assert_true(c.got_keys);
	client_close(&c);
	server_join(srv);
	assert_true(srv->res[0].peer.first_contact);
	assert_false(srv->res[1].peer.first_contact);
	assert_true(srv->res[1].peer.accepted);
	assert_true(srv->record.known);
	server_free(srv);
}

static void node_with_wrong_pcrs_is_refused_with_the_check_named(void **state)
{
	struct server *srv = server_start(&joind_fx, 1, false);
	struct conn_result *r = &srv->res[0];
	struct client c;

	/* The join service expects another kernel than the one the node booted. */
	srv->node_policy.pcrs[4].expected[0] ^= 0xff;
	server_run(srv);
	node_join(&c, srv->port, NULL, NULL);
	assert_int_equal(c.verify_ret, 0);
	assert_int_equal(c.prove_ret, -EACCES);
	assert_non_null(strstr(c.d.msg, "refused our attestation"));
	assert_non_null(strstr(c.d.msg, "policy"));
	assert_false(atls_peer_accepted_us(c.s));
	assert_false(c.got_keys);
	client_close(&c);
	server_join(srv);
	assert_int_equal(r->verify_ret, -EACCES);
	assert_only_failed(&r->peer.verdict, CHECK_POLICY);
	assert_non_null(strstr(r->diag, "policy: "));
	assert_non_null(strstr(r->diag, "PCR 4"));
	assert_false(r->sent_keys);
	server_free(srv);
}

static void join_service_with_a_bad_measurement_is_refused_and_gets_nothing(void **state)
{
	static const uint8_t foreign[32] = { 0xba, 0xd0 };
	struct fixture rogue;
	struct server *srv;
	struct conn_result *r;
	struct client c;
	struct tpm *t;
	struct diag d;

	/* A control plane that booted something else: one more measurement in PCR 4. */
	assert_int_equal(fixture_start(&rogue), 0);
	assert_int_equal(tpm_open(rogue.tpm.tcti, &t, &d), 0);
	assert_int_equal(tpm_pcr_extend(t, 4, foreign, &d), 0);
	tpm_close(t);
	srv = server_start(&rogue, 1, false);
	r = &srv->res[0];
	server_run(srv);
	client_open(&c, srv->port, &joind_fx.policy, rogue.ca);
	assert_int_equal(c.verify_ret, -EACCES);
	assert_false(c.joind.accepted);
	assert_int_equal(c.joind.verdict.checks[CHECK_POLICY].status, CHECK_FAIL);
	assert_int_equal(c.joind.verdict.checks[CHECK_SIGNATURE].status, CHECK_PASS);
	assert_non_null(strstr(c.d.msg, "policy: "));
	/* The node stops here: no evidence, no WireGuard key, no join request. */
	client_close(&c);
	server_join(srv);
	assert_int_equal(r->prove_ret, -EACCES);
	assert_false(r->node_accepted_us);
	assert_non_null(strstr(r->diag, "policy"));
	assert_true(r->after_refusal_ret < 0); /* the node said nothing more */
	assert_false(r->peer.has_wg_pubkey);
	assert_false(r->sent_keys);
	server_free(srv);
	fixture_stop(&rogue);
}

/* ---- relay: a man in the middle forwards the join service's messages to the node ----------- */

struct relay {
	int lfd;
	uint16_t port, joind_port;
	int ret;
};

static int forward(struct atls_session *from, struct atls_session *to)
{
	struct wire_msg m;
	struct diag d;
	int ret = atls_recv(from, &m, &d);

	if (ret == 0)
		ret = atls_send(to, &m, &d);
	wire_msg_free(&m);
	return ret;
}

/* Terminates the node's TLS session (A) and opens its own to the join service (B). */
static void *relay_run(void *arg)
{
	struct relay *rl = arg;
	struct atls_opts as_joind = { ATLS_ROLE_JOIND, ATLS_ROLE_NODE, 5000 };
	struct atls_opts as_node = { ATLS_ROLE_NODE, ATLS_ROLE_JOIND, 5000 };
	struct atls_ctx *sctx = NULL, *cctx = NULL;
	struct atls_session *a = NULL, *b = NULL;
	struct diag d;
	int afd = accept(rl->lfd, NULL, NULL), bfd = -1;

	rl->ret = -1;
	if (afd < 0 || atls_ctx_new(true, &sctx, &d) < 0 || atls_ctx_new(false, &cctx, &d) < 0)
		goto out;
	bfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	{
		struct sockaddr_in sa = { .sin_family = AF_INET,
					  .sin_port = htons(rl->joind_port),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		if (connect(bfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			goto out;
	}
	if (atls_server_accept(sctx, afd, &as_joind, &a, &d) < 0 ||
	    atls_client_connect(cctx, bfd, &as_node, &b, &d) < 0)
		goto out;
	/* joind's evidence -> node, node's challenge -> joind, activated evidence -> node,
	 * node's verdict -> joind. */
	rl->ret = forward(b, a);
	if (rl->ret == 0)
		rl->ret = forward(a, b);
	if (rl->ret == 0)
		rl->ret = forward(b, a);
	if (rl->ret == 0)
		rl->ret = forward(a, b);
out:
	atls_close(a);
	atls_close(b);
	atls_ctx_free(sctx);
	atls_ctx_free(cctx);
	if (afd >= 0)
		close(afd);
	if (bfd >= 0)
		close(bfd);
	return NULL;
}

static void relayed_join_service_evidence_is_refused_by_the_node(void **state)
{
	struct server *srv = server_start(&joind_fx, 1, false);
	struct relay rl = { 0 };
	pthread_t thr;
	struct client c;

	server_run(srv);
	rl.lfd = listen_loopback(&rl.port);
	rl.joind_port = srv->port;
	assert_int_equal(pthread_create(&thr, NULL, relay_run, &rl), 0);
	client_open(&c, rl.port, NULL, NULL);
	assert_int_equal(pthread_join(thr, NULL), 0);
	/* Genuine evidence from the genuine join service, quoted over session B's exporter. */
	assert_int_equal(rl.ret, 0);
	assert_int_equal(c.verify_ret, -EACCES);
	assert_int_equal(c.joind.verdict.checks[CHECK_NONCE].status, CHECK_FAIL);
	assert_int_equal(c.joind.verdict.checks[CHECK_SIGNATURE].status, CHECK_PASS);
	assert_int_equal(c.joind.verdict.checks[CHECK_POLICY].status, CHECK_PASS);
	assert_non_null(strstr(c.d.msg, "nonce"));
	client_close(&c);
	close(rl.lfd);
	server_join(srv);
	assert_int_equal(srv->res[0].prove_ret, -EACCES);
	server_free(srv);
}

static void node_evidence_from_another_session_is_refused(void **state)
{
	struct server *srv = server_start(&joind_fx, 3, true);
	struct conn_result *r = &srv->res[2];
	uint8_t qdata_a[32], *ev_a;
	size_t len_a;
	struct attest_opts ao = fixture_opts(&node_fx);
	struct client a, b;

	server_run(srv);
	enrol(srv);
	/* Session A: evidence quoted over A's binding, never presented there. */
	client_open(&a, srv->port, NULL, NULL);
	assert_int_equal(a.verify_ret, 0);
	atls_session_binding(a.s, ATLS_ROLE_NODE, node_wg, node_uuid, qdata_a);
	ao.qdata = qdata_a;
	ao.qlen = 32;
	assert_int_equal(attest_produce(&ao, &ev_a, &len_a, &a.d), 0);
	client_close(&a);
	/* Session B: the same evidence, fresh from the TPM, but bound to A. */
	client_open(&b, srv->port, NULL, NULL);
	assert_int_equal(b.verify_ret, 0);
	assert_int_equal(manual_prove(&b, qdata_a, node_wg, ev_a, len_a, NULL, NULL), WIRE_REFUSED);
	client_close(&b);
	server_join(srv);
	assert_int_equal(r->verify_ret, -EACCES);
	assert_false(r->peer.first_contact);
	assert_only_failed(&r->peer.verdict, CHECK_NONCE);
	assert_false(r->sent_keys);
	free(ev_a);
	server_free(srv);
}

static void evidence_bound_to_another_wireguard_key_is_refused(void **state)
{
	struct server *srv = server_start(&joind_fx, 2, true);
	struct conn_result *r = &srv->res[1];
	uint8_t qdata[32];
	struct client c;

	server_run(srv);
	enrol(srv);
	client_open(&c, srv->port, NULL, NULL);
	assert_int_equal(c.verify_ret, 0);
	/* Quoted for this session and node_wg, but the message claims another key. */
	atls_session_binding(c.s, ATLS_ROLE_NODE, node_wg, node_uuid, qdata);
	assert_int_equal(manual_prove(&c, qdata, other_wg, NULL, 0, NULL, NULL), WIRE_REFUSED);
	client_close(&c);
	server_join(srv);
	assert_int_equal(r->verify_ret, -EACCES);
	assert_only_failed(&r->peer.verdict, CHECK_NONCE);
	assert_memory_equal(r->peer.wg_pubkey, other_wg, 32);
	assert_false(r->sent_keys);
	server_free(srv);
}

static void replayed_old_evidence_is_refused_in_a_new_session(void **state)
{
	struct server *srv = server_start(&joind_fx, 2, true);
	struct conn_result *r = &srv->res[1];
	uint8_t qdata[32], *old;
	size_t old_len;
	struct client c;

	server_run(srv);
	/* Session 1: accepted; its evidence recorded off the wire. */
	client_open(&c, srv->port, NULL, NULL);
	assert_int_equal(c.verify_ret, 0);
	atls_session_binding(c.s, ATLS_ROLE_NODE, node_wg, node_uuid, qdata);
	assert_int_equal(manual_prove(&c, qdata, node_wg, NULL, 0, &old, &old_len), WIRE_OK);
	client_close(&c);
	/* Session 2: the same bytes again. */
	client_open(&c, srv->port, NULL, NULL);
	assert_int_equal(c.verify_ret, 0);
	assert_int_equal(manual_prove(&c, qdata, node_wg, old, old_len, NULL, NULL), WIRE_REFUSED);
	client_close(&c);
	server_join(srv);
	assert_true(srv->res[0].peer.accepted);
	assert_int_equal(r->verify_ret, -EACCES);
	/* Another session's exporter, and a TPM clock that did not move. */
	assert_int_equal(r->peer.verdict.checks[CHECK_NONCE].status, CHECK_FAIL);
	assert_int_equal(r->peer.verdict.checks[CHECK_COUNTERS].status, CHECK_FAIL);
	assert_int_equal(r->peer.verdict.checks[CHECK_SIGNATURE].status, CHECK_PASS);
	assert_false(r->sent_keys);
	free(old);
	server_free(srv);
}

/* ---- hostile transports --------------------------------------------------------------------- */

/* A plain OpenSSL client (with a throwaway certificate, which the server requires), for
 * saying what atls_send would never say. */
static SSL_CTX *raw_client_ctx(int max_version)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();

	assert_non_null(c);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"raw", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	assert_int_equal(SSL_CTX_use_certificate(c, x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(c, key), 1);
	SSL_CTX_set_max_proto_version(c, max_version);
	SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
	X509_free(x);
	EVP_PKEY_free(key);
	return c;
}

/* Wait (bounded) until the server closes the connection; what it sent is discarded. */
static void drain_until_closed(SSL *ssl, int fd)
{
	/* Longer than the server's deadline. */
	struct timeval tv = { .tv_sec = test_ms(5000) / 1000 };
	char buf[4096];

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (ssl) {
		while (SSL_read(ssl, buf, sizeof(buf)) > 0)
			;
	} else {
		while (read(fd, buf, sizeof(buf)) > 0)
			;
	}
}

enum misbehaviour { OVERSIZED, TRUNCATED, GARBAGE_FRAME, SLOW_LORIS, GARBAGE_TLS, SILENT };

static void misbehave(uint16_t port, enum misbehaviour what)
{
	/* A HELLO header claiming 4 GiB of evidence; a HELLO cut short; a dribbled HELLO. */
	static const uint8_t huge[WIRE_HEADER_SIZE] = { 'C', 'N', 'C',	'L',  0,    1,
							0,   3,	  0xff, 0xff, 0xff, 0xff };
	static const uint8_t hello[] = { 'C', 'N', 'C', 'L', 0, 1, 0, 1, 0, 0, 0, 15, 0,  1,
					 0,   0,   0,	2,   0, 1, 0, 2, 0, 0, 0, 1,  'N' };
	static const char garbage[] = "GET / HTTP/1.1\r\nHost: joind\r\n\r\n";
	int fd = connect_to(port);
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;

	if (what == GARBAGE_TLS || what == SILENT) {
		if (what == GARBAGE_TLS)
			assert_true(write(fd, garbage, sizeof(garbage)) > 0);
		drain_until_closed(NULL, fd);
		close(fd);
		return;
	}
	ctx = raw_client_ctx(TLS1_3_VERSION);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	assert_int_equal(SSL_connect(ssl), 1);
	switch (what) {
	case OVERSIZED: SSL_write(ssl, huge, sizeof(huge)); break;
	case TRUNCATED:
		SSL_write(ssl, hello, sizeof(hello) - 5);
		SSL_shutdown(ssl);
		break;
	case GARBAGE_FRAME: SSL_write(ssl, garbage, sizeof(garbage)); break;
	case SLOW_LORIS:
		/* One byte every 150 ms: every read makes progress, the message never ends in
		 * time. Stops when the server has given up. */
		for (size_t i = 0; i < sizeof(hello); i++) {
			if (SSL_write(ssl, hello + i, 1) != 1)
				break;
			usleep((useconds_t)test_ms(150) * 1000);
		}
		break;
	default: break;
	}
	drain_until_closed(ssl, fd);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
}

static void hostile_clients_fail_within_the_deadline_and_others_are_still_served(void **state)
{
	static const struct {
		enum misbehaviour what;
		int err;
		const char *says;
	} cases[] = {
		{ OVERSIZED, -EMSGSIZE, "exceeds the limit" },
		{ TRUNCATED, -ECONNRESET, "closed" },
		{ GARBAGE_FRAME, -EBADMSG, "bad magic" },
		{ SLOW_LORIS, -ETIMEDOUT, "deadline" },
		{ GARBAGE_TLS, -EPROTO, "TLS handshake" },
		{ SILENT, -ETIMEDOUT, "TLS handshake: peer too slow" },
	};
	const int n = (int)(sizeof(cases) / sizeof(cases[0]));
	struct server *srv = server_start(&joind_fx, n + 1, false);
	struct client c;

	server_run(srv);
	for (int i = 0; i < n; i++)
		misbehave(srv->port, cases[i].what);
	node_join(&c, srv->port, NULL, NULL);
	assert_int_equal(c.verify_ret, 0);
	assert_int_equal(c.prove_ret, 0);
	assert_true(c.got_keys);
	client_close(&c);
	server_join(srv);
	for (int i = 0; i < n; i++) {
		struct conn_result *r = &srv->res[i];

		print_message("# connection %d: %s (%lld ms)\n", i, r->diag, (long long)r->ms);
		assert_int_equal(r->accept_ret, cases[i].err);
		assert_non_null(strstr(r->diag, cases[i].says));
		/* Within the deadline (plus scheduling slack), never held longer. */
		assert_true(r->ms < SERVER_TIMEOUT_MS + test_ms(1500));
		assert_false(r->sent_keys);
	}
	assert_int_equal(srv->res[n].verify_ret, 0);
	assert_true(srv->res[n].sent_keys);
	server_free(srv);
}

static void silent_node_mid_protocol_is_dropped_at_the_deadline(void **state)
{
	struct server *srv = server_start(&joind_fx, 1, false);
	struct atls_opts o = { ATLS_ROLE_NODE, ATLS_ROLE_JOIND, 10000 };
	struct atls_session *s;
	struct atls_ctx *ctx;
	struct wire_msg m;
	struct diag d;
	int fd;

	server_run(srv);
	fd = connect_to(srv->port);
	assert_int_equal(atls_ctx_new(false, &ctx, &d), 0);
	assert_int_equal(atls_client_connect(ctx, fd, &o, &s, &d), 0);
	/* Take the join service's evidence and never answer. */
	assert_int_equal(atls_recv(s, &m, &d), 0);
	assert_int_equal(m.type, WIRE_EVIDENCE);
	wire_msg_free(&m);
	server_join(srv);
	assert_int_equal(srv->res[0].prove_ret, -ETIMEDOUT);
	assert_true(srv->res[0].ms < SERVER_TIMEOUT_MS + test_ms(1500));
	atls_close(s);
	atls_ctx_free(ctx);
	close(fd);
	server_free(srv);
}

static void tls12_client_is_refused(void **state)
{
	struct server *srv = server_start(&joind_fx, 2, false);
	SSL_CTX *ctx = raw_client_ctx(TLS1_2_VERSION);
	struct client c;
	int fd;
	SSL *ssl;

	server_run(srv);
	fd = connect_to(srv->port);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	assert_int_not_equal(SSL_connect(ssl), 1);
	ERR_clear_error();
	SSL_free(ssl);
	close(fd);
	node_join(&c, srv->port, NULL, NULL);
	assert_int_equal(c.prove_ret, 0);
	client_close(&c);
	server_join(srv);
	print_message("# %s\n", srv->res[0].diag);
	assert_int_equal(srv->res[0].accept_ret, -EPROTO);
	assert_non_null(strstr(srv->res[0].diag, "unsupported protocol"));
	assert_true(srv->res[1].sent_keys);
	SSL_CTX_free(ctx);
	server_free(srv);
}

static void binding_covers_every_input(void **state)
{
	uint8_t exp[ATLS_EXPORTER_LEN] = { 1 }, base[32], q[32];
	uint8_t wg[32] = { 0 }, uuid[16] = { 0 };

	atls_binding(exp, 'N', wg, uuid, base);
	/* NULL means zeros, so a join service's binding is well defined. */
	atls_binding(exp, 'N', NULL, NULL, q);
	assert_memory_equal(q, base, 32);
	exp[31] ^= 1;
	atls_binding(exp, 'N', wg, uuid, q);
	assert_memory_not_equal(q, base, 32);
	exp[31] ^= 1;
	atls_binding(exp, 'J', wg, uuid, q);
	assert_memory_not_equal(q, base, 32);
	wg[31] = 1;
	atls_binding(exp, 'N', wg, uuid, q);
	assert_memory_not_equal(q, base, 32);
	wg[31] = 0;
	uuid[15] = 1;
	atls_binding(exp, 'N', wg, uuid, q);
	assert_memory_not_equal(q, base, 32);
}

static int group_setup(void **state)
{
	signal(SIGPIPE, SIG_IGN); /* a hostile peer closes while we write */
	if (fixture_start(&node_fx) < 0 || fixture_start(&joind_fx) < 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	fixture_stop(&node_fx);
	fixture_stop(&joind_fx);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(binding_covers_every_input),
		cmocka_unit_test(mutual_attestation_succeeds_and_both_sides_know_the_verdicts),
		cmocka_unit_test(known_node_reattests_without_a_challenge),
		cmocka_unit_test(node_with_wrong_pcrs_is_refused_with_the_check_named),
		cmocka_unit_test(join_service_with_a_bad_measurement_is_refused_and_gets_nothing),
		cmocka_unit_test(relayed_join_service_evidence_is_refused_by_the_node),
		cmocka_unit_test(node_evidence_from_another_session_is_refused),
		cmocka_unit_test(evidence_bound_to_another_wireguard_key_is_refused),
		cmocka_unit_test(replayed_old_evidence_is_refused_in_a_new_session),
		cmocka_unit_test(
		    hostile_clients_fail_within_the_deadline_and_others_are_still_served),
		cmocka_unit_test(silent_node_mid_protocol_is_dropped_at_the_deadline),
		cmocka_unit_test(tls12_client_is_refused),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
