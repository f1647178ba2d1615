// SPDX-License-Identifier: Apache-2.0
/* The join service core: listener, bounded worker pool, and one join per connection. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "conclave/agent.h"
#include "conclave/atls.h"
#include "conclave/evidence.h"
#include "conclave/joinclient.h"
#include "conclave/log.h"
#include "conclave/pending.h"
#include "conclave/peerset.h"
#include "conclave/util.h"

#include "joind_priv.h"

#define ACCEPT_POLL_MS 200

/* One connection's view of the store for atls_verify_peer's find_node. */
struct conn {
	struct joind *j;
	struct node_record record;
};

/* Known nodes (by EK identity) come back from the store: no challenge, counters must move on. */
static struct node_record *find_node(void *arg, const uint8_t node_id[32])
{
	struct conn *c = arg;
	struct member_tpm t;
	struct diag d;
	int ret;

	pthread_mutex_lock(&c->j->store_lock);
	ret = membership_tpm_of(c->j->store, node_id, &t, &d);
	pthread_mutex_unlock(&c->j->store_lock);
	if (ret < 0 || !t.active || t.ak_name_len > sizeof(c->record.ak_name))
		return NULL; /* first contact (a revoked node is refused by the join itself) */
	node_record_clear(&c->record);
	c->record.known = true;
	memcpy(c->record.node_id, node_id, sizeof(c->record.node_id));
	memcpy(c->record.ak_name, t.ak_name, t.ak_name_len);
	c->record.ak_name_len = t.ak_name_len;
	c->record.clock = t.clock;
	c->record.reset_count = t.reset_count;
	c->record.restart_count = t.restart_count;
	return &c->record;
}

/* The join record from what atls_verify_peer established (nothing from the request but the
 * endpoints). The evidence digest is over the attested facts: atls_peer does not keep the
 * evidence bytes. */
static int make_record(const struct atls_peer *p, const struct wire_msg *req, const char *endpoints,
		       struct join_record *r, struct diag *d)
{
	const struct verdict *v = &p->verdict;
	size_t off = 0;
	uint8_t facts[96 + MEMBERSHIP_AK_NAME_MAX];

	memset(r, 0, sizeof(*r));
	if (!p->has_wg_pubkey || !p->has_disk_uuid) {
		diag_set(d, "the node's evidence binds no WireGuard key or no disk UUID");
		return -EPERM;
	}
	memcpy(r->ek_id, p->node_id, sizeof(r->ek_id));
	if (v->ak_name_len == 0 || v->ak_name_len > sizeof(r->ak_name)) {
		diag_set(d, "AK name of %zu bytes", v->ak_name_len);
		return -EPERM;
	}
	memcpy(r->ak_name, v->ak_name, v->ak_name_len);
	r->ak_name_len = v->ak_name_len;
	memcpy(r->wg_pubkey, p->wg_pubkey, sizeof(r->wg_pubkey));
	memcpy(r->disk_uuid, p->disk_uuid, sizeof(r->disk_uuid));
	r->reset_count = v->reset_count;
	r->restart_count = v->restart_count;
	r->clock = v->clock;
	r->pcr_mask = v->pcr_mask & 0xffffffu;
	memcpy(r->pcrs, v->pcr_values, sizeof(r->pcrs));
	if (endpoints)
		snprintf(r->endpoints, sizeof(r->endpoints), "%s", endpoints);
	for (size_t i = 0; !endpoints && i < req->n_endpoints; i++) {
		int n =
		    snprintf(r->endpoints + off, sizeof(r->endpoints) - off, "%s%.*s", i ? "," : "",
			     (int)req->endpoints[i].len, (const char *)req->endpoints[i].p);

		if (n < 0 || (size_t)n >= sizeof(r->endpoints) - off) {
			diag_set(d, "endpoints longer than %d bytes", MEMBERSHIP_ENDPOINTS_MAX - 1);
			return -EPERM;
		}
		off += (size_t)n;
	}
	memcpy(facts, r->ek_id, 32);
	memcpy(facts + 32, r->wg_pubkey, 32);
	memcpy(facts + 64, r->disk_uuid, 16);
	memcpy(facts + 80, &r->reset_count, 4);
	memcpy(facts + 84, &r->restart_count, 4);
	memcpy(facts + 88, &r->clock, 8);
	memcpy(facts + 96, r->ak_name, r->ak_name_len);
	if (EVP_Digest(facts, 96 + r->ak_name_len, r->evidence_digest, NULL, EVP_sha256(), NULL) !=
	    1) {
		diag_set(d, "SHA-256 failed in OpenSSL");
		return -EIO;
	}
	return 0;
}

