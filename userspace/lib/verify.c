// SPDX-License-Identifier: Apache-2.0
/* The verifier. Order matters only where a later check needs an earlier result (the AK key
 * for the signature, the parsed quote for the nonce); everything else runs so that the verdict
 * lists every failure at once. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <tss2_mu.h>

#include "conclave/eventlog.h"
#include "conclave/util.h"
#include "conclave/verify.h"

static const char *const check_names[CHECK_COUNT] = {
	[CHECK_FORMAT] = "format",
	[CHECK_EK_CERT] = "ek-certificate",
	[CHECK_AK_TEMPLATE] = "ak-template",
	[CHECK_AK_ACTIVATION] = "ak-activation",
	[CHECK_QUOTE_TYPE] = "quote-type",
	[CHECK_SIGNATURE] = "signature",
	[CHECK_NONCE] = "nonce",
	[CHECK_PCR_SELECTION] = "pcr-selection",
	[CHECK_PCR_DIGEST] = "pcr-digest",
	[CHECK_CLOCK_SAFE] = "clock-safe",
	[CHECK_COUNTERS] = "counters",
	[CHECK_EVENT_LOG] = "event-log",
	[CHECK_POLICY] = "policy",
};

const char *verify_check_name(enum verify_check c)
{
	return c < CHECK_COUNT ? check_names[c] : "unknown";
}

static void set(struct verdict *v, enum verify_check c, enum check_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set(struct verdict *v, enum verify_check c, enum check_status st, const char *fmt, ...)
{
	va_list ap;

	v->checks[c].status = st;
	va_start(ap, fmt);
	vsnprintf(v->checks[c].msg, sizeof(v->checks[c].msg), fmt, ap);
	va_end(ap);
	if (st == CHECK_FAIL)
		v->ok = false;
}

void nonce_qualifying_data(const uint8_t *nonce, size_t len, uint8_t qdata[32])
{
	static const char label[] = "conclave/v1/standalone-attestation";
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	/* Cannot fail short of memory exhaustion; a zero qdata would then simply not verify. */
	memset(qdata, 0, 32);
	if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1)
		if (EVP_DigestUpdate(c, label, sizeof(label)) == 1 &&
		    EVP_DigestUpdate(c, nonce, len) == 1)
			EVP_DigestFinal_ex(c, qdata, NULL);
	EVP_MD_CTX_free(c);
}

int activation_proof(const uint8_t *credential, size_t cred_len, const uint8_t *ak_name,
		     size_t name_len, const uint8_t *qdata, size_t qlen, uint8_t proof[32])
{
	static const char label[] = "conclave/v1/activation";
	uint8_t msg[sizeof(label) + TPMOBJ_NAME_MAX + 64];
	unsigned int out_len = 32;

	if (name_len > TPMOBJ_NAME_MAX || qlen > 64)
		return -EINVAL;
	memcpy(msg, label, sizeof(label));
	memcpy(msg + sizeof(label), ak_name, name_len);
	memcpy(msg + sizeof(label) + name_len, qdata, qlen);
	if (!HMAC(EVP_sha256(), credential, (int)cred_len, msg, sizeof(label) + name_len + qlen,
		  proof, &out_len))
		return -EIO;
	return 0;
}

void evidence_node_id(const struct evidence *ev, uint8_t id[32])
{
	SHA256(ev->ek_cert.p, ev->ek_cert.len, id);
}

void credential_clear(struct credential *c)
{
	secret_free(c->secret);
	memset(c, 0, sizeof(*c));
}

void node_record_clear(struct node_record *n)
{
	EVP_PKEY_free(n->ak_key);
	memset(n, 0, sizeof(*n));
}

struct parsed {
	TPMT_PUBLIC ak;
	TPMS_ATTEST attest;
	TPMT_SIGNATURE sig;
	bool have_ak, have_attest, have_sig;
	struct eventlog log;
	bool have_log;
};

