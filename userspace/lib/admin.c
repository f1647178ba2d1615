// SPDX-License-Identifier: Apache-2.0
/* The operator's requests to the join service: attest it, ask, verify the answer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "conclave/admin.h"
#include "conclave/atls.h"
#include "conclave/net.h"
#include "conclave/util.h"

static void sha256(const uint8_t *p, size_t len, uint8_t out[32])
{
	static const uint8_t empty;

	EVP_Digest(p ? p : &empty, p ? len : 0, out, NULL, EVP_sha256(), NULL);
}

void admin_request_digest(const uint8_t exporter[32], uint16_t op, uint64_t node_id,
			  const uint8_t *key, size_t key_len, const uint8_t *policy,
			  size_t policy_len, uint8_t out[32])
{
	uint8_t buf[sizeof(ADMIN_SIG_LABEL) - 1 + 32 + 2 + 8 + 32 + 32], *p = buf;

	memcpy(p, ADMIN_SIG_LABEL, sizeof(ADMIN_SIG_LABEL) - 1);
	p += sizeof(ADMIN_SIG_LABEL) - 1;
	memcpy(p, exporter, 32);
	p += 32;
	*p++ = (uint8_t)(op >> 8);
	*p++ = (uint8_t)op;
	for (int i = 7; i >= 0; i--)
		*p++ = (uint8_t)(node_id >> (8 * i));
	sha256(key, key_len, p);
	p += 32;
	sha256(policy, policy_len, p);
	sha256(buf, sizeof(buf), out);
	explicit_bzero(buf, sizeof(buf));
}

bool admin_signature_ok(EVP_PKEY *pub, const uint8_t digest[32], const uint8_t *sig, size_t len)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	bool ok = c && pub && sig && len == 64 &&
		  EVP_DigestVerifyInit(c, NULL, NULL, NULL, pub) == 1 &&
		  EVP_DigestVerify(c, sig, len, digest, 32) == 1;

	EVP_MD_CTX_free(c);
	return ok;
}

static int sign(EVP_PKEY *key, const uint8_t digest[32], uint8_t sig[64], struct diag *d)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t len = 64;
	int ok = c && EVP_DigestSignInit(c, NULL, NULL, NULL, key) == 1 &&
		 EVP_DigestSign(c, sig, &len, digest, 32) == 1 && len == 64;

	EVP_MD_CTX_free(c);
	if (!ok) {
		diag_set(d, "signing the request with the operator key failed (Ed25519 only)");
		return -EINVAL;
	}
	return 0;
}

static bool changes_cluster(uint16_t op)
{
	return op != ADMIN_STATUS;
}

static int send_request(struct atls_session *s, const struct admin_config *c,
			const struct admin_request *r, struct diag *d)
{
	struct wire_msg m = { .type = WIRE_ADMIN_REQUEST,
			      .op = r->op,
			      .node_id = (uint64_t)r->node_id };
	const uint8_t *key = r->key_material ? r->key_material->data : NULL;
	size_t key_len = r->key_material ? r->key_material->len : 0;
	uint8_t digest[32], sig[64];
	int ret;

	if (key)
		m.key_material = (struct blob){ key, key_len };
	if (r->policy)
		m.policy = (struct blob){ r->policy, r->policy_len };
	if (changes_cluster(r->op)) {
		if (!c->operator_key) {
			diag_set(d, "this request needs the operator key");
			return -EINVAL;
		}
		admin_request_digest(atls_exporter(s), r->op, (uint64_t)r->node_id, key, key_len,
				     r->policy, r->policy_len, digest);
		ret = sign(c->operator_key, digest, sig, d);
		if (ret < 0)
			return ret;
		m.signature = (struct blob){ sig, sizeof(sig) };
	}
	return atls_send(s, &m, d);
}

/* Everything the answer claims must verify against what the quote bound. */
static int check_answer(struct atls_session *s, const struct wire_msg *m, struct admin_result *out,
			struct diag *d)
{
	int ret;

	out->code = m->code;
	out->generation = m->generation;
	snprintf(out->text, sizeof(out->text), "%.*s", (int)m->text.len,
		 m->text.p ? (const char *)m->text.p : "");
	if (m->ca_cert.p) {
		if (!out->has_cluster_id) {
			diag_set(d, "the join service sent a CA certificate but bound no cluster "
				    "identity into its quote");
			return -EACCES;
		}
		ret = cluster_ca_check(m->ca_cert.p, m->ca_cert.len, out->cluster_id, d);
		if (ret < 0) {
			diag_prefix(d, "cluster CA certificate");
			return -EACCES;
		}
		out->ca_cert = malloc(m->ca_cert.len);
		if (!out->ca_cert)
			return -ENOMEM;
		memcpy(out->ca_cert, m->ca_cert.p, m->ca_cert.len);
		out->ca_len = m->ca_cert.len;
	}
	if (!m->members.p)
		return 0;
	if (!out->ca_cert || !m->signature.p) {
		diag_set(d, "a member list without the CA certificate or signature");
		return -EACCES;
	}
	ret = cluster_ca_verify_sig(out->ca_cert, out->ca_len, m->members.p, m->members.len,
				    m->signature.p, d);
	if (ret < 0) {
		diag_prefix(d, "member list signature");
		return -EACCES;
	}
	ret = memberlist_decode(m->members.p, m->members.len, &out->members, d);
	if (ret < 0)
		return -EACCES;
	if (memcmp(out->members.binding, atls_exporter(s), 32) != 0 ||
	    memcmp(out->members.cluster_id, out->cluster_id, CLUSTER_ID_LEN) != 0) {
		diag_set(d, "the member list was made for another session or cluster (replayed)");
		return -EACCES;
	}
	out->has_members = true;
	return 0;
}

