// SPDX-License-Identifier: Apache-2.0
/* End-to-end attestation against a real swtpm whose PCRs hold a real OVMF boot: evidence is
 * produced by the node code, verified by the verifier, and every attack the verifier must
 * catch is staged for real (other CA, software AK, rolled-back TPM, edited log...). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <tss2_mu.h>

#include "attest_fixture.h"
#include "conclave/attest.h"
#include "conclave/eventlog.h"
#include "conclave/tpm.h"
#include "conclave/tpmobj.h"
#include "conclave/util.h"
#include "conclave/verify.h"

static struct fixture fx;

static int group_setup(void **state)
{
	return fixture_start(&fx) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	fixture_stop(&fx);
	return 0;
}

/* Verify with the fixture's policy; nonce NULL means the one the evidence was made for. */
static void verify(const struct evidence *ev, const char *nonce, const struct credential *cred,
		   struct node_record *node, const struct policy *pol, struct verdict *v)
{
	uint8_t qdata[32];
	struct verify_params p = {
		.policy = pol ? pol : &fx.policy,
		.ca = fx.ca,
		.qdata = qdata,
		.qlen = sizeof(qdata),
		.credential = cred,
		.node = node,
	};

	fixture_qdata(nonce, qdata);
	assert_int_equal(verify_evidence(ev, &p, v), 0);
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

/* Re-encode ev with one field replaced (NULL p removes it). */
static uint8_t *reshape(const struct evidence *ev, enum evidence_tag tag, const uint8_t *p,
			size_t len, struct evidence *out)
{
	struct evidence copy = *ev;
	struct blob b = { p, len };
	uint8_t *buf;
	size_t n;

	if (tag == EV_TAG_QUOTE)
		copy.quote = b;
	else if (tag == EV_TAG_SIGNATURE)
		copy.signature = b;
	else if (tag == EV_TAG_AK_PUBLIC)
		copy.ak_public = b;
	else if (tag == EV_TAG_EVENT_LOG)
		copy.event_log = b;
	else if (tag == EV_TAG_ACTIVATION)
		copy.activation = b;
	assert_int_equal(evidence_encode(&copy, &buf, &n), 0);
	assert_int_equal(evidence_decode(buf, n, out, NULL), 0);
	return buf;
}

static void first_contact_evidence_from_swtpm_verifies(void **state)
{
	struct node_record node = { 0 };
	struct credential cred = { 0 };
	struct evidence ev;
	struct verdict v;
	uint8_t *buf;
	size_t len;

	assert_int_equal(
	    fixture_attest_activated(&fx, "first-contact-nonce", &buf, &len, &ev, &cred), 0);
	verify(&ev, "first-contact-nonce", &cred, &node, NULL, &v);
	print_failures(&v);
	assert_true(v.ok);
	assert_int_equal(v.checks[CHECK_EK_CERT].status, CHECK_PASS);
	assert_int_equal(v.checks[CHECK_AK_ACTIVATION].status, CHECK_PASS);
	assert_int_equal(v.checks[CHECK_EVENT_LOG].status, CHECK_PASS);
	assert_true(node.known);
	node_record_clear(&node);
	credential_clear(&cred);
	free(buf);
}

static void reattestation_of_a_known_node_verifies_without_a_challenge(void **state)
{
	struct node_record node = { 0 };
	struct credential cred = { 0 };
	struct evidence ev;
	struct verdict v;
	uint8_t *buf;
	size_t len;

	assert_int_equal(fixture_attest_activated(&fx, "enrol", &buf, &len, &ev, &cred), 0);
	verify(&ev, "enrol", &cred, &node, NULL, &v);
	assert_true(v.ok);
	free(buf);
	credential_clear(&cred);
	assert_int_equal(fixture_attest(&fx, "again", NULL, 0, &buf, &len, &ev), 0);
	verify(&ev, "again", NULL, &node, NULL, &v);
	print_failures(&v);
	assert_true(v.ok);
	assert_string_equal(v.checks[CHECK_AK_ACTIVATION].msg, "AK activated earlier");
	node_record_clear(&node);
	free(buf);
}

static void wrong_nonce_is_refused(void **state)
{
	struct credential cred = { 0 };
	struct evidence ev;
	struct verdict v;
	uint8_t *buf;
	size_t len;

	assert_int_equal(fixture_attest_activated(&fx, "nonce-A", &buf, &len, &ev, &cred), 0);
	verify(&ev, "nonce-B", &cred, NULL, NULL, &v);
	/* The activation proof is bound to the qualifying data too, so both name the replay. */
	assert_false(v.ok);
	assert_int_equal(v.checks[CHECK_NONCE].status, CHECK_FAIL);
	assert_int_equal(v.checks[CHECK_SIGNATURE].status, CHECK_PASS);
	assert_non_null(strstr(v.checks[CHECK_NONCE].msg, "nonce"));
	credential_clear(&cred);
	free(buf);
}

static void tampered_quote_byte_is_refused(void **state)
{
	struct credential cred = { 0 };
	struct evidence ev, bad;
	struct verdict v;
	uint8_t *buf, *q, *rebuilt;
	size_t len;

	assert_int_equal(fixture_attest_activated(&fx, "tamper-quote", &buf, &len, &ev, &cred), 0);
	q = malloc(ev.quote.len);
	memcpy(q, ev.quote.p, ev.quote.len);
	q[ev.quote.len - 1] ^= 0x01; /* last byte of the PCR digest */
	rebuilt = reshape(&ev, EV_TAG_QUOTE, q, ev.quote.len, &bad);
	verify(&bad, "tamper-quote", &cred, NULL, NULL, &v);
	assert_false(v.ok);
	assert_int_equal(v.checks[CHECK_SIGNATURE].status, CHECK_FAIL);
	assert_non_null(strstr(v.checks[CHECK_SIGNATURE].msg, "does not verify"));
	free(rebuilt);
	free(q);
	credential_clear(&cred);
	free(buf);
}

static void tampered_signature_is_refused(void **state)
{
	struct credential cred = { 0 };
	struct evidence ev, bad;
	struct verdict v;
	uint8_t *buf, *s, *rebuilt;
	size_t len;

	assert_int_equal(fixture_attest_activated(&fx, "tamper-sig", &buf, &len, &ev, &cred), 0);
	s = malloc(ev.signature.len);
	memcpy(s, ev.signature.p, ev.signature.len);
	s[ev.signature.len - 5] ^= 0x80; /* inside S */
	rebuilt = reshape(&ev, EV_TAG_SIGNATURE, s, ev.signature.len, &bad);
	verify(&bad, "tamper-sig", &cred, NULL, NULL, &v);
	assert_only_failed(&v, CHECK_SIGNATURE);
	free(rebuilt);
	free(s);
	credential_clear(&cred);
	free(buf);
}

static void pcr_value_not_in_policy_is_refused_and_explained(void **state)
{
	struct policy pol = fx.policy;
	struct policy_ref_event ref[64];
	struct eventlog log;
	struct credential cred = { 0 };
	struct evidence ev;
	struct verdict v;
	uint8_t *buf;
	size_t len, n = 0;
	long flipped = -1;

	assert_int_equal(fixture_attest_activated(&fx, "policy", &buf, &len, &ev, &cred), 0);
	/* A policy for another kernel: PCR 4 differs, and its reference boot differs from the
	 * node's log at PCR 4's second event. */
	pol.pcrs[4].expected[0] ^= 0xff;
	assert_int_equal(eventlog_parse(ev.event_log.p, ev.event_log.len, &log, NULL), 0);
	for (size_t i = 0; i < log.n_events && n < 64; i++) {
		const struct eventlog_digest *dg =
		    eventlog_event_digest(&log.events[i], TPM_ALG_SHA256);

		if (log.events[i].pcr != 4 || log.events[i].type == EV_NO_ACTION)
			continue;
		ref[n] = (struct policy_ref_event){ .pcr = 4, .type = log.events[i].type };
		memcpy(ref[n].digest, dg->bytes, 32);
		if (n == 1) {
			ref[n].digest[0] ^= 1;
			flipped = (long)i;
		}
		n++;
	}
	assert_true(flipped > 0);
	pol.reference = ref;
	pol.n_reference = n;
	verify(&ev, "policy", &cred, NULL, &pol, &v);
	assert_only_failed(&v, CHECK_POLICY);
	assert_false(v.pcrs[4].match);
	assert_true(v.pcrs[0].match);
	assert_int_equal(v.pcrs[4].first_diff_event, flipped);
	assert_int_equal(v.pcrs[4].first_diff_offset, log.events[flipped].offset);
	assert_non_null(strstr(v.checks[CHECK_POLICY].msg, "PCR 4"));
	eventlog_free(&log);
	credential_clear(&cred);
	free(buf);
}

static void warn_only_pcr_mismatch_passes_with_a_warning(void **state)
{
	struct policy pol = fx.policy;
	struct credential cred = { 0 };
	struct evidence ev;
	struct verdict v;
	uint8_t *buf;
	size_t len;

	assert_int_equal(fixture_attest_activated(&fx, "warn", &buf, &len, &ev, &cred), 0);
	pol.pcrs[1].expected[5] ^= 1;
	pol.pcrs[1].warn_only = true;
	verify(&ev, "warn", &cred, NULL, &pol, &v);
	assert_true(v.ok);
	assert_int_equal(v.checks[CHECK_POLICY].status, CHECK_WARN);
	credential_clear(&cred);
	free(buf);
}

static void unactivated_ak_of_an_unknown_node_is_refused(void **state)
{
	struct evidence ev;
	struct verdict v;
	uint8_t *buf;
	size_t len;

	assert_int_equal(fixture_attest(&fx, "no-activation", NULL, 0, &buf, &len, &ev), 0);
	verify(&ev, "no-activation", NULL, NULL, NULL, &v);
	assert_only_failed(&v, CHECK_AK_ACTIVATION);
	assert_non_null(strstr(v.checks[CHECK_AK_ACTIVATION].msg, "not activated"));
	free(buf);
}

/* An attacker's software key, dressed up with the attributes of a TPM-resident AK, signing
 * a quote structure of its own. */
static void software_ak(const struct evidence *real, bool honest_attributes, struct evidence *out,
			uint8_t **bufs)
{
	TPMT_PUBLIC pub;
	TPMT_SIGNATURE sig = { 0 };
	EVP_PKEY *key = EVP_EC_gen("P-256");
	BIGNUM *x = NULL, *y = NULL;
	/* Marshalled forms are never larger than the unmarshalled structures. */
	size_t pubcap = sizeof(TPMT_PUBLIC), sigcap = sizeof(TPMT_SIGNATURE);
	uint8_t digest[32], der[80], *pubbuf = malloc(pubcap), *sigbuf = malloc(sigcap);
	size_t off = 0, der_len = sizeof(der), publen = 0, siglen = 0;
	const unsigned char *dp = der;
	ECDSA_SIG *es;
	EVP_PKEY_CTX *ctx;
	const BIGNUM *r, *s;

	assert_non_null(key);
	assert_int_equal(
	    Tss2_MU_TPMT_PUBLIC_Unmarshal(real->ak_public.p, real->ak_public.len, &off, &pub), 0);
	assert_int_equal(EVP_PKEY_get_bn_param(key, "qx", &x), 1);
	assert_int_equal(EVP_PKEY_get_bn_param(key, "qy", &y), 1);
	pub.unique.ecc.x.size = 32;
	pub.unique.ecc.y.size = 32;
	BN_bn2binpad(x, pub.unique.ecc.x.buffer, 32);
	BN_bn2binpad(y, pub.unique.ecc.y.buffer, 32);
	if (honest_attributes)
		pub.objectAttributes &= ~(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT);
	assert_int_equal(Tss2_MU_TPMT_PUBLIC_Marshal(&pub, pubbuf, pubcap, &publen), 0);
	/* Sign the genuine quote bytes (same nonce, same PCRs) with the software key. */
	SHA256(real->quote.p, real->quote.len, digest);
	ctx = EVP_PKEY_CTX_new(key, NULL);
	assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
	assert_int_equal(EVP_PKEY_sign(ctx, der, &der_len, digest, 32), 1);
	es = d2i_ECDSA_SIG(NULL, &dp, (long)der_len);
	ECDSA_SIG_get0(es, &r, &s);
	sig.sigAlg = TPM2_ALG_ECDSA;
	sig.signature.ecdsa.hash = TPM2_ALG_SHA256;
	sig.signature.ecdsa.signatureR.size = 32;
	sig.signature.ecdsa.signatureS.size = 32;
	BN_bn2binpad(r, sig.signature.ecdsa.signatureR.buffer, 32);
	BN_bn2binpad(s, sig.signature.ecdsa.signatureS.buffer, 32);
	assert_int_equal(Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, sigbuf, sigcap, &siglen), 0);
	*out = *real;
	out->ak_public = (struct blob){ pubbuf, publen };
	out->signature = (struct blob){ sigbuf, siglen };
	out->activation = (struct blob){ NULL, 0 };
	bufs[0] = pubbuf;
	bufs[1] = sigbuf;
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	BN_free(x);
	BN_free(y);
	EVP_PKEY_free(key);
}