static void check_format(const struct evidence *ev, struct parsed *ps, struct verdict *v)
{
	size_t off = 0;

	ps->have_ak = Tss2_MU_TPMT_PUBLIC_Unmarshal(ev->ak_public.p, ev->ak_public.len, &off,
						    &ps->ak) == TSS2_RC_SUCCESS &&
		      off == ev->ak_public.len;
	off = 0;
	ps->have_attest = Tss2_MU_TPMS_ATTEST_Unmarshal(ev->quote.p, ev->quote.len, &off,
							&ps->attest) == TSS2_RC_SUCCESS &&
			  off == ev->quote.len;
	off = 0;
	ps->have_sig = Tss2_MU_TPMT_SIGNATURE_Unmarshal(ev->signature.p, ev->signature.len, &off,
							&ps->sig) == TSS2_RC_SUCCESS &&
		       off == ev->signature.len;
	if (!ps->have_ak)
		set(v, CHECK_FORMAT, CHECK_FAIL, "AK public area does not parse as TPMT_PUBLIC");
	else if (!ps->have_attest)
		set(v, CHECK_FORMAT, CHECK_FAIL, "quote does not parse as TPMS_ATTEST");
	else if (!ps->have_sig)
		set(v, CHECK_FORMAT, CHECK_FAIL, "signature does not parse as TPMT_SIGNATURE");
	else
		set(v, CHECK_FORMAT, CHECK_PASS, "evidence v%d", EVIDENCE_VERSION);
}

static bool first_contact(const struct verify_params *p, const struct verdict *v)
{
	return !p->node || !p->node->known || p->credential ||
	       memcmp(p->node->node_id, v->node_id, 32) != 0;
}

static void check_ek(const struct evidence *ev, const struct verify_params *p, struct verdict *v)
{
	struct diag d = { { 0 } };
	X509 *cert = NULL;

	if (!first_contact(p, v)) {
		set(v, CHECK_EK_CERT, CHECK_PASS, "known node (chain verified at first contact)");
		return;
	}
	if (!p->ca) {
		set(v, CHECK_EK_CERT, CHECK_FAIL, "no EK CA bundle configured");
		return;
	}
	if (ekcert_verify(p->ca, &ev->ek_cert, ev->ek_chain, ev->n_chain, &cert, &d) < 0) {
		set(v, CHECK_EK_CERT, CHECK_FAIL, "%s", d.msg);
		return;
	}
	X509_free(cert);
	set(v, CHECK_EK_CERT, CHECK_PASS, "chains to a configured root");
}

static void check_ak(const struct verify_params *p, struct parsed *ps, const struct evidence *ev,
		     struct verdict *v)
{
	struct diag d = { { 0 } };
	uint8_t proof[32];
	struct node_record *n = p->node;

	if (!ps->have_ak)
		return;
	if (tpmobj_check_ak(&ps->ak, &d) < 0)
		set(v, CHECK_AK_TEMPLATE, CHECK_FAIL, "%s", d.msg);
	else
		set(v, CHECK_AK_TEMPLATE, CHECK_PASS, "restricted TPM-resident signing key");
	if (tpmobj_name(&ps->ak, v->ak_name, &v->ak_name_len) < 0) {
		set(v, CHECK_AK_ACTIVATION, CHECK_FAIL, "cannot compute the AK name");
		return;
	}
	if (p->credential) {
		const struct credential *c = p->credential;

		if (!c->secret || c->ak_name_len != v->ak_name_len ||
		    memcmp(c->ak_name, v->ak_name, v->ak_name_len) != 0) {
			set(v, CHECK_AK_ACTIVATION, CHECK_FAIL,
			    "the evidence's AK is not the one the credential was wrapped for");
			return;
		}
		if (!ev->activation.p) {
			set(v, CHECK_AK_ACTIVATION, CHECK_FAIL,
			    "evidence carries no activation proof for the credential challenge");
			return;
		}
		if (activation_proof(c->secret->data, c->secret->len, v->ak_name, v->ak_name_len,
				     p->qdata, p->qlen, proof) < 0 ||
		    CRYPTO_memcmp(proof, ev->activation.p, 32) != 0) {
			set(v, CHECK_AK_ACTIVATION, CHECK_FAIL,
			    "activation proof does not match: the AK was not activated by this "
			    "EK's TPM");
			return;
		}
		set(v, CHECK_AK_ACTIVATION, CHECK_PASS, "credential activated by the EK's TPM");
		return;
	}
	if (!first_contact(p, v)) {
		if (n->ak_name_len == v->ak_name_len &&
		    !memcmp(n->ak_name, v->ak_name, v->ak_name_len)) {
			set(v, CHECK_AK_ACTIVATION, CHECK_PASS, "AK activated earlier");
			return;
		}
		set(v, CHECK_AK_ACTIVATION, CHECK_FAIL,
		    "AK differs from the one activated for this node; activate it again");
		return;
	}
	set(v, CHECK_AK_ACTIVATION, CHECK_FAIL,
	    "AK not activated: unknown node and no credential challenge answered");
}

