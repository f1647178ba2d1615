// SPDX-License-Identifier: Apache-2.0
/* The node side of a join: attested TLS to the join service, then JOIN_REQUEST/JOIN_RESPONSE;
 * the session stays open for peer-set updates when the caller asks for them. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conclave/atls.h"
#include "conclave/joinclient.h"
#include "conclave/kms.h"
#include "conclave/net.h"
#include "conclave/util.h"

void join_info_clear(struct join_info *j)
{
	secret_free(j->disk_key);
	peerset_clear(&j->view);
	free(j->ca_cert);
	free(j->node_cert);
	memset(j, 0, sizeof(*j));
}

/* The certificates of a JOIN_RESPONSE: the CA must carry the identity the join service's quote
 * bound, and our certificate must certify our own WireGuard key for our node id. */
static int take_certs(const struct joinclient_config *c, const struct wire_msg *m,
		      struct join_info *out, struct diag *d)
{
	int64_t id = 0;
	int ret;

	ret = cluster_ca_check(m->ca_cert.p, m->ca_cert.len, out->cluster_id, d);
	if (ret == 0)
		ret = cluster_node_cert_check(m->ca_cert.p, m->ca_cert.len, m->node_cert.p,
					      m->node_cert.len, c->wg_pubkey, &id, d);
	if (ret == 0 && id != out->view.self.node_id) {
		diag_set(d, "certificate for node %lld, but we are node %lld", (long long)id,
			 (long long)out->view.self.node_id);
		ret = -EBADMSG;
	}
	if (ret < 0) {
		diag_prefix(d, "JOIN_RESPONSE certificates");
		return -EPROTO;
	}
	out->ca_cert = malloc(m->ca_cert.len);
	out->node_cert = malloc(m->node_cert.len);
	if (!out->ca_cert || !out->node_cert) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	memcpy(out->ca_cert, m->ca_cert.p, m->ca_cert.len);
	out->ca_len = m->ca_cert.len;
	memcpy(out->node_cert, m->node_cert.p, m->node_cert.len);
	out->node_cert_len = m->node_cert.len;
	return 0;
}

/* The join service's answer to our JOIN_REQUEST. */
static int read_response(const struct joinclient_config *c, const struct wire_msg *m,
			 struct join_info *out, struct diag *d)
{
	int ret;

	if (m->type == WIRE_VERDICT || m->type == WIRE_ERROR) {
		diag_set(d, "join service refused the join (%s): %.*s", wire_code_name(m->code),
			 (int)m->text.len, m->text.p ? (const char *)m->text.p : "");
		return m->code == WIRE_REFUSED ? -EACCES : -EPROTO;
	}
	if (m->type != WIRE_JOIN_RESPONSE) {
		diag_set(d, "join service sent %s instead of JOIN_RESPONSE",
			 wire_type_name(m->type));
		return -EPROTO;
	}
	if (m->key_material.len != KMS_DISK_KEY_LEN) {
		diag_set(d, "JOIN_RESPONSE: want a %d-byte disk key", KMS_DISK_KEY_LEN);
		return -EPROTO;
	}
	out->disk_key = secret_new(KMS_DISK_KEY_LEN);
	if (!out->disk_key) {
		diag_set(d, "out of locked memory for the disk key");
		return -ENOMEM;
	}
	memcpy(out->disk_key->data, m->key_material.p, KMS_DISK_KEY_LEN);
	ret = peerset_decode(m->peer_set.p, m->peer_set.len, &out->view, d);
	if (ret == 0 && memcmp(out->view.self.wg_pubkey, c->wg_pubkey, 32) != 0) {
		diag_set(d, "JOIN_RESPONSE: our allocation names another WireGuard key");
		ret = -EPROTO;
	}
	if (ret == 0)
		ret = take_certs(c, m, out, d);
	return ret;
}