static void software_ak_cannot_be_activated_and_is_refused(void **state)
{
	struct evidence ev, fake;
	struct credential cred = { 0 };
	struct verdict v;
	struct diag d = { { 0 } };
	uint8_t *buf, *bufs[2], *chal, *answer;
	size_t len, chal_len, answer_len;
	struct evidence unused;

	assert_int_equal(fixture_attest(&fx, "software-ak", NULL, 0, &buf, &len, &ev), 0);
	software_ak(&ev, false, &fake, bufs);
	/* The signature itself is fine: only activation can tell this key is not in the TPM. */
	verify(&fake, "software-ak", NULL, NULL, NULL, &v);
	assert_only_failed(&v, CHECK_AK_ACTIVATION);
	/* The verifier wraps a credential for the fake AK's name; the node cannot open it: our
	 * node code refuses a challenge for another AK, and the TPM itself refuses too (no
	 * object with that name can be loaded: test_tpm's
	 * activation_for_a_wrong_ak_name_is_refused_by_the_tpm). */
	assert_int_equal(attest_make_challenge(&fake, fx.ca, &chal, &chal_len, &cred, &d), 0);
	assert_int_not_equal(
	    fixture_attest(&fx, "software-ak", chal, chal_len, &answer, &answer_len, &unused), 0);
	/* And evidence claiming activation without the proof does not pass either. */
	verify(&fake, "software-ak", &cred, NULL, NULL, &v);
	assert_only_failed(&v, CHECK_AK_ACTIVATION);
	credential_clear(&cred);
	free(chal);
	free(bufs[0]);
	free(bufs[1]);
	free(buf);
}