static void check_quote_type(struct parsed *ps, struct verdict *v)
{
	if (!ps->have_attest)
		return;
	if (ps->attest.magic != TPM2_GENERATED_VALUE)
		set(v, CHECK_QUOTE_TYPE, CHECK_FAIL, "magic 0x%08x is not TPM_GENERATED_VALUE",
		    ps->attest.magic);
	else if (ps->attest.type != TPM2_ST_ATTEST_QUOTE)
		set(v, CHECK_QUOTE_TYPE, CHECK_FAIL, "attestation type 0x%04x is not a quote",
		    ps->attest.type);
	else
		set(v, CHECK_QUOTE_TYPE, CHECK_PASS, "TPM-generated quote");
}

/* ECDSA r||s from the TPM, DER-encoded for OpenSSL. */
static int ecdsa_der(const TPMS_SIGNATURE_ECC *ecc, uint8_t *der, size_t *der_len)
{
	ECDSA_SIG *s = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(ecc->signatureR.buffer, ecc->signatureR.size, NULL);
	BIGNUM *sv = BN_bin2bn(ecc->signatureS.buffer, ecc->signatureS.size, NULL);
	uint8_t *q = der;
	int n = -1;

	if (s && r && sv && ECDSA_SIG_set0(s, r, sv) == 1) {
		r = sv = NULL; /* owned by s now */
		if (i2d_ECDSA_SIG(s, NULL) <= (int)*der_len)
			n = i2d_ECDSA_SIG(s, &q);
	}
	BN_free(r);
	BN_free(sv);
	ECDSA_SIG_free(s);
	if (n <= 0)
		return -EINVAL;
	*der_len = (size_t)n;
	return 0;
}

static EVP_PKEY *ak_key(const struct verify_params *p, struct parsed *ps, const struct verdict *v,
			struct diag *d)
{
	struct node_record *n = p->node;
	EVP_PKEY *key = NULL;

	/* Re-attestation reuses the parsed key: only the known, already activated AK is cached. */
	if (n && n->ak_key && !first_contact(p, v) && n->ak_name_len == v->ak_name_len &&
	    !memcmp(n->ak_name, v->ak_name, v->ak_name_len)) {
		EVP_PKEY_up_ref(n->ak_key);
		return n->ak_key;
	}
	if (tpmobj_pubkey(&ps->ak, &key, d) < 0)
		return NULL;
	return key;
}

static void check_signature(const struct evidence *ev, const struct verify_params *p,
			    struct parsed *ps, struct verdict *v)
{
	const TPMT_ASYM_SCHEME *scheme;
	uint8_t digest[32], der[80];
	const uint8_t *sig = der;
	size_t sig_len = sizeof(der);
	struct diag d = { { 0 } };
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *key;
	bool ok = false;

	if (!ps->have_ak || !ps->have_sig)
		return;
	/* Only the AK's own fixed scheme counts; never try alternatives. */
	scheme = (const TPMT_ASYM_SCHEME *)&ps->ak.parameters.asymDetail.scheme;
	if (ps->sig.sigAlg != scheme->scheme ||
	    (ps->sig.sigAlg != TPM2_ALG_ECDSA && ps->sig.sigAlg != TPM2_ALG_RSASSA) ||
	    ps->sig.signature.any.hashAlg != TPM2_ALG_SHA256 ||
	    scheme->details.anySig.hashAlg != TPM2_ALG_SHA256) {
		set(v, CHECK_SIGNATURE, CHECK_FAIL,
		    "signature scheme 0x%04x/hash 0x%04x is not the AK's fixed scheme",
		    ps->sig.sigAlg, ps->sig.signature.any.hashAlg);
		return;
	}
	if (ps->sig.sigAlg == TPM2_ALG_ECDSA) {
		if (ecdsa_der(&ps->sig.signature.ecdsa, der, &sig_len) < 0) {
			set(v, CHECK_SIGNATURE, CHECK_FAIL, "malformed ECDSA signature");
			return;
		}
	} else {
		sig = ps->sig.signature.rsassa.sig.buffer;
		sig_len = ps->sig.signature.rsassa.sig.size;
	}
	key = ak_key(p, ps, v, &d);
	if (!key) {
		set(v, CHECK_SIGNATURE, CHECK_FAIL, "AK public key unusable: %s", d.msg);
		return;
	}
	/* Hash the bytes exactly as the TPM signed them, never a re-marshalled copy. */
	SHA256(ev->quote.p, ev->quote.len, digest);
	ctx = EVP_PKEY_CTX_new(key, NULL);
	if (ctx && EVP_PKEY_verify_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
	    (ps->sig.sigAlg != TPM2_ALG_RSASSA ||
	     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1))
		ok = EVP_PKEY_verify(ctx, sig, sig_len, digest, sizeof(digest)) == 1;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(key);
	if (ok)
		set(v, CHECK_SIGNATURE, CHECK_PASS, "%s over the quote verifies with the AK",
		    ps->sig.sigAlg == TPM2_ALG_ECDSA ? "ECDSA-SHA256" : "RSASSA-SHA256");
	else
		set(v, CHECK_SIGNATURE, CHECK_FAIL, "signature does not verify with the AK");
}

