// SPDX-License-Identifier: Apache-2.0
/* Operator requests to the join service (docs/joind.md): status and the signed member list for
 * anyone who verified us; init, recover, revoke, policy and replace-disk only with the
 * operator's signature over this session. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conclave/admin.h"
#include "conclave/log.h"

#include "joind_priv.h"

/* The member list for this session, signed by the cluster CA. */
static int signed_members(struct joind *j, struct atls_session *s, struct cluster_ca *ca,
			  const uint8_t id[CLUSTER_ID_LEN], uint64_t *gen, uint8_t **doc,
			  size_t *len, uint8_t sig[CLUSTER_SIG_LEN], struct diag *d)
{
	struct memberlist l = { 0 };
	struct member_info *m = NULL;
	struct peer *peers = NULL;
	struct policy_ref *pol;
	size_t n = 0, n_peers = 0;
	int ret;

	pthread_mutex_lock(&j->store_lock);
	ret = membership_members(j->store, &m, &n, d);
	if (ret == 0)
		ret = membership_snapshot(j->store, gen, &peers, &n_peers, d);
	pthread_mutex_unlock(&j->store_lock);
	free(peers);
	if (ret == 0)
		l.members = calloc(n ? n : 1, sizeof(*l.members));
	if (ret != 0 || !l.members) {
		free(m);
		return ret != 0 ? ret : -ENOMEM;
	}
	memcpy(l.binding, atls_exporter(s), sizeof(l.binding));
	memcpy(l.cluster_id, id, CLUSTER_ID_LEN);
	l.generation = *gen;
	l.n = n;
	pol = joind_policy_get(j);
	for (size_t i = 0; i < n; i++) {
		struct member_entry *e = &l.members[i];

		e->peer = m[i].peer;
		memcpy(e->ek_id, m[i].ek_id, sizeof(e->ek_id));
		e->active = m[i].active;
		e->policy_ok = policy_match_pcrs(&pol->p, m[i].pcr_mask, m[i].pcrs, NULL, 0);
		e->joined_at = m[i].joined_at;
		e->attested_at = m[i].attested_at;
	}
	joind_policy_put(j, pol);
	free(m);
	ret = memberlist_encode(&l, doc, len);
	free(l.members);
	if (ret == 0 && *len > MEMBERLIST_MAX_SIZE) {
		free(*doc);
		ret = -E2BIG;
	}
	if (ret < 0) {
		diag_set(d, "member list of %zu members: %s", n, strerror(-ret));
		return ret;
	}
	ret = cluster_ca_sign(ca, *doc, *len, sig, d);
	if (ret < 0)
		free(*doc);
	return ret;
}

/* The answer to every request: its outcome, and the cluster as it now stands, if this session's
 * quote bound the cluster identity (after init or recover it did not: the operator asks again
 * on a new session). */
static int respond(struct joind *j, struct atls_session *s, bool bound, uint16_t code,
		   const char *text, struct diag *d)
{
	struct wire_msg m = { .type = WIRE_ADMIN_RESPONSE, .code = code };
	uint8_t id[CLUSTER_ID_LEN], sig[CLUSTER_SIG_LEN], *doc = NULL;
	struct cluster_ca *ca = joind_cluster(j, id, NULL);
	const uint8_t *ca_der;
	size_t len = 0, ca_len;
	int ret;

	if (text)
		m.text = (struct blob){ (const uint8_t *)text, strnlen(text, WIRE_TEXT_MAX) };
	if (!ca || !bound) {
		if (!ca && code == WIRE_OK)
			m.code = WIRE_NOT_READY;
		return atls_send(s, &m, d);
	}
	ret = signed_members(j, s, ca, id, &m.generation, &doc, &len, sig, d);
	if (ret < 0) {
		atls_send_error(s, WIRE_INTERNAL, d->msg);
		return ret;
	}
	cluster_ca_cert(ca, &ca_der, &ca_len);
	m.ca_cert = (struct blob){ ca_der, ca_len };
	m.members = (struct blob){ doc, len };
	m.signature = (struct blob){ sig, sizeof(sig) };
	ret = atls_send(s, &m, d);
	free(doc);
	return ret;
}

static bool signed_by_operator(struct joind *j, struct atls_session *s, const struct wire_msg *r)
{
	uint8_t digest[32];

	admin_request_digest(atls_exporter(s), r->op, r->node_id, r->key_material.p,
			     r->key_material.len, r->policy.p, r->policy.len, digest);
	return j->operator_pub &&
	       admin_signature_ok(j->operator_pub, digest, r->signature.p, r->signature.len);
}