/* Whoever opened a credential (it takes the genuine TPM) could compute the proof for any AK
 * name; the proof counts only for the AK the credential was wrapped for. */
static void activation_proof_for_another_ak_is_refused(void **state)
{
	struct credential cred = { 0 };
	struct evidence ev, fake, forged;
	struct verdict v;
	uint8_t *buf, *rebuilt, *bufs[2], name[TPMOBJ_NAME_MAX], qdata[32], proof[32];
	size_t len, name_len, off = 0;
	TPMT_PUBLIC pub;

	assert_int_equal(fixture_attest_activated(&fx, "bind", &buf, &len, &ev, &cred), 0);
	software_ak(&ev, false, &fake, bufs);
	assert_int_equal(
	    Tss2_MU_TPMT_PUBLIC_Unmarshal(fake.ak_public.p, fake.ak_public.len, &off, &pub), 0);
	assert_int_equal(tpmobj_name(&pub, name, &name_len), 0);
	fixture_qdata("bind", qdata);
	assert_int_equal(
	    activation_proof(cred.secret->data, cred.secret->len, name, name_len, qdata, 32, proof),
	    0);
	rebuilt = reshape(&fake, EV_TAG_ACTIVATION, proof, sizeof(proof), &forged);
	verify(&forged, "bind", &cred, NULL, NULL, &v);
	assert_only_failed(&v, CHECK_AK_ACTIVATION);
	assert_non_null(strstr(v.checks[CHECK_AK_ACTIVATION].msg, "not the one the credential"));
	free(rebuilt);
	free(bufs[0]);
	free(bufs[1]);
	credential_clear(&cred);
	free(buf);
}