/* PCR 15 records the cluster a node joined since its boot (the agent extends it after joining):
 * zero before the first join, this cluster's value after. Anything else: it joined another
 * cluster since boot. A quote that leaves PCR 15 out cannot show this, and is refused. */
static int check_cluster_pcr(struct joind *j, const struct verdict *v, struct diag *d)
{
	static const uint8_t zero[32];
	uint8_t id[CLUSTER_ID_LEN], want[32];

	if (!(v->pcr_mask & 1u << AGENT_CLUSTER_PCR)) {
		diag_set(d, "the node's quote does not cover PCR %d", AGENT_CLUSTER_PCR);
		return -EPERM;
	}
	if (!joind_cluster(j, id, NULL))
		return -EIO;
	agent_cluster_pcr(id, want);
	if (memcmp(v->pcr_values[AGENT_CLUSTER_PCR], zero, 32) != 0 &&
	    memcmp(v->pcr_values[AGENT_CLUSTER_PCR], want, 32) != 0) {
		diag_set(d, "PCR %d shows the node joined another cluster since it booted",
			 AGENT_CLUSTER_PCR);
		return -EPERM;
	}
	return 0;
}

/* Admit the node and build the response document (peer set without the node itself); the
 * store is held for the whole step so the snapshot includes this join. */
static int admit(struct joind *j, const struct join_record *r, struct join_result *res,
		 uint8_t **doc, size_t *doc_len, struct diag *d)
{
	uint8_t ek[MEMBERSHIP_EK_ID_LEN];
	struct peer *peers = NULL;
	uint64_t gen = 0;
	size_t n = 0, k = 0;
	int ret;

	pthread_mutex_lock(&j->store_lock);
	ret = membership_join(j->store, r, res, d);
	if (ret == 0)
		ret = membership_check_disk_key(j->store, res->peer.node_id, r->disk_uuid, ek, d);
	if (ret == 0 && memcmp(ek, r->ek_id, sizeof(ek)) != 0) {
		diag_set(d, "store: node %lld has another EK", (long long)res->peer.node_id);
		ret = -EPERM;
	}
	if (ret == 0)
		ret = membership_snapshot(j->store, &gen, &peers, &n, d);
	pthread_mutex_unlock(&j->store_lock);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < n; i++)
		if (peers[i].node_id != res->peer.node_id)
			peers[k++] = peers[i];
	ret = peerset_encode(gen, &res->peer, peers, k, doc, doc_len);
	free(peers);
	if (ret == 0 && *doc_len > wire_body_max(WIRE_JOIN_RESPONSE) - KMS_DISK_KEY_LEN - 12) {
		free(*doc);
		*doc = NULL;
		ret = -E2BIG;
	}
	if (ret < 0)
		diag_set(d, "peer set of %zu members does not fit a JOIN_RESPONSE", k);
	return ret;
}

/* The node's certificate and the CA's, for the JOIN_RESPONSE. */
static int certify(struct joind *j, const struct join_result *res, uint8_t **cert, size_t *len,
		   const uint8_t **ca_der, size_t *ca_len, struct diag *d)
{
	uint8_t id[CLUSTER_ID_LEN];
	struct cluster_ca *ca = joind_cluster(j, id, NULL);

	if (!ca) {
		diag_set(d, "the join service lost its cluster CA");
		return -EIO;
	}
	cluster_ca_cert(ca, ca_der, ca_len);
	return cluster_ca_issue_node(ca, res->peer.node_id, res->peer.wg_pubkey,
				     res->peer.overlay_v4, res->peer.overlay_v6,
				     JOIND_NODE_CERT_DAYS, cert, len, d);
}

/* After mutual attestation: JOIN_REQUEST in, JOIN_RESPONSE (or a refusal) out. 1 when the
 * session went to the hub for peer-set updates (it owns s and fd from then on). */