static void check_nonce(const struct verify_params *p, struct parsed *ps, struct verdict *v)
{
	const TPM2B_DATA *x = &ps->attest.extraData;

	if (!ps->have_attest)
		return;
	if (x->size != p->qlen || CRYPTO_memcmp(x->buffer, p->qdata, p->qlen) != 0)
		set(v, CHECK_NONCE, CHECK_FAIL,
		    "qualifying data does not match the expected nonce (stale or replayed quote)");
	else
		set(v, CHECK_NONCE, CHECK_PASS, "qualifying data matches");
}

static uint32_t policy_mask(const struct policy *pol)
{
	uint32_t mask = 0;

	for (unsigned int i = 0; i < POLICY_PCR_COUNT; i++)
		if (pol->pcrs[i].set)
			mask |= 1u << i;
	return mask;
}

static void check_pcrs(const struct evidence *ev, const struct verify_params *p, struct parsed *ps,
		       struct verdict *v)
{
	const TPML_PCR_SELECTION *sel = &ps->attest.attested.quote.pcrSelect;
	const TPM2B_DIGEST *qd = &ps->attest.attested.quote.pcrDigest;
	uint32_t mask = 0, want = policy_mask(p->policy);
	uint8_t values[24 * 32], digest[32];
	size_t n = 0;

	if (!ps->have_attest)
		return;
	if (sel->count != 1 || sel->pcrSelections[0].hash != TPM2_ALG_SHA256) {
		set(v, CHECK_PCR_SELECTION, CHECK_FAIL,
		    "quote must select exactly the SHA-256 bank");
		return;
	}
	for (unsigned int i = 0; i < sel->pcrSelections[0].sizeofSelect && i < 4; i++)
		mask |= (uint32_t)sel->pcrSelections[0].pcrSelect[i] << (8 * i);
	/* Extra PCRs are fine (reported, not judged); a missing policy PCR is not. */
	if ((mask & want) != want)
		set(v, CHECK_PCR_SELECTION, CHECK_FAIL,
		    "quote selects PCRs 0x%06x but the policy needs 0x%06x", mask, want);
	else
		set(v, CHECK_PCR_SELECTION, CHECK_PASS, "PCRs 0x%06x in SHA-256", mask);
	if (ev->pcr_mask != mask) {
		set(v, CHECK_PCR_DIGEST, CHECK_FAIL,
		    "evidence reports PCRs 0x%06x but the quote covers 0x%06x", ev->pcr_mask, mask);
		return;
	}
	/* pcrDigest = SHA-256 over the selected PCRs in ascending order (the AK's hash). */
	for (unsigned int i = 0; i < 24; i++)
		if (mask & (1u << i)) {
			memcpy(values + n, ev->pcrs[i], 32);
			n += 32;
		}
	SHA256(values, n, digest);
	if (qd->size != 32 || CRYPTO_memcmp(qd->buffer, digest, 32) != 0)
		set(v, CHECK_PCR_DIGEST, CHECK_FAIL,
		    "reported PCR values do not hash to the quoted digest");
	else
		set(v, CHECK_PCR_DIGEST, CHECK_PASS, "PCR values match the quoted digest");
}