static void software_ak_with_honest_attributes_is_refused(void **state)
{
	struct evidence ev, fake;
	struct verdict v;
	uint8_t *buf, *bufs[2];
	size_t len;

	assert_int_equal(fixture_attest(&fx, "honest-software-ak", NULL, 0, &buf, &len, &ev), 0);
	software_ak(&ev, true, &fake, bufs);
	verify(&fake, "honest-software-ak", NULL, NULL, NULL, &v);
	assert_false(v.ok);
	assert_int_equal(v.checks[CHECK_AK_TEMPLATE].status, CHECK_FAIL);
	assert_non_null(strstr(v.checks[CHECK_AK_TEMPLATE].msg, "fixedTPM"));
	free(bufs[0]);
	free(bufs[1]);
	free(buf);
}

static void ek_certificate_from_another_ca_is_refused(void **state)
{
	struct swtpm other;
	X509_STORE *other_ca;
	struct credential cred = { 0 };
	struct evidence ev;
	struct verdict v;
	struct diag d;
	uint8_t *buf, qdata[32];
	size_t len;
	struct verify_params p = { .policy = &fx.policy, .qdata = qdata, .qlen = 32 };

	assert_int_equal(swtpm_start(&other), 0);
	assert_int_equal(ca_store_load(other.ca, &other_ca, &d), 0);
	assert_int_equal(fixture_attest_activated(&fx, "other-ca", &buf, &len, &ev, &cred), 0);
	fixture_qdata("other-ca", qdata);
	p.ca = other_ca;
	p.credential = &cred;
	assert_int_equal(verify_evidence(&ev, &p, &v), 0);
	assert_only_failed(&v, CHECK_EK_CERT);
	assert_non_null(strstr(v.checks[CHECK_EK_CERT].msg, "does not chain"));
	X509_STORE_free(other_ca);
	swtpm_destroy(&other);
	credential_clear(&cred);
	free(buf);
}