static int join(struct joind *j, struct atls_session *s, int fd, const struct atls_peer *p,
		struct diag *d)
{
	struct wire_msg req, resp = { .type = WIRE_JOIN_RESPONSE };
	_cleanup_secret_ struct secret *key = NULL;
	struct join_record r;
	struct join_result res;
	struct kms *kms = NULL;
	uint8_t *doc = NULL, *cert = NULL;
	const uint8_t *ca_der = NULL;
	size_t doc_len = 0, cert_len = 0, ca_len = 0;
	bool subscribe;
	int ret;

	ret = atls_recv(s, &req, d);
	if (ret < 0)
		return ret;
	if (req.type != WIRE_JOIN_REQUEST) {
		diag_set(d, "expected JOIN_REQUEST, got %s", wire_type_name(req.type));
		atls_send_error(s, WIRE_BAD_MESSAGE, d->msg);
		wire_msg_free(&req);
		return -EPROTO;
	}
	subscribe = req.flags & JOIN_SUBSCRIBE;
	ret = make_record(p, &req, NULL, &r, d);
	wire_msg_free(&req);
	if (ret == 0)
		ret = check_cluster_pcr(j, &p->verdict, d);
	if (ret == 0)
		ret = admit(j, &r, &res, &doc, &doc_len, d);
	if (ret == 0) {
		hub_notify(j->hub);
		ret = joind_cluster(j, NULL, &kms)
			  ? kms_disk_key(kms, r.ek_id, r.disk_uuid, &key, d)
			  : -EIO;
	}
	if (ret == 0 && !key)
		ret = -ENOMEM;
	if (ret == 0)
		ret = certify(j, &res, &cert, &cert_len, &ca_der, &ca_len, d);
	if (ret != 0) {
		bool refused = ret == -EPERM || ret == -EKEYREVOKED;

		atls_send_error(s, refused ? WIRE_REFUSED : WIRE_INTERNAL, d->msg);
		free(doc);
		free(cert);
		return refused ? -EACCES : ret;
	}
	resp.key_material = (struct blob){ key->data, key->len };
	resp.peer_set = (struct blob){ doc, doc_len };
	resp.ca_cert = (struct blob){ ca_der, ca_len };
	resp.node_cert = (struct blob){ cert, cert_len };
	ret = atls_send(s, &resp, d);
	free(doc);
	free(cert);
	if (ret < 0)
		return ret;
	log_info("joind: node %lld %s (%s, %s, %s), generation %llu%s", (long long)res.peer.node_id,
		 res.rejoin ? "rejoined" : "joined", res.peer.overlay_v4, res.peer.overlay_v6,
		 res.peer.pod_cidr, (unsigned long long)res.generation,
		 subscribe ? ", subscribed" : "");
	if (res.disk_bound)
		log_info("joind: node %lld bound its new disk (released by the operator)",
			 (long long)res.peer.node_id);
	if (!subscribe)
		return 0;
	hub_add(j->hub, s, fd, res.peer.node_id, res.generation);
	return 1;
}

static void revoke_for(struct joind *j, int64_t node_id, const char *why)
{
	struct diag d = { { 0 } };
	int ret;

	pthread_mutex_lock(&j->store_lock);
	ret = membership_revoke(j->store, node_id, &d);
	pthread_mutex_unlock(&j->store_lock);
	if (ret == 0) {
		log_warn("joind: node %lld revoked: %s", (long long)node_id, why);
		hub_notify(j->hub);
	} else {
		log_warn("joind: revoking node %lld (%s): %s", (long long)node_id, why, d.msg);
	}
}

/* Only a known, active member of exactly this node id, whose disk is not released, may
 * re-attest on its session: checked on the evidence's EK before any verification, so no
 * challenge round runs on the hub thread.
 * endpoints gets what it registered (a re-attestation does not repeat them). */
static int reattest_identity(struct joind *j, const struct wire_msg *m, int64_t node_id,
			     char endpoints[MEMBERSHIP_ENDPOINTS_MAX], struct diag *d)
{
	struct evidence ev;
	struct member_tpm t;
	uint8_t ek[32];
	int ret = evidence_decode(m->evidence.p, m->evidence.len, &ev, d);

	if (ret < 0)
		return ret;
	evidence_node_id(&ev, ek);
	pthread_mutex_lock(&j->store_lock);
	ret = membership_tpm_of(j->store, ek, &t, d);
	pthread_mutex_unlock(&j->store_lock);
	if (ret == 0 && (!t.active || t.node_id != node_id)) {
		diag_set(d, "evidence of another node than the session's");
		ret = -EPERM;
	}
	/* Only a join binds a new disk (and hands out its key): end the session, revoke nothing. */
	if (ret == 0 && t.disk_released) {
		diag_set(d, "the operator released node %lld's disk: rejoin to bind a new one",
			 (long long)node_id);
		ret = -EKEYREVOKED;
	}
	if (ret == 0)
		memcpy(endpoints, t.endpoints, MEMBERSHIP_ENDPOINTS_MAX);
	return ret;
}