static void check_clock(const struct verify_params *p, struct parsed *ps, struct verdict *v)
{
	const TPMS_CLOCK_INFO *ci = &ps->attest.clockInfo;
	const struct node_record *n = p->node;

	if (!ps->have_attest)
		return;
	v->clock = ci->clock;
	v->reset_count = ci->resetCount;
	v->restart_count = ci->restartCount;
	/* An unsafe clock (the TPM lost power without TPM2_Shutdown: a VM reset, a crash) may be
	 * behind values it reported before the loss. Such a loss always ends in
	 * TPM2_Startup(CLEAR), which moves resetCount on, and across a reset the counters rule
	 * below never compares clocks; within one boot the clock only runs forward. So it is
	 * reported, not refused: refusing would lock a crashed node out until its clock is next
	 * written to NV (up to 70 minutes), and freshness comes from our nonce anyway. */
	if (ci->safe == TPM2_YES)
		set(v, CHECK_CLOCK_SAFE, CHECK_PASS, "clock safe");
	else
		set(v, CHECK_CLOCK_SAFE, CHECK_WARN,
		    "TPM clock not safe (the TPM lost power without TPM2_Shutdown): clocks are "
		    "compared only within one reset");
	if (!n || !n->known || memcmp(n->node_id, v->node_id, 32) != 0) {
		set(v, CHECK_COUNTERS, CHECK_PASS, "first quote seen from this node");
		return;
	}
	/* Keylime's rule: a reboot moves resetCount on; without one, the clock must advance. */
	if (ci->resetCount < n->reset_count)
		set(v, CHECK_COUNTERS, CHECK_FAIL,
		    "resetCount went backwards (%u < %u): TPM state rolled back", ci->resetCount,
		    n->reset_count);
	else if (ci->resetCount == n->reset_count && ci->restartCount < n->restart_count)
		set(v, CHECK_COUNTERS, CHECK_FAIL, "restartCount went backwards (%u < %u)",
		    ci->restartCount, n->restart_count);
	else if (ci->resetCount == n->reset_count && ci->restartCount == n->restart_count &&
		 ci->clock <= n->clock)
		set(v, CHECK_COUNTERS, CHECK_FAIL,
		    "clock did not advance (%llu <= %llu): replayed or rolled-back quote",
		    (unsigned long long)ci->clock, (unsigned long long)n->clock);
	else
		set(v, CHECK_COUNTERS, CHECK_PASS, "counters moved forward");
}

static void check_event_log(const struct evidence *ev, struct parsed *ps, struct verdict *v)
{
	uint8_t replay[PCR_COUNT][EVENTLOG_MAX_DIGEST];
	struct diag d = { { 0 } };
	uint32_t covered = ev->pcr_mask & LOG_COVERED_PCRS, bad = 0;
	size_t size;

	if (!ev->event_log.p) {
		set(v, CHECK_EVENT_LOG, CHECK_WARN,
		    "no event log: PCRs checked against the policy only");
		return;
	}
	if (eventlog_parse(ev->event_log.p, ev->event_log.len, &ps->log, &d) < 0) {
		set(v, CHECK_EVENT_LOG, CHECK_FAIL, "%s", d.msg);
		return;
	}
	ps->have_log = true;
	if (eventlog_replay(&ps->log, TPM_ALG_SHA256, replay, &size) < 0) {
		set(v, CHECK_EVENT_LOG, CHECK_FAIL, "event log has no SHA-256 bank");
		return;
	}
	for (unsigned int i = 0; i < 24; i++)
		if ((covered & (1u << i)) && memcmp(replay[i], ev->pcrs[i], 32) != 0)
			bad |= 1u << i;
	if (bad) {
		unsigned int first = (unsigned int)__builtin_ctz(bad);

		set(v, CHECK_EVENT_LOG, CHECK_FAIL,
		    "replay does not match the quoted PCRs (mask 0x%06x, first PCR %u): log edited "
		    "or incomplete",
		    bad, first);
	} else {
		set(v, CHECK_EVENT_LOG, CHECK_PASS, "%zu events replay to the quoted PCRs",
		    ps->log.n_events);
	}
}

/* For a mismatched PCR: the first log event that differs from the policy's reference boot. */
static void explain_mismatch(const struct policy *pol, struct parsed *ps, unsigned int pcr,
			     struct pcr_report *r)
{
	uint8_t(*ref)[EVENTLOG_MAX_DIGEST];
	size_t n = 0, ref_index = 0;
	long idx;

