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
#include <unistd.h>

#include <openssl/evp.h>

#include "conclave/atls.h"
#include "conclave/joinclient.h"
#include "conclave/peerset.h"
#include "conclave/joind.h"
#include "conclave/kms.h"
#include "conclave/log.h"
#include "conclave/util.h"

#define ACCEPT_POLL_MS 200

struct joind {
	const struct joind_config *cfg;
	struct attest_opts self; /* our own attestation */
	struct policy node_policy;
	X509_STORE *ca;
	struct kms *kms;
	struct atls_ctx *ctx;
	/* The store has one connection: every use holds store_lock. */
	struct membership *store;
	pthread_mutex_t store_lock;
	/* Workers share one TPM, which may have no resource manager (swtpm): one session at a
	 * time, held only while attest_produce talks to the TPM, never across network I/O. */
	pthread_mutex_t tpm_lock;
	/* The pool: the acceptor queues fds, idle workers take them. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int *queue; /* ring of cfg->workers fds */
	size_t head, queued;
	unsigned int busy;
	bool stopping;
	pthread_t *threads;
	unsigned int n_threads;
};

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
static int make_record(const struct atls_peer *p, const struct wire_msg *req, struct join_record *r,
		       struct diag *d)
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
	for (size_t i = 0; i < req->n_endpoints; i++) {
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

/* After mutual attestation: JOIN_REQUEST in, JOIN_RESPONSE (or a refusal) out. */
static int join(struct joind *j, struct atls_session *s, const struct atls_peer *p, struct diag *d)
{
	struct wire_msg req, resp = { .type = WIRE_JOIN_RESPONSE };
	_cleanup_secret_ struct secret *key = NULL;
	struct join_record r;
	struct join_result res;
	uint8_t *doc = NULL;
	size_t doc_len = 0;
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
	ret = make_record(p, &req, &r, d);
	wire_msg_free(&req);
	if (ret == 0)
		ret = admit(j, &r, &res, &doc, &doc_len, d);
	if (ret == 0)
		ret = kms_disk_key(j->kms, r.ek_id, r.disk_uuid, &key, d);
	if (ret == 0 && !key)
		ret = -ENOMEM;
	if (ret != 0 || !key) {
		atls_send_error(s, ret == -EPERM ? WIRE_REFUSED : WIRE_INTERNAL, d->msg);
		free(doc);
		return ret == -EPERM ? -EACCES : ret;
	}
	resp.key_material = (struct blob){ key->data, key->len };
	resp.peer_set = (struct blob){ doc, doc_len };
	ret = atls_send(s, &resp, d);
	free(doc);
	if (ret == 0)
		log_info("joind: node %lld %s (%s, %s, %s), generation %llu",
			 (long long)res.peer.node_id, res.rejoin ? "rejoined" : "joined",
			 res.peer.overlay_v4, res.peer.overlay_v6, res.peer.pod_cidr,
			 (unsigned long long)res.generation);
	return ret;
}

static void serve(struct joind *j, int fd)
{
	struct atls_opts o = { ATLS_ROLE_JOIND, ATLS_ROLE_NODE, j->cfg->timeout_ms };
	struct conn c = { .j = j };
	struct atls_verifier v = { &j->node_policy, j->ca, find_node, &c };
	struct atls_session *s = NULL;
	struct atls_peer peer;
	struct diag d = { { 0 } };
	const char *stage = "handshake";
	int ret;

	ret = atls_server_accept(j->ctx, fd, &o, &s, &d);
	if (ret == 0) {
		stage = "our attestation";
		ret = atls_prove(s, &j->self, NULL, NULL, &d);
	}
	if (ret == 0) {
		stage = "node attestation";
		ret = atls_verify_peer(s, &v, &peer, &d);
	}
	if (ret == 0) {
		stage = "join";
		ret = join(j, s, &peer, &d);
	}
	if (ret < 0)
		log_warn("joind: connection refused at %s: %s", stage, d.msg);
	node_record_clear(&c.record);
	atls_close(s);
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
		serve(j, fd);
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

/* Policies, roots, master secret, store, TLS context; and one quote to check our TPM (this
 * also creates our AK before workers race for it). */
static int load(struct joind *j, struct diag *d)
{
	const struct joind_config *c = j->cfg;
	uint8_t *buf = NULL, *ev = NULL, qdata[32] = { 0 };
	EVP_PKEY *pub = NULL;
	size_t len = 0;
	int ret;

	ret = policy_load_public(c->policy_key, &pub, d);
	if (ret == 0) {
		ret = read_file(c->node_policy, POLICY_MAX_SIZE, &buf, &len);
		if (ret < 0)
			diag_set(d, "node policy %s: %s", c->node_policy, strerror(-ret));
	}
	if (ret == 0)
		ret = policy_verify((const char *)buf, len, pub, &j->node_policy, d);
	free(buf);
	EVP_PKEY_free(pub);
	if (ret == 0)
		ret = ca_store_load(c->ca_bundle, &j->ca, d);
	if (ret == 0)
		ret = kms_recovery_read(c->recovery, &j->kms, d);
	if (ret == 0)
		ret = membership_open(c->db_path, &c->ranges, &j->store, d);
	if (ret == 0)
		ret = atls_ctx_new(true, &j->ctx, d);
	if (ret < 0)
		return ret;
	{
		struct attest_opts probe = j->self;

		probe.qdata = qdata;
		probe.qlen = sizeof(qdata);
		ret = attest_produce(&probe, &ev, &len, d);
		free(ev);
		if (ret < 0)
			diag_prefix(d, "our own TPM (%s)", c->tcti);
	}
	return ret;
}

static void unload(struct joind *j)
{
	atls_ctx_free(j->ctx);
	membership_close(j->store);
	kms_free(j->kms);
	X509_STORE_free(j->ca);
	policy_free(&j->node_policy);
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

static void accept_loop(struct joind *j, int lfd)
{
	while (!*j->cfg->stop) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, ACCEPT_POLL_MS) <= 0)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			dispatch(j, fd);
		else if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			log_warn("joind: accept: %s", strerror(errno));
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
			  .ek_chain = c->ek_chain },
		.store_lock = PTHREAD_MUTEX_INITIALIZER,
		.tpm_lock = PTHREAD_MUTEX_INITIALIZER,
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
	};
	int lfd = -1, ret;

	j.self.tpm_lock = &j.tpm_lock;
	if (!c->stop || !c->listen_addr || !c->tcti || !c->ak_state || !c->node_policy ||
	    !c->policy_key || !c->ca_bundle || !c->db_path || !c->recovery || c->workers == 0 ||
	    c->workers > JOIND_MAX_WORKERS) {
		diag_set(d,
			 "joind: missing option (address, TPM, AK state, node policy and key, "
			 "CA bundle, store, recovery file; 1..%d workers)",
			 JOIND_MAX_WORKERS);
		return -EINVAL;
	}
	ret = load(&j, d);
	if (ret == 0)
		ret = start_pool(&j, d);
	if (ret == 0)
		ret = listen_on(c, &lfd, d);
	if (ret == 0)
		accept_loop(&j, lfd);
	if (lfd >= 0)
		close(lfd);
	stop_pool(&j);
	unload(&j);
	return ret;
}