static int pins(const struct admin_config *c, const struct admin_result *out, struct diag *d)
{
	char want[65], got[65];

	if (c->expect_ek && memcmp(c->expect_ek, out->ek_id, 32) != 0) {
		hex_encode(c->expect_ek, 32, want);
		hex_encode(out->ek_id, 32, got);
		diag_set(d,
			 "the control plane's TPM is not the one this cluster was initialised "
			 "on (EK %s, expected %s)",
			 got, want);
		return -EACCES;
	}
	if (c->expect_cluster &&
	    (!out->has_cluster_id || memcmp(c->expect_cluster, out->cluster_id, 32) != 0)) {
		hex_encode(c->expect_cluster, 32, want);
		if (out->has_cluster_id)
			hex_encode(out->cluster_id, 32, got);
		diag_set(d, "the join service serves cluster %s, expected %s",
			 out->has_cluster_id ? got : "(none: not initialised)", want);
		return -EACCES;
	}
	return 0;
}

static int session(struct atls_session *s, const struct admin_config *c,
		   const struct admin_request *r, struct admin_result *out, struct diag *d)
{
	struct atls_verifier v = { c->cp_policy, c->cp_ca, NULL, NULL };
	struct atls_peer peer;
	struct wire_msg m = { 0 };
	int ret;

	/* No record: every operator session challenges the AK against the EK afresh. */
	ret = atls_verify_peer(s, &v, &peer, d);
	out->verdict = peer.verdict;
	memcpy(out->ek_id, peer.node_id, 32);
	if (ret < 0) {
		diag_prefix(d, "the join service failed attestation");
		return ret == -EACCES || ret == -EBADMSG ? -EACCES : ret;
	}
	out->has_cluster_id = peer.has_cluster_id;
	memcpy(out->cluster_id, peer.cluster_id, 32);
	ret = pins(c, out, d);
	if (ret == 0)
		ret = send_request(s, c, r, d);
	if (ret == 0)
		ret = atls_recv(s, &m, d);
	if (ret < 0)
		return ret;
	out->answered = m.type == WIRE_ERROR || m.type == WIRE_ADMIN_RESPONSE;
	if (m.type == WIRE_ERROR) {
		out->code = m.code;
		snprintf(out->text, sizeof(out->text), "%.*s", (int)m.text.len,
			 m.text.p ? (const char *)m.text.p : "");
		ret = 0;
	} else if (m.type != WIRE_ADMIN_RESPONSE) {
		diag_set(d, "the join service answered with %s", wire_type_name(m.type));
		ret = -EPROTO;
	} else {
		ret = check_answer(s, &m, out, d);
	}
	wire_msg_free(&m);
	return ret;
}

static int call_once(const struct admin_config *c, const struct admin_request *r,
		     struct admin_result *out, struct diag *d)
{
	struct atls_opts o = { ATLS_ROLE_OPERATOR, ATLS_ROLE_JOIND, c->timeout_ms };
	struct atls_session *s = NULL;
	struct atls_ctx *ctx = NULL;
	int fd = -1, ret;

	memset(out, 0, sizeof(*out));
	ret = net_connect(c->host, c->port, c->timeout_ms ? c->timeout_ms : ATLS_DEFAULT_TIMEOUT_MS,
			  &fd, d);
	if (ret == 0)
		ret = atls_ctx_new(false, &ctx, d);
	if (ret == 0)
		ret = atls_client_connect(ctx, fd, &o, &s, d);
	if (ret == 0)
		ret = session(s, c, r, out, d);
	atls_close(s);
	atls_ctx_free(ctx);
	if (fd >= 0)
		close(fd);
	return ret;
}

int admin_call(const struct admin_config *c, const struct admin_request *r,
	       struct admin_result *out, struct diag *d)
{
	const struct admin_request status = { .op = ADMIN_STATUS };
	bool installs = r->op == ADMIN_INIT || r->op == ADMIN_RECOVER;
	struct admin_config first = *c, again = *c;
	struct admin_result after;
	int ret;

	/* Before init or recover the join service has no cluster identity to pin. */
	if (installs)
		first.expect_cluster = NULL;
	ret = call_once(&first, r, out, d);
	if (ret < 0 || out->code != WIRE_OK || !installs)
		return ret;
	/* The session that carried the master secret was attested before the join service had a
	 * cluster identity: a new one, to the same TPM, binds it and shows the CA and members. */
	again.expect_ek = out->ek_id;
	ret = call_once(&again, &status, &after, d);
	if (ret == 0 && after.code == WIRE_OK) {
		admin_result_clear(out);
		*out = after;
		return 0;
	}
	if (ret == 0) {
		diag_set(d, "the join service took the secret but then answered %s: %s",
			 wire_code_name(after.code), after.text);
		ret = -EPROTO;
	}
	admin_result_clear(&after);
	diag_prefix(d, "the join service accepted the request; checking it afterwards failed");
	return ret;
}

void admin_result_clear(struct admin_result *r)
{
	free(r->ca_cert);
	memberlist_free(&r->members);
	memset(r, 0, sizeof(*r));
}