/* The hub's handler: a held node re-attests (issue 6: continuous attestation), typically with
 * a new WireGuard key. Accepted: the member is updated and everyone hears of its new key.
 * Refused: the node is revoked. */
static int reattest(void *arg, struct atls_session *s, int64_t node_id, struct wire_msg *m)
{
	struct joind *j = arg;
	struct conn c = { .j = j };
	struct policy_ref *pol;
	struct atls_verifier v;
	struct atls_peer peer;
	struct join_record r;
	struct join_result res = { 0 };
	struct diag d = { { 0 } };
	char endpoints[MEMBERSHIP_ENDPOINTS_MAX];
	int ret;

	if (m->type != WIRE_EVIDENCE) {
		log_warn("joind: node %lld sent %s on its session", (long long)node_id,
			 wire_type_name(m->type));
		return -EPROTO;
	}
	ret = reattest_identity(j, m, node_id, endpoints, &d);
	if (ret < 0) {
		atls_send_error(s, WIRE_REFUSED, d.msg);
		log_warn("joind: re-attestation of node %lld refused: %s", (long long)node_id,
			 d.msg);
		return ret;
	}
	pol = joind_policy_get(j);
	v = (struct atls_verifier){ &pol->p, j->ca, find_node, &c };
	ret = atls_verify_evidence_msg(s, &v, m, &peer, &d);
	joind_policy_put(j, pol);
	node_record_clear(&c.record);
	if (ret == 0)
		ret = make_record(&peer, NULL, endpoints, &r, &d);
	if (ret == 0)
		ret = check_cluster_pcr(j, &peer.verdict, &d);
	if (ret == 0) {
		pthread_mutex_lock(&j->store_lock);
		ret = membership_join(j->store, &r, &res, &d);
		pthread_mutex_unlock(&j->store_lock);
	}
	/* Its disk was released while it held its session: not a sign of compromise. The session
	 * ends; the node rejoins, where a join with a new disk binds it. */
	if (ret == -EKEYREVOKED) {
		atls_send_error(s, WIRE_REFUSED, d.msg);
		log_warn("joind: re-attestation of node %lld refused: %s", (long long)node_id,
			 d.msg);
		return ret;
	}
	if (ret == -EACCES || ret == -EPERM) {
		revoke_for(j, node_id, d.msg);
		return -EACCES;
	}
	if (ret < 0) {
		log_warn("joind: re-attestation of node %lld: %s", (long long)node_id, d.msg);
		return ret;
	}
	hub_notify(j->hub);
	log_info("joind: node %lld re-attested, generation %llu", (long long)node_id,
		 (unsigned long long)res.generation);
	return 1;
}

static void overdue(void *arg, int64_t node_id)
{
	revoke_for(arg, node_id, "re-attestation overdue");
}

/* A node: verify it against the current policy, then the join. */
static int serve_node(struct joind *j, struct atls_session *s, int fd, const char **stage,
		      struct diag *d)
{
	struct conn c = { .j = j };
	struct policy_ref *pol = joind_policy_get(j);
	struct atls_verifier v = { &pol->p, j->ca, find_node, &c };
	struct atls_peer peer;
	int ret;

	*stage = "node attestation";
	ret = atls_verify_peer(s, &v, &peer, d);
	joind_policy_put(j, pol);
	node_record_clear(&c.record);
	if (ret == 0) {
		*stage = "join";
		ret = join(j, s, fd, &peer, d);
	}
	return ret;
}