	r->first_diff_event = -1;
	if (!ps->have_log || !pol->n_reference)
		return;
	ref = calloc(pol->n_reference, sizeof(*ref));
	if (!ref)
		return;
	for (size_t i = 0; i < pol->n_reference; i++)
		if (pol->reference[i].pcr == pcr)
			memcpy(ref[n++], pol->reference[i].digest, 32);
	idx = eventlog_first_difference(&ps->log, pcr, TPM_ALG_SHA256, (const void *)ref, n,
					&ref_index);
	free(ref);
	if (idx >= 0) {
		r->first_diff_event = idx;
		r->first_diff_offset = ps->log.events[idx].offset;
		r->first_diff_type = ps->log.events[idx].type;
	}
}

static void check_policy(const struct evidence *ev, const struct verify_params *p,
			 struct parsed *ps, struct verdict *v)
{
	unsigned int failed = 0, warned = 0;
	char list[128] = "";

	for (unsigned int i = 0; i < POLICY_PCR_COUNT; i++) {
		const struct policy_pcr *want = &p->policy->pcrs[i];
		struct pcr_report *r = &v->pcrs[i];

		if (!want->set)
			continue;
		r->in_policy = true;
		r->warn_only = want->warn_only;
		memcpy(r->expected, want->expected, 32);
		memcpy(r->actual, ev->pcrs[i], 32);
		r->match = (ev->pcr_mask & (1u << i)) && !memcmp(r->expected, r->actual, 32);
		r->first_diff_event = -1;
		if (r->match)
			continue;
		explain_mismatch(p->policy, ps, i, r);
		if (want->warn_only) {
			warned++;
			continue;
		}
		failed++;
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%u",
			 failed > 1 ? "," : "", i);
	}
	if (failed)
		set(v, CHECK_POLICY, CHECK_FAIL, "PCR %s not as the policy expects", list);
	else if (warned)
		set(v, CHECK_POLICY, CHECK_WARN, "%u warn-only PCR(s) differ", warned);
	else
		set(v, CHECK_POLICY, CHECK_PASS, "all policy PCRs match");
}

static void update_record(const struct verify_params *p, struct parsed *ps, struct verdict *v)
{
	struct node_record *n = p->node;
	struct diag d;

	if (!n || !v->ok)
		return;
	if (n->ak_key && (!n->known || n->ak_name_len != v->ak_name_len ||
			  memcmp(n->ak_name, v->ak_name, v->ak_name_len))) {
		EVP_PKEY_free(n->ak_key);
		n->ak_key = NULL;
	}
	if (!n->ak_key)
		(void)tpmobj_pubkey(&ps->ak, &n->ak_key, &d);
	n->known = true;
	memcpy(n->node_id, v->node_id, 32);
	memcpy(n->ak_name, v->ak_name, v->ak_name_len);
	n->ak_name_len = v->ak_name_len;
	n->clock = v->clock;
	n->reset_count = v->reset_count;
	n->restart_count = v->restart_count;
}

int verify_evidence(const struct evidence *ev, const struct verify_params *p, struct verdict *v)
{
	struct parsed *ps;

	memset(v, 0, sizeof(*v));
	v->ok = true;
	if (!p->policy || (p->qlen && !p->qdata) || p->qlen > 64)
		return -EINVAL;
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	evidence_node_id(ev, v->node_id);
	check_format(ev, ps, v);
	check_ek(ev, p, v);
	check_ak(p, ps, ev, v);
	check_quote_type(ps, v);
	check_signature(ev, p, ps, v);
	check_nonce(p, ps, v);
	check_pcrs(ev, p, ps, v);
	check_clock(p, ps, v);
	check_event_log(ev, ps, v);
	check_policy(ev, p, ps, v);
	/* A check that could not run because an earlier one failed is a failure too. */
	for (int c = 0; c < CHECK_COUNT; c++)
		if (v->checks[c].status == CHECK_NOT_RUN)
			set(v, c, CHECK_FAIL, "not run: %s failed", check_names[CHECK_FORMAT]);
	/* Only values the signed quote vouches for are kept. */
	if (v->ok) {
		v->pcr_mask = ev->pcr_mask;
		memcpy(v->pcr_values, ev->pcrs, sizeof(v->pcr_values));
	}
	update_record(p, ps, v);
	if (ps->have_log)
		eventlog_free(&ps->log);
	free(ps);
	return 0;
}