static void edited_event_log_is_refused(void **state)
{
	struct credential cred = { 0 };
	struct evidence ev, bad;
	struct eventlog log;
	struct verdict v;
	uint8_t *buf, *copy, *rebuilt;
	size_t len, at;

	assert_int_equal(fixture_attest_activated(&fx, "edited-log", &buf, &len, &ev, &cred), 0);
	assert_int_equal(eventlog_parse(ev.event_log.p, ev.event_log.len, &log, NULL), 0);
	/* Hide what PCR 4 measured: change one byte of its first event's SHA-256 digest. */
	for (at = 0; at < log.n_events && log.events[at].pcr != 4; at++)
		;
	assert_true(at < log.n_events);
	copy = malloc(ev.event_log.len);
	memcpy(copy, ev.event_log.p, ev.event_log.len);
	{
		/* The parser keeps digest copies, so find the bytes after the record's offset. */
		const uint8_t *dg = eventlog_event_digest(&log.events[at], TPM_ALG_SHA256)->bytes;
		uint8_t *hit = memmem(copy + log.events[at].offset,
				      ev.event_log.len - log.events[at].offset, dg, 32);

		assert_non_null(hit);
		hit[0] ^= 0x01;
	}
	rebuilt = reshape(&ev, EV_TAG_EVENT_LOG, copy, ev.event_log.len, &bad);
	verify(&bad, "edited-log", &cred, NULL, NULL, &v);
	assert_only_failed(&v, CHECK_EVENT_LOG);
	assert_non_null(strstr(v.checks[CHECK_EVENT_LOG].msg, "PCR 4"));
	eventlog_free(&log);
	free(rebuilt);
	free(copy);
	credential_clear(&cred);
	free(buf);
}

static void truncated_event_log_is_refused_with_its_offset(void **state)
{
	struct credential cred = { 0 };
	struct evidence ev, bad;
	struct verdict v;
	uint8_t *buf, *rebuilt;
	size_t len;

	assert_int_equal(fixture_attest_activated(&fx, "truncated-log", &buf, &len, &ev, &cred), 0);
	rebuilt = reshape(&ev, EV_TAG_EVENT_LOG, ev.event_log.p, ev.event_log.len - 7, &bad);
	verify(&bad, "truncated-log", &cred, NULL, NULL, &v);
	assert_only_failed(&v, CHECK_EVENT_LOG);
	assert_non_null(strstr(v.checks[CHECK_EVENT_LOG].msg, "offset "));
	free(rebuilt);
	credential_clear(&cred);
	free(buf);
}

static void replayed_evidence_is_refused_by_the_counters(void **state)
{
	struct node_record node = { 0 };
	struct credential cred = { 0 };
	struct evidence ev;
	struct verdict v;
	uint8_t *buf;
	size_t len;

	assert_int_equal(fixture_attest_activated(&fx, "replay", &buf, &len, &ev, &cred), 0);
	verify(&ev, "replay", &cred, &node, NULL, &v);
	assert_true(v.ok);
	/* The same bytes again, nonce and all: only the TPM clock shows it is not fresh. */
	verify(&ev, "replay", NULL, &node, NULL, &v);
	assert_only_failed(&v, CHECK_COUNTERS);
	node_record_clear(&node);
	credential_clear(&cred);
	free(buf);
}

/* A node whose VM lost power (no TPM2_Shutdown) quotes with clockInfo.safe = NO until its TPM
 * next writes its clock to NV (up to 70 minutes). Its rejoin and the re-attestations of that
 * boot pass, the unsafe clock reported as a warning; the counters rule still holds. */