/* One connection. true when the hub took it over. */
static bool serve(struct joind *j, int fd)
{
	struct atls_opts o = { ATLS_ROLE_JOIND, ATLS_ROLE_ANY, j->cfg->timeout_ms };
	struct atls_session *s = NULL;
	struct diag d = { { 0 } };
	const char *stage = "handshake";
	uint8_t id[CLUSTER_ID_LEN];
	bool ready;
	int ret;

	ret = atls_server_accept(j->ctx, fd, &o, &s, &d);
	if (ret == 0) {
		ready = joind_cluster(j, id, NULL) != NULL;
		/* Nothing for a node to join yet: say so before spending a quote on it. */
		if (!ready && atls_peer_role(s) == ATLS_ROLE_NODE) {
			atls_send_error(s, WIRE_NOT_READY,
					"the join service has no master secret yet: the operator "
					"must run conclavectl init (new cluster) or recover");
			atls_close(s);
			return false;
		}
		stage = "our attestation";
		ret = atls_prove(s, &j->self, ready ? id : NULL, NULL, &d);
	}
	if (ret == 0 && atls_peer_role(s) == ATLS_ROLE_OPERATOR) {
		joind_admin(j, s, ready);
	} else if (ret == 0) {
		ret = serve_node(j, s, fd, &stage, &d);
		if (ret == 1)
			return true;
	}
	if (ret < 0)
		log_warn("joind: connection refused at %s: %s", stage, d.msg);
	atls_close(s);
	return false;
}

static void *worker(void *arg)
{
	struct joind *j = arg;

	for (;;) {
		int fd;

		pthread_mutex_lock(&j->lock);
		while (!j->queued && !j->stopping)
			pthread_cond_wait(&j->cond, &j->lock);
		if (!j->queued) {
			pthread_mutex_unlock(&j->lock);
			return NULL;
		}
		fd = j->queue[j->head];
		j->head = (j->head + 1) % j->cfg->workers;
		j->queued--;
		j->busy++;
		pthread_mutex_unlock(&j->lock);
		if (!serve(j, fd))
			close(fd);
		pthread_mutex_lock(&j->lock);
		j->busy--;
		pthread_mutex_unlock(&j->lock);
	}
}

/* Hand fd to an idle worker, or close it at once when all are taken. */
static void dispatch(struct joind *j, int fd)
{
	bool taken = false;

	pthread_mutex_lock(&j->lock);
	if (j->busy + j->queued < j->cfg->workers) {
		j->queue[(j->head + j->queued) % j->cfg->workers] = fd;
		j->queued++;
		taken = true;
		pthread_cond_signal(&j->cond);
	}
	pthread_mutex_unlock(&j->lock);
	if (!taken) {
		log_warn("joind: all %u workers busy: connection closed", j->cfg->workers);
		close(fd);
	}
}