static int join_session(const struct joinclient_config *c, struct atls_session *s, bool subscribe,
			struct join_info *out, struct diag *d)
{
	struct atls_verifier v = { c->cp_policy, c->cp_ca, NULL, NULL };
	struct wire_msg req = { .type = WIRE_JOIN_REQUEST }, resp = { 0 };
	struct atls_peer joind;
	int ret;

	/* The join service first: a node gives nothing of its own to one it refused. */
	ret = atls_verify_peer(s, &v, &joind, d);
	if (ret == -EAGAIN) {
		diag_prefix(d, "the join service is not ready");
		return ret;
	}
	if (ret < 0) {
		diag_prefix(d, "join service failed attestation");
		return ret;
	}
	if (!joind.has_cluster_id) {
		diag_set(d, "the join service bound no cluster identity into its quote");
		return -EACCES;
	}
	if (c->expect_cluster && memcmp(c->expect_cluster, joind.cluster_id, 32) != 0) {
		diag_set(d, "the join service serves another cluster than ours");
		return -EACCES;
	}
	memcpy(out->cluster_id, joind.cluster_id, sizeof(out->cluster_id));
	ret = atls_prove(s, &c->attest, c->wg_pubkey, c->disk_uuid, d);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < c->n_endpoints && i < WIRE_MAX_ENDPOINTS; i++)
		req.endpoints[req.n_endpoints++] =
		    (struct blob){ (const uint8_t *)c->endpoints[i], strlen(c->endpoints[i]) };
	if (c->node_name)
		req.node_name =
		    (struct blob){ (const uint8_t *)c->node_name, strlen(c->node_name) };
	req.flags = subscribe ? JOIN_SUBSCRIBE : 0;
	ret = atls_send(s, &req, d);
	if (ret == 0)
		ret = atls_recv(s, &resp, d);
	if (ret < 0)
		return ret;
	ret = read_response(c, &resp, out, d);
	wire_msg_free(&resp);
	return ret;
}

struct joinclient_session {
	struct atls_ctx *ctx;
	struct atls_session *s;
	int fd;
	uint64_t heard_ms; /* CLOCK_MONOTONIC: the last message from the join service */
};

void joinclient_close(struct joinclient_session *sess)
{
	if (!sess)
		return;
	atls_close(sess->s);
	atls_ctx_free(sess->ctx);
	if (sess->fd >= 0)
		close(sess->fd);
	free(sess);
}

static int open_join(const struct joinclient_config *c, bool subscribe, struct join_info *out,
		     struct joinclient_session **sess, struct diag *d)
{
	struct atls_opts o = { ATLS_ROLE_NODE, ATLS_ROLE_JOIND, c->timeout_ms };
	struct joinclient_session *js = calloc(1, sizeof(*js));
	int ret;

	memset(out, 0, sizeof(*out));
	if (!js) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	js->fd = -1;
	if (!c->wg_pubkey || !c->disk_uuid || c->n_endpoints == 0) {
		diag_set(d, "join: a WireGuard key, a disk UUID and an endpoint are required");
		ret = -EINVAL;
	} else {
		ret = net_connect(c->host, c->port,
				  c->connect_timeout_ms ? c->connect_timeout_ms
							: ATLS_DEFAULT_TIMEOUT_MS,
				  &js->fd, d);
	}
	if (ret == 0)
		ret = atls_ctx_new(false, &js->ctx, d);
	if (ret == 0)
		ret = atls_client_connect(js->ctx, js->fd, &o, &js->s, d);
	if (ret == 0)
		ret = join_session(c, js->s, subscribe, out, d);
	if (ret < 0 || !sess) {
		if (ret < 0)
			join_info_clear(out);
		joinclient_close(js);
		return ret;
	}
	js->heard_ms = mono_ms();
	*sess = js;
	return 0;
}

int joinclient_join(const struct joinclient_config *c, struct join_info *out, struct diag *d)
{
	return open_join(c, false, out, NULL, d);
}