static void unsafe_clock_after_a_power_loss_is_a_warning_not_a_refusal(void **state)
{
	struct node_record node = { 0 };
	struct credential cred = { 0 };
	struct fixture f2;
	struct evidence ev;
	struct verdict v;
	uint8_t qdata[32], *buf;
	size_t len;
	struct verify_params p = { .qdata = qdata, .qlen = 32, .node = &node };
	const char *nonces[] = { "after-loss", "same-boot" };

	assert_int_equal(fixture_start(&f2), 0);
	p.policy = &f2.policy;
	p.ca = f2.ca;
	assert_int_equal(fixture_attest_activated(&f2, "enrol", &buf, &len, &ev, &cred), 0);
	fixture_qdata("enrol", qdata);
	p.credential = &cred;
	assert_int_equal(verify_evidence(&ev, &p, &v), 0);
	assert_true(v.ok);
	assert_int_equal(v.checks[CHECK_CLOCK_SAFE].status, CHECK_PASS);
	free(buf);
	p.credential = NULL;

	assert_int_equal(fixture_power_loss(&f2), 0);
	for (int i = 0; i < 2; i++) {
		if (i > 0)
			free(buf);
		assert_int_equal(fixture_attest(&f2, nonces[i], NULL, 0, &buf, &len, &ev), 0);
		fixture_qdata(nonces[i], qdata);
		assert_int_equal(verify_evidence(&ev, &p, &v), 0);
		print_failures(&v);
		print_message("# quote %d after the power loss: %s; %s\n", i,
			      v.checks[CHECK_CLOCK_SAFE].msg, v.checks[CHECK_COUNTERS].msg);
		assert_int_equal(v.checks[CHECK_CLOCK_SAFE].status, CHECK_WARN);
		assert_true(v.ok);
	}
	/* The last evidence again: the counters still refuse a replay within the boot. */
	assert_int_equal(verify_evidence(&ev, &p, &v), 0);
	assert_only_failed(&v, CHECK_COUNTERS);
	free(buf);
	credential_clear(&cred);
	node_record_clear(&node);
	fixture_stop(&f2);
}

static void rolled_back_tpm_state_is_refused(void **state)
{
	struct node_record node = { 0 };
	struct fixture f2;
	struct credential cred = { 0 };
	struct evidence ev;
	struct verdict v;
	uint8_t *buf;
	size_t len;

	/* A node of its own: this test rewinds its TPM. */
	assert_int_equal(fixture_start(&f2), 0);
	assert_int_equal(fixture_attest_activated(&f2, "enrol", &buf, &len, &ev, &cred), 0);
	credential_clear(&cred);
	free(buf);
	assert_int_equal(swtpm_stop(&f2.tpm), 0);
	assert_int_equal(swtpm_snapshot(&f2.tpm, "old"), 0);
	/* Two reboots after the snapshot, so the rewound TPM's resetCount is behind. */
	assert_int_equal(fixture_reboot(&f2), 0);
	assert_int_equal(fixture_reboot(&f2), 0);
	assert_int_equal(fixture_attest_activated(&f2, "boot-1", &buf, &len, &ev, &cred), 0);
	{
		uint8_t qdata[32];
		struct verify_params p = { .policy = &f2.policy,
					   .ca = f2.ca,
					   .qdata = qdata,
					   .qlen = 32,
					   .credential = &cred,
					   .node = &node };

		fixture_qdata("boot-1", qdata);
		assert_int_equal(verify_evidence(&ev, &p, &v), 0);
		print_failures(&v);
		assert_true(v.ok);
		free(buf);
		credential_clear(&cred);
		/* Rewind the TPM to its state before that boot, as a malicious host could. */
		assert_int_equal(swtpm_stop(&f2.tpm), 0);
		assert_int_equal(swtpm_restore(&f2.tpm, "old"), 0);
		assert_int_equal(fixture_reboot(&f2), 0);
		assert_int_equal(fixture_attest(&f2, "boot-2", NULL, 0, &buf, &len, &ev), 0);
		fixture_qdata("boot-2", qdata);
		p.credential = NULL;
		assert_int_equal(verify_evidence(&ev, &p, &v), 0);
		assert_only_failed(&v, CHECK_COUNTERS);
		assert_non_null(strstr(v.checks[CHECK_COUNTERS].msg, "backwards"));
	}
	node_record_clear(&node);
	free(buf);
	fixture_stop(&f2);
}