static int listen_on(const struct joind_config *c, int *out, struct diag *d)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char service[8], host[NI_MAXHOST], port[NI_MAXSERV], text[32];
	int fd, one = 1, rc;

	snprintf(service, sizeof(service), "%u", c->port);
	rc = getaddrinfo(c->listen_addr, service, &hints, &ai);
	if (rc != 0) {
		diag_set(d, "listen address %s: %s", c->listen_addr, gai_strerror(rc));
		return -EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	rc = fd < 0 ? -errno : 0;
	if (rc == 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
			bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0 ||
			getsockname(fd, (struct sockaddr *)&ss, &sl) < 0))
		rc = -errno;
	freeaddrinfo(ai);
	if (rc == 0 && getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port,
				   sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		rc = -EINVAL;
	if (rc < 0) {
		diag_set(d, "listen on %s port %u: %s", c->listen_addr, c->port, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	printf("listening on %s %s\n", host, port);
	fflush(stdout);
	snprintf(text, sizeof(text), "%s\n", port);
	if (c->port_file && write_file_atomic(c->port_file, text, strlen(text), 0644) < 0) {
		diag_set(d, "cannot write the port to %s", c->port_file);
		close(fd);
		return -EIO;
	}
	*out = fd;
	return 0;
}

/* A recovery file given at start: the master secret unsealed from the control plane's own
 * encrypted disk (issue 7), or a test's. */
static int load_recovery(struct joind *j, struct diag *d)
{
	struct kms *k = NULL;
	int ret;

	if (!j->cfg->recovery) {
		log_info("joind: no master secret: waiting for conclavectl init or recover");
		return 0;
	}
	ret = kms_recovery_read(j->cfg->recovery, &k, d);
	if (ret == 0)
		ret = joind_install_kms(j, k, INSTALL_ANY, d);
	return ret;
}

static int load_node_policy(struct joind *j, struct diag *d)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	unsigned int mismatched, revoked;
	int ret;

	ret = read_file(j->cfg->node_policy, POLICY_MAX_SIZE, &buf, &len);
	if (ret < 0) {
		diag_set(d, "node policy %s: %s", j->cfg->node_policy, strerror(-ret));
		return ret;
	}
	ret = joind_set_policy(j, buf, len, false, &mismatched, &revoked, d);
	free(buf);
	if (ret < 0)
		diag_prefix(d, "node policy %s", j->cfg->node_policy);
	return ret;
}

/* Policies, keys, roots, store, master secret, TLS context, our prover; and one quote to check
 * our TPM (this also creates our AK before workers race for it). */
static int load(struct joind *j, struct diag *d)
{
	const struct joind_config *c = j->cfg;
	uint8_t *ev = NULL, qdata[32] = { 0 };
	struct attest_opts probe;
	size_t len = 0;
	int ret;

	ret = policy_load_public(c->policy_key, &j->policy_pub, d);
	if (ret == 0 && c->operator_key) {
		ret = policy_load_public(c->operator_key, &j->operator_pub, d);
		if (ret < 0)
			diag_prefix(d, "operator key");
	}
	if (ret == 0)
		ret = ca_store_load(c->ca_bundle, &j->ca, d);
	/* With a state disk the store opens at init or recover, and the disk is ours by EK. */
	if (ret == 0 && !c->state_disk)
		ret = membership_open(c->db_path, &c->ranges, &j->store, d);
	if (ret == 0 && c->state_disk)
		ret = attest_node_id(c->tcti, j->node_id, d);
	if (ret == 0)
		ret = load_node_policy(j, d);
	if (ret == 0)
		ret = load_recovery(j, d);
	if (ret == 0)
		ret = atls_ctx_new(true, &j->ctx, d);
	if (ret == 0)
		ret = attest_ctx_new(&j->self, &j->prover, d);
	if (ret == 0) {
		j->self.ctx = j->prover;
		j->rl = ratelimit_new(c->rate > 0 ? c->rate : JOIND_DEFAULT_RATE,
				      c->burst > 0 ? c->burst : JOIND_DEFAULT_BURST, 4096);
		if (!j->rl) {
			diag_set(d, "rate limit: bad rate/burst or out of memory");
			ret = -EINVAL;
		}
	}
	if (ret < 0)
		return ret;
	probe = j->self;
	probe.qdata = qdata;
	probe.qlen = sizeof(qdata);
	ret = attest_produce(&probe, &ev, &len, d);
	free(ev);
	if (ret < 0)
		diag_prefix(d, "our own TPM (%s)", c->tcti);
	return ret;
}

static void unload(struct joind *j)
{
	hub_stop(j->hub);
	atls_ctx_free(j->ctx);
	attest_ctx_free(j->prover);
	membership_close(j->store);
	cluster_ca_free(j->cluster_ca);
	kms_free(j->kms);
	if (j->node_policy)
		joind_policy_put(j, j->node_policy);
	ratelimit_free(j->rl);
	EVP_PKEY_free(j->policy_pub);
	EVP_PKEY_free(j->operator_pub);
	X509_STORE_free(j->ca);
	free(j->queue);
	free(j->threads);
}

static int start_pool(struct joind *j, struct diag *d)
{
	unsigned int n = j->cfg->workers;

	j->queue = calloc(n, sizeof(*j->queue));
	j->threads = calloc(n, sizeof(*j->threads));
	if (!j->queue || !j->threads) {
		diag_set(d, "out of memory for %u workers", n);
		return -ENOMEM;
	}
	for (; j->n_threads < n; j->n_threads++) {
		int rc = pthread_create(&j->threads[j->n_threads], NULL, worker, j);

		if (rc != 0) {
			diag_set(d, "cannot start worker %u: %s", j->n_threads, strerror(rc));
			return -rc;
		}
	}
	return 0;
}

static void stop_pool(struct joind *j)
{
	pthread_mutex_lock(&j->lock);
	j->stopping = true;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	for (unsigned int i = 0; i < j->n_threads; i++)
		pthread_join(j->threads[i], NULL);
}

/* SIGHUP: the policy file may hold new signed measurements. */
static void maybe_reload(struct joind *j)
{
	struct diag d = { { 0 } };

	if (!j->cfg->reload || !*j->cfg->reload)
		return;
	*j->cfg->reload = 0;
	if (load_node_policy(j, &d) < 0)
		log_warn("joind: policy reload refused, the old policy stays: %s", d.msg);
}

static void dispatch_ready(void *arg, int fd)
{
	dispatch(arg, fd);
}

/* One line per 100 connections closed before their first TLS record. */
static void log_unready(const struct pending *pend, uint64_t *logged)
{
	const struct pending_stats *st = pending_stats(pend);
	uint64_t bad = st->garbage + st->closed + st->expired + st->evicted;

	if (bad / 100 == *logged / 100)
		return;
	*logged = bad;
	log_warn("joind: %llu connections closed before a complete TLS hello (not TLS %llu, "
		 "closed by the client %llu, too slow %llu, pushed out by newer ones %llu)",
		 (unsigned long long)bad, (unsigned long long)st->garbage,
		 (unsigned long long)st->closed, (unsigned long long)st->expired,
		 (unsigned long long)st->evicted);
}

/* Accepted connections wait in pend (no worker) until their ClientHello is complete. */
static void accept_loop(struct joind *j, int lfd, struct pending *pend)
{
	uint64_t limited = 0, unready = 0;

	while (!*j->cfg->stop) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd;

		maybe_reload(j);
		if (pending_poll(pend, lfd, ACCEPT_POLL_MS, dispatch_ready, j) <= 0) {
			log_unready(pend, &unready);
			continue;
		}
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
				log_warn("joind: accept: %s", strerror(errno));
			continue;
		}
		if (!ratelimit_allow(j->rl, (struct sockaddr *)&ss, sl, mono_ns())) {
			/* One line per 100 refusals: a flood must not flood the log too. */
			if (limited++ % 100 == 0)
				log_warn("joind: connection rate limit hit (%llu refused so far)",
					 (unsigned long long)limited);
			close(fd);
			continue;
		}
		pending_add(pend, fd);
	}
}