/* INIT and RECOVER: master || salt from the operator. */
static int take_master(struct joind *j, const struct wire_msg *r, struct diag *d)
{
	struct secret *master = NULL, *salt = NULL;
	struct kms *k = NULL;
	int ret;

	if (r->key_material.len != KMS_MASTER_LEN + KMS_SALT_LEN) {
		diag_set(d, "want %d bytes of master secret and salt",
			 KMS_MASTER_LEN + KMS_SALT_LEN);
		return -EINVAL;
	}
	master = secret_new(KMS_MASTER_LEN);
	salt = secret_new(KMS_SALT_LEN);
	ret = master && salt ? 0 : -ENOMEM;
	if (ret == 0) {
		memcpy(master->data, r->key_material.p, KMS_MASTER_LEN);
		memcpy(salt->data, r->key_material.p + KMS_MASTER_LEN, KMS_SALT_LEN);
		ret = kms_from_secret(master, salt, &k, d);
	}
	secret_free(master);
	secret_free(salt);
	if (ret == 0)
		ret = joind_install_kms(j, k, r->op == ADMIN_INIT ? INSTALL_NEW : INSTALL_EXISTING,
					d);
	return ret;
}

/* An operator's change to one member (revoke, release its disk): only once the cluster has its
 * master secret. */
static int change_member(struct joind *j, enum admin_op op, int64_t node_id, struct diag *d)
{
	int ret;

	if (!joind_cluster(j, NULL, NULL)) {
		diag_set(d, "no master secret yet");
		return -EAGAIN;
	}
	pthread_mutex_lock(&j->store_lock);
	ret = op == ADMIN_REVOKE ? membership_revoke(j->store, node_id, d)
				 : membership_release_disk(j->store, node_id, d);
	pthread_mutex_unlock(&j->store_lock);
	return ret;
}

static int revoke_node(struct joind *j, int64_t node_id, struct diag *d)
{
	int ret = change_member(j, ADMIN_REVOKE, node_id, d);

	if (ret == 0) {
		hub_notify(j->hub);
		log_info("joind: node %lld revoked by the operator", (long long)node_id);
	}
	return ret;
}

/* The node's registered disk is retired; its next attested join binds the disk it presents. No
 * peer sees a disk, so nothing is pushed. */
static int replace_disk(struct joind *j, int64_t node_id, struct diag *d)
{
	int ret = change_member(j, ADMIN_REPLACE_DISK, node_id, d);

	if (ret == 0)
		log_info("joind: node %lld's disk released by the operator: no key for it again, "
			 "the node's next join binds a new one",
			 (long long)node_id);
	return ret;
}

static uint16_t code_of(int ret)
{
	switch (ret) {
	case 0: return WIRE_OK;
	case -EAGAIN: return WIRE_NOT_READY;
	case -ENOMEM:
	case -EIO: return WIRE_INTERNAL;
	default: return WIRE_REFUSED;
	}
}

static const char *const op_names[ADMIN_OP_MAX] = {
	[ADMIN_STATUS] = "status", [ADMIN_INIT] = "init",     [ADMIN_RECOVER] = "recover",
	[ADMIN_REVOKE] = "revoke", [ADMIN_POLICY] = "policy", [ADMIN_REPLACE_DISK] = "replace-disk",
};

void joind_admin(struct joind *j, struct atls_session *s, bool bound)
{
	struct wire_msg r;
	struct diag d = { { 0 } };
	char text[WIRE_TEXT_MAX + 1] = "";
	unsigned int mismatched = 0, revoked = 0;
	int ret;

	if (atls_recv(s, &r, &d) < 0) {
		log_warn("joind: operator session: %s", d.msg);
		return;
	}
	if (r.type != WIRE_ADMIN_REQUEST) {
		atls_send_error(s, WIRE_BAD_MESSAGE, "expected ADMIN_REQUEST");
		wire_msg_free(&r);
		return;
	}
	if (r.op != ADMIN_STATUS && !signed_by_operator(j, s, &r)) {
		log_warn("joind: operator %s refused: not signed by the operator key",
			 op_names[r.op]);
		atls_send_error(s, WIRE_REFUSED,
				j->operator_pub ? "the request is not signed by the operator key"
						: "this join service has no operator key");
		wire_msg_free(&r);
		return;
	}
	switch (r.op) {
	case ADMIN_INIT:
	case ADMIN_RECOVER: ret = take_master(j, &r, &d); break;
	case ADMIN_REVOKE: ret = revoke_node(j, (int64_t)r.node_id, &d); break;
	case ADMIN_REPLACE_DISK: ret = replace_disk(j, (int64_t)r.node_id, &d); break;
	case ADMIN_POLICY:
		ret = r.policy.p ? joind_set_policy(j, r.policy.p, r.policy.len, true, &mismatched,
						    &revoked, &d)
				 : -EINVAL;
		if (ret == 0)
			snprintf(text, sizeof(text),
				 "policy installed: %u member(s) do not match it, %u revoked",
				 mismatched, revoked);
		else if (!r.policy.p)
			diag_set(&d, "no policy attached");
		break;
	default: ret = 0; break;
	}
	if (ret < 0) {
		snprintf(text, sizeof(text), "%s", d.msg);
		log_warn("joind: operator %s: %s", op_names[r.op], text);
	} else if (r.op != ADMIN_STATUS) {
		log_info("joind: operator %s done", op_names[r.op]);
	}
	wire_msg_free(&r);
	if (respond(j, s, bound, code_of(ret), text[0] ? text : NULL, &d) < 0)
		log_warn("joind: answering the operator: %s", d.msg);
}