/* ---- the kept prover (attest_ctx), as the join service uses it ---------------------------- */

static struct attest_ctx *kept_prover(const char *event_log)
{
	struct attest_opts o = {
		.tcti = fx.tpm.tcti,
		.ak_state = fx.ak_state,
		.pcr_mask = LOG_COVERED_PCRS,
		.event_log = event_log,
		.ek_chain = fx.tpm.issuer,
	};
	struct attest_ctx *c = NULL;
	struct diag d = { { 0 } };

	if (attest_ctx_new(&o, &c, &d) < 0)
		fail_msg("attest_ctx_new: %s", d.msg);
	return c;
}

static int kept_attest(struct attest_ctx *c, const char *nonce, const uint8_t *challenge,
		       size_t ch_len, uint8_t **buf, size_t *len, struct evidence *ev)
{
	uint8_t qdata[32];
	struct attest_opts o = {
		.qdata = qdata,
		.qlen = sizeof(qdata),
		.pcr_mask = LOG_COVERED_PCRS,
		.challenge = challenge,
		.challenge_len = ch_len,
		.ctx = c,
	};
	struct diag d = { { 0 } };
	int ret;

	memset(ev, 0, sizeof(*ev));
	*buf = NULL;
	*len = 0;
	fixture_qdata(nonce, qdata);
	ret = attest_produce(&o, buf, len, &d);
	if (ret < 0) {
		print_message("# attest: %s\n", d.msg);
		return ret;
	}
	return evidence_decode(*buf, *len, ev, &d);
}

/* Extend PCR 14 (covered by the log and the quote) through a connection of its own. */
static void move_pcr_14(void)
{
	uint8_t digest[32] = { 14 };
	struct tpm *t = NULL;
	struct diag d = { { 0 } };

	if (tpm_open(fx.tpm.tcti, &t, &d) < 0 || tpm_pcr_extend(t, 14, digest, &d) < 0)
		fail_msg("extending PCR 14: %s", d.msg);
	tpm_close(t);
}

static void kept_prover_answers_a_challenge_then_quotes_afresh_for_each_proof(void **state)
{
	struct attest_ctx *c = kept_prover(fx.log_path);
	struct node_record node = { 0 };
	struct credential cred = { 0 };
	uint8_t *first, *chal, *buf, *again;
	size_t first_len, chal_len, len, again_len;
	struct evidence ev, ev2;
	struct diag d = { { 0 } };
	struct verdict v;

	assert_int_equal(kept_attest(c, "kept", NULL, 0, &first, &first_len, &ev), 0);
	assert_int_equal(attest_make_challenge(&ev, fx.ca, &chal, &chal_len, &cred, &d), 0);
	assert_int_equal(kept_attest(c, "kept", chal, chal_len, &buf, &len, &ev), 0);
	verify(&ev, "kept", &cred, &node, NULL, &v);
	print_failures(&v);
	assert_true(v.ok);
	assert_int_equal(v.checks[CHECK_AK_ACTIVATION].status, CHECK_PASS);
	assert_int_equal(v.checks[CHECK_EVENT_LOG].status, CHECK_PASS);

	usleep(20 * 1000); /* the counters rule wants the TPM clock (ms) to have moved on */
	assert_int_equal(kept_attest(c, "kept-again", NULL, 0, &again, &again_len, &ev2), 0);
	verify(&ev2, "kept-again", NULL, &node, NULL, &v);
	print_failures(&v);
	assert_true(v.ok);
	assert_false(ev2.quote.len == ev.quote.len &&
		     (ev.quote.len == 0 || !memcmp(ev2.quote.p, ev.quote.p, ev.quote.len)));
	node_record_clear(&node);
	credential_clear(&cred);
	free(first);
	free(chal);
	free(buf);
	free(again);
	attest_ctx_free(c);
}