int joinclient_subscribe(const struct joinclient_config *c, struct join_info *out,
			 struct joinclient_session **sess, struct diag *d)
{
	return open_join(c, true, out, sess, d);
}

int joinclient_reattest(struct joinclient_session *sess, const struct joinclient_config *c,
			const uint8_t wg_pubkey[32], struct diag *d)
{
	return atls_send_evidence(sess->s, &c->attest, wg_pubkey, c->disk_uuid, d);
}

int joinclient_fd(const struct joinclient_session *sess)
{
	return sess->fd;
}

uint64_t joinclient_heard_ms(const struct joinclient_session *sess)
{
	return sess->heard_ms;
}

/* A snapshot replaces the view; it must still be about us. */
static int take_snapshot(struct peerset *view, const struct wire_msg *m, struct diag *d)
{
	struct peerset ps = { 0 };
	int ret = peerset_decode(m->peer_set.p, m->peer_set.len, &ps, d);

	if (ret == 0 && (ps.self.node_id != view->self.node_id || ps.generation != m->generation)) {
		diag_set(d, "snapshot for node %lld at generation %llu, we are node %lld",
			 (long long)ps.self.node_id, (unsigned long long)ps.generation,
			 (long long)view->self.node_id);
		ret = -EPROTO;
	}
	if (ret < 0) {
		peerset_clear(&ps);
		return ret == -ENOMEM ? ret : -EPROTO;
	}
	peerset_clear(view);
	*view = ps;
	return 1;
}

static int take_delta(struct peerset *view, const struct wire_msg *m, struct diag *d)
{
	struct peerdelta pd = { 0 };
	bool self_removed = false;
	int ret = peerdelta_decode(m->peer_set.p, m->peer_set.len, &pd, d);

	if (ret == 0 && pd.to != m->generation) {
		diag_set(d, "delta to generation %llu in an update for %llu",
			 (unsigned long long)pd.to, (unsigned long long)m->generation);
		ret = -EPROTO;
	}
	if (ret == 0)
		ret = peerset_apply(view, &pd, &self_removed, d);
	peerdelta_free(&pd);
	if (ret == 0 && self_removed) {
		diag_set(d, "this node was revoked by the cluster");
		return -EACCES;
	}
	if (ret < 0)
		return ret == -ENOMEM || ret == -ESTALE ? ret : -EPROTO;
	return 1;
}

int joinclient_next(struct joinclient_session *sess, struct peerset *view, int timeout_ms,
		    struct diag *d)
{
	struct wire_msg m;
	int ret;

	ret = atls_wait_readable(sess->s, timeout_ms);
	if (ret <= 0)
		return ret;
	ret = atls_recv(sess->s, &m, d);
	if (ret < 0)
		return ret;
	sess->heard_ms = mono_ms();
	if (m.type == WIRE_ERROR || (m.type == WIRE_VERDICT && m.code != WIRE_OK)) {
		diag_set(d, "the join service ended the session (%s): %.*s", wire_code_name(m.code),
			 (int)m.text.len, m.text.p ? (const char *)m.text.p : "");
		ret = m.code == WIRE_REFUSED ? -EACCES : -ECONNRESET;
	} else if (m.type == WIRE_VERDICT) {
		ret = JOINCLIENT_REATTESTED;
	} else if (m.type != WIRE_PEER_UPDATE) {
		diag_set(d, "expected PEER_UPDATE, got %s", wire_type_name(m.type));
		ret = -EPROTO;
	} else if (!m.peer_set.p) {
		ret = 0; /* heartbeat */
	} else if (m.peer_set.len >= 4 && !memcmp(m.peer_set.p, PEERSET_MAGIC, 4)) {
		ret = take_snapshot(view, &m, d);
	} else {
		ret = take_delta(view, &m, d);
	}
	wire_msg_free(&m);
	return ret;
}