int joind_run(const struct joind_config *c, struct diag *d)
{
	struct joind j = {
		.cfg = c,
		.self = { .tcti = c->tcti,
			  .ak_state = c->ak_state,
			  .pcr_mask = c->pcr_mask,
			  .event_log = c->event_log,
			  .ek_chain = c->ek_chain,
			  .ak_per_boot = c->ak_per_boot },
		.store_lock = PTHREAD_MUTEX_INITIALIZER,
		.state_lock = PTHREAD_MUTEX_INITIALIZER,
		.install_lock = PTHREAD_MUTEX_INITIALIZER,
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
	};
	struct hub_config hc = { .store_lock = &j.store_lock,
				 .max_sessions = c->max_sessions,
				 .heartbeat_ms = c->heartbeat_ms,
				 .on_message = reattest,
				 .on_overdue = overdue,
				 .arg = &j,
				 .reattest_ms = c->reattest_deadline_ms };
	struct pending *pend = NULL;
	int lfd = -1, ret;

	if (!c->stop || !c->listen_addr || !c->tcti || !c->ak_state || !c->node_policy ||
	    !c->policy_key || !c->ca_bundle || !c->db_path || c->workers == 0 ||
	    c->workers > JOIND_MAX_WORKERS) {
		diag_set(d,
			 "joind: missing option (address, TPM, AK state, node policy and key, "
			 "CA bundle, store; 1..%d workers)",
			 JOIND_MAX_WORKERS);
		return -EINVAL;
	}
	ret = load(&j, d);
	if (ret == 0) {
		hc.store = &j.store;
		ret = hub_start(&hc, &j.hub, d);
	}
	if (ret == 0)
		ret = start_pool(&j, d);
	if (ret == 0)
		ret = listen_on(c, &lfd, d);
	if (ret == 0) {
		/* As long as a handshake may take: a hello must be complete by then. */
		pend = pending_new(PENDING_DEFAULT_MAX,
				   c->timeout_ms ? c->timeout_ms : ATLS_DEFAULT_TIMEOUT_MS);
		if (!pend) {
			diag_set(d, "joind: no memory for the table of waiting connections");
			ret = -ENOMEM;
		}
	}
	if (ret == 0)
		accept_loop(&j, lfd, pend);
	pending_free(pend);
	if (lfd >= 0)
		close(lfd);
	stop_pool(&j);
	unload(&j);
	return ret;
}