/* The kept connection is dropped when the TPM fails, and the next proof opens a new one. */
static void kept_prover_opens_the_tpm_again_after_it_went_away(void **state)
{
	struct attest_ctx *c = kept_prover(fx.log_path);
	struct node_record node = { 0 };
	struct credential cred = { 0 };
	uint32_t boots;
	struct evidence ev;
	struct verdict v;
	uint8_t *buf;
	size_t len;

	assert_int_equal(fixture_attest_activated(&fx, "before-stop", &buf, &len, &ev, &cred), 0);
	verify(&ev, "before-stop", &cred, &node, NULL, &v);
	assert_true(v.ok);
	free(buf);
	assert_int_equal(kept_attest(c, "kept-before", NULL, 0, &buf, &len, &ev), 0);
	verify(&ev, "kept-before", NULL, &node, NULL, &v);
	assert_true(v.ok);
	boots = v.reset_count + v.restart_count;
	free(buf);

	assert_int_equal(swtpm_stop(&fx.tpm), 0);
	assert_int_not_equal(kept_attest(c, "tpm-gone", NULL, 0, &buf, &len, &ev), 0);
	assert_int_equal(fixture_reboot(&fx), 0);
	assert_int_equal(kept_attest(c, "kept-after", NULL, 0, &buf, &len, &ev), 0);
	verify(&ev, "kept-after", NULL, &node, NULL, &v);
	print_failures(&v);
	assert_true(v.ok);
	assert_true(v.reset_count + v.restart_count > boots); /* a TPM that started again */
	free(buf);
	node_record_clear(&node);
	credential_clear(&cred);
	attest_ctx_free(c);
}

/* The log read for one quote is shipped again only while the quoted PCRs stand still. */
static void kept_prover_reads_the_event_log_again_when_a_quoted_pcr_moved(void **state)
{
	static const char other[] = "not the log read before";
	char path[PATH_MAX];
	struct attest_ctx *c;
	struct evidence ev;
	uint8_t *golden, *buf;
	size_t golden_len, len;

	snprintf(path, sizeof(path), "%s/kept-eventlog.bin", fx.tpm.dir);
	assert_int_equal(read_file(fx.log_path, EVENTLOG_MAX_SIZE, &golden, &golden_len), 0);
	assert_int_equal(write_file_atomic(path, golden, golden_len, 0600), 0);
	c = kept_prover(path);
	assert_int_equal(kept_attest(c, "log-1", NULL, 0, &buf, &len, &ev), 0);
	assert_int_equal(ev.event_log.len, golden_len);
	free(buf);

	assert_int_equal(write_file_atomic(path, other, sizeof(other), 0600), 0);
	assert_int_equal(kept_attest(c, "log-2", NULL, 0, &buf, &len, &ev), 0);
	assert_int_equal(ev.event_log.len, golden_len);
	assert_memory_equal(ev.event_log.p, golden, golden_len);
	free(buf);

	move_pcr_14();
	assert_int_equal(kept_attest(c, "log-3", NULL, 0, &buf, &len, &ev), 0);
	assert_int_equal(ev.event_log.len, sizeof(other));
	assert_memory_equal(ev.event_log.p, other, sizeof(other));
	free(buf);
	free(golden);
	attest_ctx_free(c);
	assert_int_equal(fixture_reboot(&fx), 0); /* PCR 14 back to the golden boot's */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(first_contact_evidence_from_swtpm_verifies),
		cmocka_unit_test(reattestation_of_a_known_node_verifies_without_a_challenge),
		cmocka_unit_test(wrong_nonce_is_refused),
		cmocka_unit_test(tampered_quote_byte_is_refused),
		cmocka_unit_test(tampered_signature_is_refused),
		cmocka_unit_test(pcr_value_not_in_policy_is_refused_and_explained),
		cmocka_unit_test(warn_only_pcr_mismatch_passes_with_a_warning),
		cmocka_unit_test(unactivated_ak_of_an_unknown_node_is_refused),
		cmocka_unit_test(software_ak_cannot_be_activated_and_is_refused),
		cmocka_unit_test(activation_proof_for_another_ak_is_refused),
		cmocka_unit_test(software_ak_with_honest_attributes_is_refused),
		cmocka_unit_test(ek_certificate_from_another_ca_is_refused),
		cmocka_unit_test(edited_event_log_is_refused),
		cmocka_unit_test(truncated_event_log_is_refused_with_its_offset),
		cmocka_unit_test(replayed_evidence_is_refused_by_the_counters),
		cmocka_unit_test(rolled_back_tpm_state_is_refused),
		cmocka_unit_test(unsafe_clock_after_a_power_loss_is_a_warning_not_a_refusal),
		cmocka_unit_test(kept_prover_answers_a_challenge_then_quotes_afresh_for_each_proof),
		cmocka_unit_test(kept_prover_opens_the_tpm_again_after_it_went_away),
		cmocka_unit_test(kept_prover_reads_the_event_log_again_when_a_quoted_pcr_moved),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
