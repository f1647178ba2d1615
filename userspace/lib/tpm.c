// SPDX-License-Identifier: Apache-2.0
/* Node side of attestation through tpm2-tss ESAPI: EK and its certificate, the AK (created
 * under the EK, persisted, recorded in a state directory), credential activation, PCRs, quotes.
 * Every failure names the TPM command and the decoded response code. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <tss2_mu.h>
#include <tss2_rc.h>
#include <tss2_tctildr.h>

#include "conclave/log.h"
#include "conclave/tpm.h"
#include "conclave/tpmobj.h"
#include "conclave/util.h"

#define PCR_MAX		 24
#define PCR_SELECT_BYTES 3
#define NV_CHUNK	 512 /* below every TPM's NV buffer; still capped by TPM2_PT_NV_BUFFER_MAX */
#define EK_CERT_MAX	 4096
#define QUOTE_TRIES	 5
#define SUBMIT_TRIES	 5 /* a command the TPM answers with RETRY, YIELDED or TESTING */

/* Besides the connection, what stays true while it is open, learned once so that a TPM used for
 * many proofs (joind's) is not asked again: its EK certificate, the persisted EK checked against
 * that certificate, the AK checked by name, and the last PCR values read (only a hint: a quote is
 * always checked against fresh values, see tpm_quote). Anything that changes the TPM behind our
 * back (a cleared TPM, an evicted key) makes a later command fail; the owner then reopens. */
struct tpm {
	TSS2_TCTI_CONTEXT *tcti;
	ESYS_CONTEXT *ctx;
	uint8_t *ek_cert; /* tpm_read_ek_cert's answer */
	size_t ek_cert_len;
	uint16_t ek_cert_alg;
	ESYS_TR ek_tr; /* the persisted EK of type ek_alg, exactly the certified key */
	uint16_t ek_alg;
	TPM2B_PUBLIC ek_pub;
	ESYS_TR ak_tr; /* the key at ak_handle, whose name the TPM reported as ak_name */
	uint32_t ak_handle;
	uint8_t ak_name[TPMOBJ_NAME_MAX];
	size_t ak_name_len;
	uint8_t pcrs[PCR_MAX][32]; /* SHA-256 values last read, for PCRs in pcrs_known */
	uint32_t pcrs_known;
};

/* Fill d with "what: decoded rc" and return -EIO (callers return it directly). */
static int tss_fail(struct diag *d, TSS2_RC rc, const char *what)
{
	diag_set(d, "%s: %s (0x%x)", what, Tss2_RC_Decode(rc), rc);
	return -EIO;
}

/* Forget the AK handle t keeps (the key at it was evicted or replaced). */
static void ak_forget(struct tpm *t)
{
	if (t->ak_tr != ESYS_TR_NONE)
		Esys_TR_Close(t->ctx, &t->ak_tr);
	t->ak_name_len = 0;
}

int tpm_open(const char *tcti, struct tpm **out, struct diag *d)
{
	struct tpm *t = calloc(1, sizeof(*t));
	TSS2_RC rc;

	if (!t)
		return diag_set(d, "out of memory"), -ENOMEM;
	t->ek_tr = t->ak_tr = ESYS_TR_NONE;
	rc = Tss2_TctiLdr_Initialize(tcti, &t->tcti);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "TPM transport");
		diag_prefix(d, "cannot reach the TPM at '%s' (is it running and accessible?)",
			    tcti ? tcti : "(default)");
		goto fail;
	}
	rc = Esys_Initialize(&t->ctx, t->tcti, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "Esys_Initialize");
		goto fail;
	}
	/* A TPM whose firmware (or swtpm --flags startup-clear) already started it says so. */
	rc = Esys_Startup(t->ctx, TPM2_SU_CLEAR);
	if (rc != TSS2_RC_SUCCESS && rc != TPM2_RC_INITIALIZE) {
		tss_fail(d, rc, "TPM2_Startup(CLEAR)");
		goto fail;
	}
	*out = t;
	return 0;
fail:
	tpm_close(t);
	return -EIO;
}

void tpm_close(struct tpm *t)
{
	if (!t)
		return;
	free(t->ek_cert);
	/* Esys_Finalize drops the cached EK and AK handles with the context (no TPM command:
	 * both are persistent). */
	if (t->ctx)
		Esys_Finalize(&t->ctx);
	if (t->tcti)
		Tss2_TctiLdr_Finalize(&t->tcti);
	free(t);
}

/* Whether a persistent or NV handle exists, asked without touching it (no TSS error spam). */
static int handle_exists(struct tpm *t, TPM2_HANDLE h, bool *exists, struct diag *d)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	TSS2_RC rc;

	rc = Esys_GetCapability(t->ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES,
				h, 1, &more, &cap);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(d, rc, "TPM2_GetCapability(handles)");
	*exists = cap->data.handles.count > 0 && cap->data.handles.handle[0] == h;
	Esys_Free(cap);
	return 0;
}

static uint16_t nv_chunk(struct tpm *t)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	uint16_t chunk = NV_CHUNK;

	if (Esys_GetCapability(t->ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
			       TPM2_CAP_TPM_PROPERTIES, TPM2_PT_NV_BUFFER_MAX, 1, &more,
			       &cap) == TSS2_RC_SUCCESS &&
	    cap->data.tpmProperties.count == 1 &&
	    cap->data.tpmProperties.tpmProperty[0].property == TPM2_PT_NV_BUFFER_MAX &&
	    cap->data.tpmProperties.tpmProperty[0].value > 0 &&
	    cap->data.tpmProperties.tpmProperty[0].value < chunk)
		chunk = (uint16_t)cap->data.tpmProperties.tpmProperty[0].value;
	Esys_Free(cap);
	return chunk;
}

/* Some TPMs pad the certificate with zeros up to the index size: trust the DER length. */
static size_t der_length(const uint8_t *p, size_t len)
{
	size_t n = 0, hdr;

	if (len < 2 || p[0] != 0x30)
		return len;
	if (p[1] < 0x80)
		return 2 + (size_t)p[1] <= len ? 2 + (size_t)p[1] : len;
	hdr = 2 + (p[1] & 0x7f);
	if ((p[1] & 0x7f) > 3 || hdr > len)
		return len;
	for (size_t i = 2; i < hdr; i++)
		n = n << 8 | p[i];
	return hdr + n <= len ? hdr + n : len;
}

static int nv_read_all(struct tpm *t, uint32_t index, uint8_t **der, size_t *len, struct diag *d)
{
	TPM2B_NV_PUBLIC *nvpub = NULL;
	TPM2B_MAX_NV_BUFFER *data = NULL;
	ESYS_TR nv = ESYS_TR_NONE, auth;
	uint16_t size, chunk = nv_chunk(t);
	uint8_t *buf = NULL;
	TSS2_RC rc;
	int ret = -EIO;

	rc = Esys_TR_FromTPMPublic(t->ctx, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "loading the EK certificate NV index");
		goto out;
	}
	rc = Esys_NV_ReadPublic(t->ctx, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nvpub, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "TPM2_NV_ReadPublic");
		goto out;
	}
	size = nvpub->nvPublic.dataSize;
	if (size == 0 || size > EK_CERT_MAX) {
		ret = -EBADMSG;
		diag_set(d, "EK certificate NV index is %u bytes (expected 1..%u)", size,
			 EK_CERT_MAX);
		goto out;
	}
	/* Indices are readable with their own (empty) auth, or failing that the owner's. */
	auth = (nvpub->nvPublic.attributes & TPMA_NV_AUTHREAD) ? nv : ESYS_TR_RH_OWNER;
	buf = malloc(size);
	if (!buf) {
		ret = -ENOMEM;
		diag_set(d, "out of memory");
		goto out;
	}
	for (uint16_t off = 0; off < size;) {
		uint16_t n = (uint16_t)(size - off) < chunk ? (uint16_t)(size - off) : chunk;

		Esys_Free(data);
		data = NULL;
		rc = Esys_NV_Read(t->ctx, auth, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, n,
				  off, &data);
		if (rc != TSS2_RC_SUCCESS) {
			tss_fail(d, rc, "TPM2_NV_Read");
			goto out;
		}
		if (data->size == 0 || data->size > n) {
			diag_set(d, "TPM2_NV_Read returned %u bytes for %u", data->size, n);
			goto out;
		}
		memcpy(buf + off, data->buffer, data->size);
		off += data->size;
	}
	*len = der_length(buf, size);
	*der = buf;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	Esys_Free(data);
	Esys_Free(nvpub);
	if (nv != ESYS_TR_NONE)
		Esys_TR_Close(t->ctx, &nv);
	return ret;
}

/* Read the EK certificate from NV into t's cache, unless it is there already: NV certificates
 * do not change under a running system (rewriting one takes the platform hierarchy). */
static int ek_cert_load(struct tpm *t, struct diag *d)
{
	static const struct {
		uint32_t index;
		uint16_t alg;
	} slots[] = { { TPM_NV_EK_CERT_RSA, TPM2_ALG_RSA }, { TPM_NV_EK_CERT_ECC, TPM2_ALG_ECC } };

	if (t->ek_cert)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(slots); i++) {
		bool exists;
		int ret = handle_exists(t, slots[i].index, &exists, d);

		if (ret < 0)
			return ret;
		if (!exists)
			continue;
		ret = nv_read_all(t, slots[i].index, &t->ek_cert, &t->ek_cert_len, d);
		if (ret < 0) {
			diag_prefix(d, "EK certificate at NV 0x%08x", slots[i].index);
			return ret;
		}
		t->ek_cert_alg = slots[i].alg;
		return 0;
	}
	diag_set(d,
		 "no EK certificate in NV 0x%08x (RSA) or 0x%08x (ECC P-256); this TPM "
		 "cannot prove it is genuine",
		 TPM_NV_EK_CERT_RSA, TPM_NV_EK_CERT_ECC);
	return -ENOENT;
}

int tpm_read_ek_cert(struct tpm *t, uint8_t **der, size_t *len, uint16_t *alg, struct diag *d)
{
	int ret = ek_cert_load(t, d);

	if (ret < 0)
		return ret;
	*der = malloc(t->ek_cert_len);
	if (!*der)
		return diag_set(d, "out of memory"), -ENOMEM;
	memcpy(*der, t->ek_cert, t->ek_cert_len);
	*len = t->ek_cert_len;
	*alg = t->ek_cert_alg;
	return 0;
}

static const char *alg_name(uint16_t alg)
{
	return alg == TPM2_ALG_RSA ? "RSA" : alg == TPM2_ALG_ECC ? "ECC" : "unknown";
}

/* An EK in use: persistent ones are closed (the key stays in the TPM), transient ones flushed,
 * the one t keeps (cached) left alone. */
struct ek {
	ESYS_TR tr;
	bool persistent, cached;
};

static void ek_release(struct tpm *t, struct ek *ek)
{
	if (ek->tr == ESYS_TR_NONE)
		return;
	if (ek->cached)
		; /* t's, until tpm_close */
	else if (ek->persistent)
		Esys_TR_Close(t->ctx, &ek->tr);
	else
		Esys_FlushContext(t->ctx, ek->tr);
	ek->tr = ESYS_TR_NONE;
}

/* The EK public area the TPM's certificate for alg certifies: the default template with the
 * certificate's key as unique. -ENOENT if there is no certificate for alg. */
static int ek_certified(struct tpm *t, uint16_t alg, TPM2B_PUBLIC *want, struct diag *d)
{
	uint32_t index = alg == TPM2_ALG_RSA ? TPM_NV_EK_CERT_RSA : TPM_NV_EK_CERT_ECC;
	const uint8_t *p;
	uint8_t *der = NULL;
	bool exists;
	size_t len;
	X509 *x;
	int ret;

	if (t->ek_cert && t->ek_cert_alg == alg) {
		p = t->ek_cert; /* attest_produce has just read it */
		len = t->ek_cert_len;
	} else {
		ret = handle_exists(t, index, &exists, d);
		if (ret < 0)
			return ret;
		if (!exists)
			return diag_set(d, "no EK certificate at NV 0x%08x", index), -ENOENT;
		ret = nv_read_all(t, index, &der, &len, d);
		if (ret < 0)
			return ret;
		p = der;
	}
	x = d2i_X509(NULL, &p, (long)len);
	free(der);
	if (!x) {
		ERR_clear_error();
		return diag_set(d, "EK certificate at NV 0x%08x is not DER X.509", index), -EBADMSG;
	}
	ret = tpmobj_ek_from_cert(x, want, d);
	X509_free(x);
	if (ret == 0 && want->publicArea.type != alg)
		return diag_set(d, "EK certificate at NV 0x%08x holds a %s key", index,
				alg_name(want->publicArea.type)),
		       -EINVAL;
	return ret;
}

static bool tpmt_public_equal(const TPMT_PUBLIC *a, const TPMT_PUBLIC *b)
{
	uint8_t ba[sizeof(TPMT_PUBLIC)], bb[sizeof(TPMT_PUBLIC)];
	size_t la = 0, lb = 0;

	return Tss2_MU_TPMT_PUBLIC_Marshal(a, ba, sizeof(ba), &la) == TSS2_RC_SUCCESS &&
	       Tss2_MU_TPMT_PUBLIC_Marshal(b, bb, sizeof(bb), &lb) == TSS2_RC_SUCCESS && la == lb &&
	       memcmp(ba, bb, la) == 0;
}

/* Whether got is exactly the certified EK want; if not, *why says what differs. */
static bool ek_is_certified(const TPMT_PUBLIC *got, const TPMT_PUBLIC *want, const char **why)
{
	TPMT_PUBLIC masked = *got;

	if (tpmt_public_equal(got, want))
		return true;
	masked.unique = want->unique;
	*why = tpmt_public_equal(&masked, want) ? "its key is not the one in the EK certificate"
						: "it was not made from the default EK template";
	return false;
}

/* Open the key at the EK's persistent handle if it is exactly the certified EK. A key that is
 * not is left alone: someone else's, never ours to evict. */
static int ek_open_persisted(struct tpm *t, uint32_t handle, const TPM2B_PUBLIC *want,
			     struct ek *ek, TPM2B_PUBLIC *pub, struct diag *d)
{
	TPM2B_PUBLIC *out = NULL;
	const char *why;
	ESYS_TR h;
	TSS2_RC rc;

	rc = Esys_TR_FromTPMPublic(t->ctx, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &h);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(d, rc, "loading the persistent handle");
	rc = Esys_ReadPublic(t->ctx, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &out, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		Esys_TR_Close(t->ctx, &h);
		return tss_fail(d, rc, "TPM2_ReadPublic");
	}
	if (!ek_is_certified(&out->publicArea, &want->publicArea, &why)) {
		Esys_Free(out);
		Esys_TR_Close(t->ctx, &h);
		return diag_set(d, "the key there is not the EK: %s", why), -EEXIST;
	}
	ek->tr = h;
	ek->persistent = true;
	*pub = *out;
	Esys_Free(out);
	return 0;
}

/* Persist a freshly created transient EK at handle so later sessions skip TPM2_CreatePrimary.
 * Only an optimisation: on any failure the transient EK stays in use. */
static void ek_persist(struct tpm *t, uint16_t alg, uint32_t handle, struct ek *ek)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	ESYS_TR persisted;
	TPMI_YES_NO more;
	TSS2_RC rc;

	/* With an owner password set, EvictControl would fail (and tpm2-tss log it) every time. */
	rc = Esys_GetCapability(t->ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				TPM2_CAP_TPM_PROPERTIES, TPM2_PT_PERMANENT, 1, &more, &cap);
	if (rc != TSS2_RC_SUCCESS || cap->data.tpmProperties.count != 1 ||
	    cap->data.tpmProperties.tpmProperty[0].property != TPM2_PT_PERMANENT ||
	    (cap->data.tpmProperties.tpmProperty[0].value & TPMA_PERMANENT_OWNERAUTHSET)) {
		Esys_Free(cap);
		log_debug("tpm: not persisting the %s EK at 0x%08x: owner authorization is set or "
			  "unknown; using it transient",
			  alg_name(alg), handle);
		return;
	}
	Esys_Free(cap);
	rc = Esys_EvictControl(t->ctx, ESYS_TR_RH_OWNER, ek->tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
			       ESYS_TR_NONE, handle, &persisted);
	if (rc != TSS2_RC_SUCCESS) {
		log_debug("tpm: not persisting the %s EK at 0x%08x: TPM2_EvictControl: %s (0x%x); "
			  "using it transient",
			  alg_name(alg), handle, Tss2_RC_Decode(rc), rc);
		return;
	}
	Esys_FlushContext(t->ctx, ek->tr);
	ek->tr = persisted;
	ek->persistent = true;
}

/* Keep ek (persisted, exactly the certified key) in t for later sessions, in place of any other. */
static void ek_keep(struct tpm *t, uint16_t alg, struct ek *ek, const TPM2B_PUBLIC *pub)
{
	if (t->ek_tr != ESYS_TR_NONE)
		Esys_TR_Close(t->ctx, &t->ek_tr);
	t->ek_tr = ek->tr;
	t->ek_alg = alg;
	t->ek_pub = *pub;
	ek->cached = true;
}

/* The EK of type alg, the TCG EK Credential Profile way: the key at its persistent handle if
 * that is exactly the key the EK certificate certifies; otherwise recreated (a primary key:
 * same seed and template give the same key) and, if the handle is free, persisted there.
 * Verifiers wrap credentials to the certificate's key, so the check only avoids a confusing
 * activation failure; it grants nothing. A persisted, certified EK is checked once and then
 * kept in t. The caller releases *ek with ek_release. */
static int ek_load(struct tpm *t, uint16_t alg, struct ek *ek, TPM2B_PUBLIC *pub, struct diag *d)
{
	const TPM2B_SENSITIVE_CREATE sens = { 0 };
	const TPML_PCR_SELECTION no_pcrs = { 0 };
	const TPM2B_DATA no_info = { 0 };
	uint32_t handle = alg == TPM2_ALG_RSA ? TPM_EK_HANDLE_RSA : TPM_EK_HANDLE_ECC;
	TPM2B_PUBLIC tmpl, want, held, *out = NULL;
	struct diag why = { { 0 } };
	bool certified, occupied = true;
	const char *diff;
	TSS2_RC rc;

	*ek = (struct ek){ ESYS_TR_NONE, false, false };
	if (t->ek_tr != ESYS_TR_NONE && t->ek_alg == alg) {
		*ek = (struct ek){ t->ek_tr, true, true };
		if (pub)
			*pub = t->ek_pub;
		return 0;
	}
	if (tpmobj_ek_template(alg, &tmpl) < 0)
		return diag_set(d, "EK algorithm 0x%04x is neither RSA nor ECC", alg), -EINVAL;
	certified = ek_certified(t, alg, &want, &why) == 0;
	if (!certified)
		log_debug("tpm: %s EK: %s; recreating it and leaving 0x%08x alone", alg_name(alg),
			  why.msg, handle);
	else if (handle_exists(t, handle, &occupied, &why) < 0)
		log_debug("tpm: %s EK: %s; recreating it", alg_name(alg), why.msg);
	else if (occupied && ek_open_persisted(t, handle, &want, ek, &held, &why) == 0) {
		ek_keep(t, alg, ek, &held);
		if (pub)
			*pub = held;
		return 0;
	} else if (occupied)
		log_debug("tpm: %s EK: 0x%08x: %s; not using it, recreating the EK", alg_name(alg),
			  handle, why.msg);
	rc = Esys_CreatePrimary(t->ctx, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				ESYS_TR_NONE, &sens, &tmpl, &no_info, &no_pcrs, &ek->tr, &out, NULL,
				NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		ek->tr = ESYS_TR_NONE;
		tss_fail(d, rc, "TPM2_CreatePrimary");
		return diag_prefix(d, "recreating the %s EK", alg_name(alg)), -EIO;
	}
	if (certified && !occupied) {
		/* Only the certified key is worth persisting: nothing else would be used later. */
		if (ek_is_certified(&out->publicArea, &want.publicArea, &diff))
			ek_persist(t, alg, handle, ek);
		else
			log_debug("tpm: %s EK: not persisting it: %s", alg_name(alg), diff);
		if (ek->persistent)
			ek_keep(t, alg, ek, out);
	}
	if (pub)
		*pub = *out;
	Esys_Free(out);
	return 0;
}

int tpm_ek_public(struct tpm *t, uint16_t alg, TPM2B_PUBLIC *pub, struct diag *d)
{
	struct ek ek;
	int ret;

	ret = ek_load(t, alg, &ek, pub, d);
	if (ret < 0)
		return ret;
	ek_release(t, &ek);
	return 0;
}

/* A policy session satisfying the EK's policy A, PolicySecret(TPM_RH_ENDORSEMENT). The EK
 * demands it on every use, so each command gets a fresh one; the caller flushes it. The caller's
 * first nonce is ours: tpm2-tss would draw it from a DRBG it instantiates for every call. */
static int ek_session(struct tpm *t, ESYS_TR *sess, struct diag *d)
{
	const TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_NULL };
	TPM2B_NONCE nonce = { .size = 32 };
	TSS2_RC rc;

	if (RAND_bytes(nonce.buffer, nonce.size) != 1)
		return diag_set(d, "the CSPRNG failed to produce a session nonce"), -EIO;
	rc = Esys_StartAuthSession(t->ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				   ESYS_TR_NONE, &nonce, TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256,
				   sess);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(d, rc, "TPM2_StartAuthSession(policy) for the EK");
	rc = Esys_PolicySecret(t->ctx, ESYS_TR_RH_ENDORSEMENT, *sess, ESYS_TR_PASSWORD,
			       ESYS_TR_NONE, ESYS_TR_NONE, NULL, NULL, NULL, 0, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		Esys_FlushContext(t->ctx, *sess);
		*sess = ESYS_TR_NONE;
		return tss_fail(d, rc, "TPM2_PolicySecret(endorsement) for the EK");
	}
	return 0;
}

static void flush(struct tpm *t, ESYS_TR *h)
{
	if (*h != ESYS_TR_NONE)
		Esys_FlushContext(t->ctx, *h);
	*h = ESYS_TR_NONE;
}

/* The AK template: restricted ECDSA-SHA256 P-256 signing key, usable with an empty password.
 * noDA: with an empty password there is nothing to guess, and a DA-protected key counts every
 * power loss after its use as a failed try (TPM2 Part 1, dictionary attack protection): three
 * hard resets of a VM locked a node's vTPM out of quoting for 1000 s (swtpm's defaults). */
static void ak_template(TPM2B_PUBLIC *tmpl)
{
	TPMT_PUBLIC *p = &tmpl->publicArea;

	memset(tmpl, 0, sizeof(*tmpl));
	p->type = TPM2_ALG_ECC;
	p->nameAlg = TPM2_ALG_SHA256;
	p->objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_USERWITHAUTH |
			      TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_FIXEDTPM |
			      TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
			      TPMA_OBJECT_NODA;
	p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
	p->parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
	p->parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
	p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
	p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
}

/* Create the AK under the EK and make it persistent at TPM_AK_HANDLE; *pub gets its public. */
static int ak_create(struct tpm *t, uint16_t ek_alg, TPM2B_PUBLIC *pub, struct diag *d)
{
	const TPM2B_SENSITIVE_CREATE sens = { 0 };
	const TPML_PCR_SELECTION no_pcrs = { 0 };
	const TPM2B_DATA no_info = { 0 };
	ESYS_TR sess = ESYS_TR_NONE, ak = ESYS_TR_NONE, persisted;
	struct ek ek = { ESYS_TR_NONE, false, false };
	TPM2B_PRIVATE *priv = NULL;
	TPM2B_PUBLIC *out = NULL, tmpl;
	TSS2_RC rc;
	int ret;

	ak_template(&tmpl);
	ret = ek_load(t, ek_alg, &ek, NULL, d);
	if (ret < 0)
		return ret;
	ret = ek_session(t, &sess, d);
	if (ret < 0)
		goto out;
	ret = -EIO;
	rc = Esys_Create(t->ctx, ek.tr, sess, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl, &no_info,
			 &no_pcrs, &priv, &out, NULL, NULL, NULL);
	flush(t, &sess);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "TPM2_Create(AK under the EK)");
		goto out;
	}
	ret = ek_session(t, &sess, d);
	if (ret < 0)
		goto out;
	ret = -EIO;
	rc = Esys_Load(t->ctx, ek.tr, sess, ESYS_TR_NONE, ESYS_TR_NONE, priv, out, &ak);
	flush(t, &sess);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "TPM2_Load(AK)");
		goto out;
	}
	rc = Esys_EvictControl(t->ctx, ESYS_TR_RH_OWNER, ak, ESYS_TR_PASSWORD, ESYS_TR_NONE,
			       ESYS_TR_NONE, TPM_AK_HANDLE, &persisted);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "TPM2_EvictControl(AK -> persistent handle)");
		diag_prefix(d, "persisting the AK at 0x%08x", TPM_AK_HANDLE);
		goto out;
	}
	Esys_TR_Close(t->ctx, &persisted);
	ak_forget(t);
	*pub = *out;
	ret = 0;
out:
	Esys_Free(priv);
	Esys_Free(out);
	flush(t, &ak);
	ek_release(t, &ek);
	return ret;
}

static int marshal_public(const TPM2B_PUBLIC *pub, uint8_t *buf, size_t cap, size_t *len)
{
	*len = 0;
	return Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, cap, len) == TSS2_RC_SUCCESS ? 0 : -EINVAL;
}

/* The public area of the key at a persistent handle, as the TPM reports it. */
static int read_persistent(struct tpm *t, uint32_t handle, TPM2B_PUBLIC *pub, struct diag *d)
{
	TPM2B_PUBLIC *out = NULL;
	ESYS_TR h;
	TSS2_RC rc;

	rc = Esys_TR_FromTPMPublic(t->ctx, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &h);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(d, rc, "loading the persistent AK handle");
	rc = Esys_ReadPublic(t->ctx, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &out, NULL, NULL);
	Esys_TR_Close(t->ctx, &h);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(d, rc, "TPM2_ReadPublic(AK)");
	*pub = *out;
	Esys_Free(out);
	return 0;
}

struct ak_record {
	bool present;
	uint8_t pub[sizeof(TPM2B_PUBLIC)];
	size_t pub_len;
	uint32_t handle;
	uint16_t ek_alg;
};

/* dir/file; tpm_ak_ensure has checked that every such path fits. */
static void state_path(char *buf, size_t len, const char *dir, const char *file)
{
	snprintf(buf, len, "%s/%s", dir, file);
}

/* Read a small text file's first line as an unsigned number (base 0). */
static int read_number(const char *path, unsigned long *v)
{
	uint8_t *buf = NULL;
	char *end;
	size_t len;
	int ret = read_file(path, 64, &buf, &len);

	if (ret < 0)
		return ret;
	errno = 0;
	*v = strtoul((char *)buf, &end, 0);
	ret = (errno || end == (char *)buf || (*end && *end != '\n')) ? -EBADMSG : 0;
	free(buf);
	return ret;
}

static int ek_alg_parse(const char *path, uint16_t *alg)
{
	uint8_t *buf = NULL;
	size_t len;
	int ret = read_file(path, 64, &buf, &len);

	if (ret < 0)
		return ret;
	if (!strcmp((char *)buf, "rsa\n"))
		*alg = TPM2_ALG_RSA;
	else if (!strcmp((char *)buf, "ecc\n"))
		*alg = TPM2_ALG_ECC;
	else
		ret = -EBADMSG;
	free(buf);
	return ret;
}

/* Load state_dir's record of the AK: ak.pub (marshalled TPM2B_PUBLIC), ak.handle, ek.alg.
 * No ak.pub means no AK was enrolled from this directory yet. */
static int record_load(const char *dir, struct ak_record *r, struct diag *d)
{
	char path[PATH_MAX];
	unsigned long handle;
	uint8_t *buf = NULL;
	size_t len;
	int ret;

	memset(r, 0, sizeof(*r));
	state_path(path, sizeof(path), dir, "ak.pub");
	ret = read_file(path, sizeof(r->pub), &buf, &len);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return diag_set(d, "reading %s: %s", path, strerror(-ret)), ret;
	memcpy(r->pub, buf, len);
	r->pub_len = len;
	free(buf);
	state_path(path, sizeof(path), dir, "ak.handle");
	ret = read_number(path, &handle);
	if (ret == 0 && handle != TPM_AK_HANDLE)
		ret = -EBADMSG;
	if (ret < 0)
		return diag_set(d, "%s: %s (expected 0x%08x)", path, strerror(-ret), TPM_AK_HANDLE),
		       ret;
	r->handle = (uint32_t)handle;
	state_path(path, sizeof(path), dir, "ek.alg");
	ret = ek_alg_parse(path, &r->ek_alg);
	if (ret < 0)
		return diag_set(d, "%s: %s (expected \"rsa\" or \"ecc\")", path, strerror(-ret)),
		       ret;
	r->present = true;
	return 0;
}

/* Record the AK after it is persisted: the record describes what the TPM holds. */
static int record_save(const char *dir, const TPM2B_PUBLIC *pub, uint16_t ek_alg, struct diag *d)
{
	uint8_t buf[sizeof(TPM2B_PUBLIC)];
	char path[PATH_MAX], text[32];
	size_t len;
	int ret;

	ret = marshal_public(pub, buf, sizeof(buf), &len);
	if (ret < 0)
		return diag_set(d, "marshalling the AK public area failed"), ret;
	/* No secret in the record (the AK's private part never leaves the TPM), but what this
	 * machine trusts about its own AK: nobody else's to read or rewrite. */
	state_path(path, sizeof(path), dir, "ak.pub");
	ret = write_file_atomic(path, buf, len, 0600);
	if (ret == 0) {
		state_path(path, sizeof(path), dir, "ak.handle");
		snprintf(text, sizeof(text), "0x%08x\n", TPM_AK_HANDLE);
		ret = write_file_atomic(path, text, strlen(text), 0600);
	}
	if (ret == 0) {
		state_path(path, sizeof(path), dir, "ek.alg");
		snprintf(text, sizeof(text), "%s\n", ek_alg == TPM2_ALG_RSA ? "rsa" : "ecc");
		ret = write_file_atomic(path, text, strlen(text), 0600);
	}
	if (ret < 0)
		return diag_set(d, "writing %s: %s", path, strerror(-ret)), ret;
	return 0;
}

static int state_dir_create(const char *dir, struct diag *d)
{
	struct stat st;
	int e;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		e = errno;
		return diag_set(d, "creating state directory %s: %s", dir, strerror(e)), -e;
	}
	if (stat(dir, &st) < 0) {
		e = errno;
		return diag_set(d, "state directory %s: %s", dir, strerror(e)), -e;
	}
	if (!S_ISDIR(st.st_mode))
		return diag_set(d, "state directory %s is not a directory", dir), -ENOTDIR;
	return 0;
}

/* A recorded AK must be exactly the key at its handle, bit for bit. */
static int ak_verify_recorded(struct tpm *t, const char *dir, const struct ak_record *r,
			      TPM2B_PUBLIC *pub, struct diag *d)
{
	uint8_t buf[sizeof(TPM2B_PUBLIC)];
	TPM2B_PUBLIC parsed;
	size_t len, off = 0;
	int ret;

	ret = read_persistent(t, r->handle, pub, d);
	if (ret < 0)
		return ret;
	ret = marshal_public(pub, buf, sizeof(buf), &len);
	if (ret < 0)
		return diag_set(d, "marshalling the AK public area failed"), ret;
	if (len != r->pub_len || memcmp(buf, r->pub, len) != 0)
		return diag_set(d,
				"the key at 0x%08x is not the AK recorded in %s/ak.pub; refusing "
				"to use or replace it (if the recorded AK is gone for good, "
				"re-enroll the node with a fresh state directory)",
				r->handle, dir),
		       -EEXIST;
	/* Parse the recording too, so a corrupt ak.pub cannot pass by matching garbage. */
	memset(&parsed, 0, sizeof(parsed)); /* the unmarshaller insists on a zero size */
	if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(r->pub, r->pub_len, &off, &parsed) != TSS2_RC_SUCCESS ||
	    off != r->pub_len)
		return diag_set(d, "%s/ak.pub is not a TPM2B_PUBLIC", dir), -EBADMSG;
	return 0;
}

int tpm_ak_forget_unrecorded(struct tpm *t, const char *state_dir, struct diag *d)
{
	struct ak_record rec = { 0 };
	ESYS_TR h = ESYS_TR_NONE, gone = ESYS_TR_NONE;
	bool occupied = false;
	TSS2_RC rc;
	int ret;

	ret = state_dir_create(state_dir, d);
	if (ret == 0)
		ret = record_load(state_dir, &rec, d);
	if (ret == 0)
		ret = handle_exists(t, TPM_AK_HANDLE, &occupied, d);
	if (ret < 0 || rec.present || !occupied)
		return ret;
	rc = Esys_TR_FromTPMPublic(t->ctx, TPM_AK_HANDLE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
				   &h);
	if (rc == TSS2_RC_SUCCESS)
		rc = Esys_EvictControl(t->ctx, ESYS_TR_RH_OWNER, h, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				       ESYS_TR_NONE, TPM_AK_HANDLE, &gone);
	/* The evicted object's ESYS_TR would otherwise stay cached under the handle's number. */
	if (h != ESYS_TR_NONE)
		Esys_TR_Close(t->ctx, &h);
	if (gone != ESYS_TR_NONE)
		Esys_TR_Close(t->ctx, &gone);
	ak_forget(t);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(d, rc, "TPM2_EvictControl(previous boot's AK)");
	log_info("tpm: evicted the AK of a previous boot at 0x%08x (no record in %s)",
		 TPM_AK_HANDLE, state_dir);
	return 0;
}

int tpm_ak_ensure(struct tpm *t, const char *state_dir, uint16_t ek_alg, struct tpm_ak *ak,
		  struct diag *d)
{
	struct ak_record rec;
	bool occupied;
	int ret;

	if (ek_alg != TPM2_ALG_RSA && ek_alg != TPM2_ALG_ECC)
		return diag_set(d, "EK algorithm 0x%04x is neither RSA nor ECC", ek_alg), -EINVAL;
	if (strlen(state_dir) + sizeof("/ak.handle") > PATH_MAX)
		return diag_set(d, "state directory path is too long"), -ENAMETOOLONG;
	ret = state_dir_create(state_dir, d);
	if (ret < 0)
		return ret;
	ret = record_load(state_dir, &rec, d);
	if (ret < 0)
		return ret;
	ret = handle_exists(t, TPM_AK_HANDLE, &occupied, d);
	if (ret < 0)
		return ret;
	memset(ak, 0, sizeof(*ak));
	ak->handle = TPM_AK_HANDLE;
	ak->ek_alg = ek_alg;
	if (rec.present) {
		if (rec.ek_alg != ek_alg)
			return diag_set(d,
					"the AK recorded in %s was made under the %s EK, not the "
					"%s EK asked for",
					state_dir, alg_name(rec.ek_alg), alg_name(ek_alg)),
			       -EINVAL;
		if (!occupied)
			return diag_set(d,
					"the AK recorded in %s is no longer in the TPM at 0x%08x "
					"(TPM cleared or key evicted); re-enroll the node with "
					"a fresh state directory",
					state_dir, rec.handle),
			       -ENOENT;
		return ak_verify_recorded(t, state_dir, &rec, &ak->pub, d);
	}
	if (occupied)
		return diag_set(d,
				"persistent handle 0x%08x already holds a key not recorded in %s; "
				"refusing to evict someone else's key (free the handle with "
				"tpm2_evictcontrol if it is stale)",
				TPM_AK_HANDLE, state_dir),
		       -EEXIST;
	ret = ak_create(t, ek_alg, &ak->pub, d);
	if (ret < 0)
		return ret;
	return record_save(state_dir, &ak->pub, ek_alg, d);
}

/* The AK's ESYS handle, after checking the TPM holds the key described by ak: the name the TPM
 * reports for the key at ak->handle must be ak's. Checked once, then kept in t (the handle stays
 * t's: callers do not close it). */
static int ak_open(struct tpm *t, const struct tpm_ak *ak, ESYS_TR *h, struct diag *d)
{
	uint8_t want[TPMOBJ_NAME_MAX];
	TPM2B_PUBLIC *pub = NULL;
	TPM2B_NAME *name = NULL;
	size_t want_len;
	TSS2_RC rc;
	int ret = -EIO;

	if (tpmobj_name(&ak->pub.publicArea, want, &want_len) < 0)
		return diag_set(d, "AK public area has no computable name"), -EINVAL;
	if (t->ak_tr != ESYS_TR_NONE && t->ak_handle == ak->handle && t->ak_name_len == want_len &&
	    memcmp(t->ak_name, want, want_len) == 0) {
		*h = t->ak_tr;
		return 0;
	}
	ak_forget(t);
	rc = Esys_TR_FromTPMPublic(t->ctx, ak->handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, h);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(d, rc, "loading the AK persistent handle");
	/* The TPM's own name for the key (Esys_TR_GetName would hash the public area again, in an
	 * OpenSSL library context tpm2-tss creates for every hash). */
	rc = Esys_ReadPublic(t->ctx, *h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name,
			     NULL);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "TPM2_ReadPublic(AK)");
		goto fail;
	}
	if (name->size != want_len || memcmp(name->name, want, want_len) != 0) {
		ret = -EEXIST;
		diag_set(d, "the key at 0x%08x is not the expected AK", ak->handle);
		goto fail;
	}
	Esys_Free(pub);
	Esys_Free(name);
	t->ak_tr = *h;
	t->ak_handle = ak->handle;
	memcpy(t->ak_name, want, want_len);
	t->ak_name_len = want_len;
	return 0;
fail:
	Esys_Free(pub);
	Esys_Free(name);
	Esys_TR_Close(t->ctx, h);
	return ret;
}

/* TPM2_ActivateCredential goes to the TPM as bytes of our own making. Through ESYS it cost about
 * 1.5 ms of CPU, more than the rest of a join's proof: for the EK's policy session tpm2-tss 3.x
 * computes the command HMAC, a caller nonce and the response HMAC, creating a new OpenSSL
 * library context for every hash and a new DRBG for the nonce. Those HMACs are keyed with the
 * session's empty key and the EK's empty auth value: anyone can compute them, they protect
 * nothing here, and the TPM checks a policy session's HMAC only after TPM2_PolicyAuthValue,
 * which the EK's policy does not contain. The session itself is still ESYS's (ek_session). */

/* The command: activateHandle ak authorized by its (empty) password, keyHandle ek by the policy
 * session sess with a fresh caller nonce, an empty HMAC and continueSession clear (the TPM
 * flushes the session when the command succeeds). */
static int activate_command(TPM2_HANDLE ak, TPM2_HANDLE ek, TPM2_HANDLE sess,
			    const TPM2B_ID_OBJECT *blob, const TPM2B_ENCRYPTED_SECRET *enc,
			    uint8_t *buf, size_t cap, size_t *len)
{
	TPMS_AUTH_COMMAND pw = { .sessionHandle = TPM2_RH_PW };
	TPMS_AUTH_COMMAND pol = { .sessionHandle = sess, .nonce.size = 32 };
	size_t off = 10, at, hdr = 0; /* the header (tag, size, code) is written last */
	TSS2_RC rc;

	if (RAND_bytes(pol.nonce.buffer, pol.nonce.size) != 1)
		return -EIO;
	rc = Tss2_MU_TPM2_HANDLE_Marshal(ak, buf, cap, &off);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_TPM2_HANDLE_Marshal(ek, buf, cap, &off);
	at = off;
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_UINT32_Marshal(0, buf, cap, &off); /* authorizationSize, below */
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_TPMS_AUTH_COMMAND_Marshal(&pw, buf, cap, &off);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_TPMS_AUTH_COMMAND_Marshal(&pol, buf, cap, &off);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_UINT32_Marshal((UINT32)(off - at - 4), buf, cap, &at);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_TPM2B_ID_OBJECT_Marshal(blob, buf, cap, &off);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal(enc, buf, cap, &off);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_TPM2_ST_Marshal(TPM2_ST_SESSIONS, buf, cap, &hdr);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_UINT32_Marshal((UINT32)off, buf, cap, &hdr);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_TPM2_CC_Marshal(TPM2_CC_ActivateCredential, buf, cap, &hdr);
	*len = off;
	return rc == TSS2_RC_SUCCESS ? 0 : -EINVAL;
}

/* The response: *trc gets the TPM's response code; on success *info the credential. The
 * response sessions are not read (see above: nothing to verify in them). */
int tpm_activate_response(const uint8_t *rsp, size_t len, TSS2_RC *trc, TPM2B_DIGEST *info)
{
	TPM2_ST tag = 0;
	UINT32 size = 0, params = 0;
	size_t off = 0, end;

	*trc = TSS2_RC_SUCCESS;
	if (Tss2_MU_TPM2_ST_Unmarshal(rsp, len, &off, &tag) != TSS2_RC_SUCCESS ||
	    Tss2_MU_UINT32_Unmarshal(rsp, len, &off, &size) != TSS2_RC_SUCCESS ||
	    Tss2_MU_UINT32_Unmarshal(rsp, len, &off, trc) != TSS2_RC_SUCCESS || size != len)
		return -EBADMSG;
	if (*trc != TSS2_RC_SUCCESS)
		return -EIO;
	if (tag != TPM2_ST_SESSIONS ||
	    Tss2_MU_UINT32_Unmarshal(rsp, len, &off, &params) != TSS2_RC_SUCCESS ||
	    params > len - off)
		return -EBADMSG;
	end = off + params;
	memset(info, 0, sizeof(*info));
	if (Tss2_MU_TPM2B_DIGEST_Unmarshal(rsp, end, &off, info) != TSS2_RC_SUCCESS || off != end)
		return -EBADMSG;
	return 0;
}

/* Send TPM2_ActivateCredential through t's transport (ESYS is idle between its commands). */
static int activate_raw(struct tpm *t, TPM2_HANDLE ak, TPM2_HANDLE ek, TPM2_HANDLE sess,
			const TPM2B_ID_OBJECT *blob, const TPM2B_ENCRYPTED_SECRET *enc,
			TPM2B_DIGEST *info, struct diag *d)
{
	uint8_t cmd[TPM2_MAX_COMMAND_SIZE], rsp[TPM2_MAX_RESPONSE_SIZE];
	size_t cmd_len, rsp_len = sizeof(rsp);
	TSS2_RC rc;
	int ret;

	if (activate_command(ak, ek, sess, blob, enc, cmd, sizeof(cmd), &cmd_len) < 0)
		return diag_set(d, "TPM2_ActivateCredential: the command does not fit"), -EINVAL;
	/* A TPM may ask for the same command again (ESYS too resubmits these). */
	for (int i = 0; i < SUBMIT_TRIES; i++) {
		rsp_len = sizeof(rsp);
		rc = Tss2_Tcti_Transmit(t->tcti, cmd_len, cmd);
		if (rc == TSS2_RC_SUCCESS)
			rc = Tss2_Tcti_Receive(t->tcti, &rsp_len, rsp, TSS2_TCTI_TIMEOUT_BLOCK);
		if (rc != TSS2_RC_SUCCESS)
			return tss_fail(d, rc, "TPM2_ActivateCredential: TPM transport");
		ret = tpm_activate_response(rsp, rsp_len, &rc, info);
		if (ret != -EIO ||
		    (rc != TPM2_RC_RETRY && rc != TPM2_RC_YIELDED && rc != TPM2_RC_TESTING))
			break;
	}
	explicit_bzero(rsp, sizeof(rsp));
	if (ret == -EIO)
		return tss_fail(d, rc, "TPM2_ActivateCredential");
	if (ret < 0)
		return diag_set(d, "TPM2_ActivateCredential: malformed response from the TPM"),
		       -EIO;
	return 0;
}

int tpm_activate(struct tpm *t, const struct tpm_ak *ak, const TPM2B_ID_OBJECT *blob,
		 const TPM2B_ENCRYPTED_SECRET *enc, struct secret **credential, struct diag *d)
{
	ESYS_TR sess = ESYS_TR_NONE, akh = ESYS_TR_NONE;
	struct ek ek = { ESYS_TR_NONE, false, false };
	TPM2_HANDLE ek_handle, sess_handle;
	TPM2B_DIGEST info = { 0 };
	struct secret *s;
	TSS2_RC rc;
	int ret;

	ret = ak_open(t, ak, &akh, d);
	if (ret < 0)
		return ret;
	ret = ek_load(t, ak->ek_alg, &ek, NULL, d);
	if (ret < 0)
		goto out;
	ret = ek_session(t, &sess, d);
	if (ret < 0)
		goto out;
	rc = Esys_TR_GetTpmHandle(t->ctx, ek.tr, &ek_handle);
	if (rc == TSS2_RC_SUCCESS)
		rc = Esys_TR_GetTpmHandle(t->ctx, sess, &sess_handle);
	if (rc != TSS2_RC_SUCCESS) {
		ret = tss_fail(d, rc, "reading the TPM handles of the EK and its session");
		goto out;
	}
	ret = activate_raw(t, ak->handle, ek_handle, sess_handle, blob, enc, &info, d);
	if (ret < 0) {
		diag_prefix(d, "the TPM refused the credential (not made for this TPM's EK and "
			       "this AK, or altered)");
		goto out;
	}
	/* The TPM closed the session with the command: only ESYS's record of it is left. */
	Esys_TR_Close(t->ctx, &sess);
	s = secret_new(info.size);
	if (!s) {
		ret = -ENOMEM;
		diag_set(d, "allocating locked memory for the credential: %s", strerror(errno));
		goto out;
	}
	memcpy(s->data, info.buffer, info.size);
	*credential = s;
	ret = 0;
out:
	explicit_bzero(&info, sizeof(info));
	flush(t, &sess);
	ek_release(t, &ek);
	return ret;
}

static void pcr_selection(uint32_t mask, TPML_PCR_SELECTION *sel)
{
	memset(sel, 0, sizeof(*sel));
	sel->count = 1;
	sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
	sel->pcrSelections[0].sizeofSelect = PCR_SELECT_BYTES;
	for (uint32_t n = 0; n < PCR_MAX; n++)
		if (mask & (1u << n))
			sel->pcrSelections[0].pcrSelect[n / 8] |= (uint8_t)(1u << (n % 8));
}

static int check_mask(uint32_t mask, struct diag *d)
{
	if (mask == 0 || mask >> PCR_MAX)
		return diag_set(d, "PCR mask 0x%x: select PCRs among 0-23", mask), -EINVAL;
	return 0;
}

/* Copy one PCR_Read answer into pcrs, clearing what it returned from *left. */
static int pcr_take(const TPML_PCR_SELECTION *out, const TPML_DIGEST *vals, uint32_t *left,
		    uint8_t pcrs[24][32], struct diag *d)
{
	uint32_t k = 0;

	for (uint32_t i = 0; i < out->count; i++) {
		const TPMS_PCR_SELECTION *s = &out->pcrSelections[i];

		if (s->hash != TPM2_ALG_SHA256)
			continue;
		for (uint32_t n = 0; n < PCR_MAX && n / 8 < s->sizeofSelect; n++) {
			if (!(s->pcrSelect[n / 8] & (1u << (n % 8))))
				continue;
			if (k >= vals->count || vals->digests[k].size != 32 || !(*left & (1u << n)))
				return diag_set(d, "TPM2_PCR_Read answer is inconsistent at PCR %u",
						n),
				       -EBADMSG;
			memcpy(pcrs[n], vals->digests[k++].buffer, 32);
			*left &= ~(1u << n);
		}
	}
	if (k == 0)
		return diag_set(d, "TPM2_PCR_Read returned no SHA-256 PCR: is the SHA-256 bank "
				   "allocated?"),
		       -ENOENT;
	return 0;
}

/* One consistent read: restarts if the update counter moves between the partial reads. */
static int pcr_read_once(struct tpm *t, uint32_t mask, uint8_t pcrs[24][32], uint32_t *counter,
			 bool *torn, struct diag *d)
{
	uint32_t left = mask, c;
	int ret = 0;

	*torn = false;
	while (left && ret == 0) {
		TPML_PCR_SELECTION sel, *out = NULL;
		TPML_DIGEST *vals = NULL;
		TSS2_RC rc;

		pcr_selection(left, &sel);
		rc = Esys_PCR_Read(t->ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, &c, &out,
				   &vals);
		if (rc != TSS2_RC_SUCCESS)
			return tss_fail(d, rc, "TPM2_PCR_Read");
		if (left != mask && c != *counter)
			*torn = true;
		*counter = c;
		ret = pcr_take(out, vals, &left, pcrs, d);
		Esys_Free(out);
		Esys_Free(vals);
	}
	return ret;
}

int tpm_pcr_read(struct tpm *t, uint32_t mask, uint8_t pcrs[24][32], uint32_t *update_counter,
		 struct diag *d)
{
	uint32_t counter = 0;
	bool torn = true;
	int ret = check_mask(mask, d);

	for (int i = 0; ret == 0 && torn && i < QUOTE_TRIES; i++)
		ret = pcr_read_once(t, mask, pcrs, &counter, &torn, d);
	if (ret == 0 && torn)
		return diag_set(d, "PCRs kept changing while being read (%d tries)", QUOTE_TRIES),
		       -EAGAIN;
	if (ret == 0 && update_counter)
		*update_counter = counter;
	return ret;
}

int tpm_pcr_extend(struct tpm *t, uint32_t pcr, const uint8_t digest[32], struct diag *d)
{
	TPML_DIGEST_VALUES vals = { .count = 1 };
	TSS2_RC rc;

	if (pcr >= PCR_MAX)
		return diag_set(d, "PCR %u does not exist (0-23)", pcr), -EINVAL;
	vals.digests[0].hashAlg = TPM2_ALG_SHA256;
	memcpy(vals.digests[0].digest.sha256, digest, 32);
	t->pcrs_known &= ~(1u << pcr);
	rc = Esys_PCR_Extend(t->ctx, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
			     ESYS_TR_NONE, &vals);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "TPM2_PCR_Extend");
		return diag_prefix(d, "extending PCR %u", pcr), -EIO;
	}
	return 0;
}

/* One TPM2_Quote; *attest and *sig get the TPM's bytes (attest never re-marshalled). */
static int quote_once(struct tpm *t, ESYS_TR akh, const TPM2B_DATA *qd, uint32_t mask,
		      uint8_t **attest, size_t *attest_len, uint8_t **sig, size_t *sig_len,
		      struct diag *d)
{
	const TPMT_SIG_SCHEME scheme = { .scheme = TPM2_ALG_NULL }; /* the AK's own scheme */
	TPM2B_ATTEST *quoted = NULL;
	TPMT_SIGNATURE *signature = NULL;
	TPML_PCR_SELECTION sel;
	uint8_t *a = NULL, *s = NULL, sbuf[sizeof(TPMT_SIGNATURE)];
	size_t slen = 0;
	TSS2_RC rc;
	int ret = -EIO;

	pcr_selection(mask, &sel);
	rc = Esys_Quote(t->ctx, akh, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, qd, &scheme,
			&sel, &quoted, &signature);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "TPM2_Quote");
		goto out;
	}
	rc = Tss2_MU_TPMT_SIGNATURE_Marshal(signature, sbuf, sizeof(sbuf), &slen);
	if (rc != TSS2_RC_SUCCESS) {
		tss_fail(d, rc, "marshalling the quote signature");
		goto out;
	}
	a = malloc(quoted->size ? quoted->size : 1);
	s = malloc(slen);
	if (!a || !s) {
		ret = -ENOMEM;
		diag_set(d, "out of memory");
		goto out;
	}
	memcpy(a, quoted->attestationData, quoted->size);
	memcpy(s, sbuf, slen);
	*attest_len = quoted->size;
	*sig_len = slen;
	*attest = a;
	*sig = s;
	a = s = NULL;
	ret = 0;
out:
	free(a);
	free(s);
	Esys_Free(quoted);
	Esys_Free(signature);
	return ret;
}

/* SHA-256 over the PCRs of mask in ascending order: what a quote of those values signs. */
static void pcr_digest(uint32_t mask, const uint8_t pcrs[PCR_MAX][32], uint8_t out[32])
{
	uint8_t values[PCR_MAX * 32];
	size_t n = 0;

	for (uint32_t i = 0; i < PCR_MAX; i++)
		if (mask & (1u << i)) {
			memcpy(values + n, pcrs[i], 32);
			n += 32;
		}
	SHA256(values, n, out);
}

/* The PCR digest our TPM's quote signed, after checking it quotes exactly mask in SHA-256. */
static int quoted_digest(const uint8_t *attest, size_t len, uint32_t mask, uint8_t out[32],
			 struct diag *d)
{
	const TPMS_PCR_SELECTION *got;
	TPML_PCR_SELECTION want;
	TPMS_ATTEST a;
	size_t off = 0;

	memset(&a, 0, sizeof(a));
	if (Tss2_MU_TPMS_ATTEST_Unmarshal(attest, len, &off, &a) != TSS2_RC_SUCCESS || off != len ||
	    a.type != TPM2_ST_ATTEST_QUOTE)
		return diag_set(d, "the TPM's quote does not parse as a TPMS_ATTEST quote"),
		       -EBADMSG;
	pcr_selection(mask, &want);
	got = &a.attested.quote.pcrSelect.pcrSelections[0];
	if (a.attested.quote.pcrSelect.count != 1 || got->hash != TPM2_ALG_SHA256 ||
	    got->sizeofSelect != PCR_SELECT_BYTES ||
	    memcmp(got->pcrSelect, want.pcrSelections[0].pcrSelect, PCR_SELECT_BYTES) != 0 ||
	    a.attested.quote.pcrDigest.size != 32)
		return diag_set(d, "the TPM quoted another PCR selection than PCRs 0x%06x", mask),
		       -EBADMSG;
	memcpy(out, a.attested.quote.pcrDigest.buffer, 32);
	return 0;
}

/* Whether the PCR values t holds for mask are the ones that hash to digest. */
static bool known_pcrs_hash_to(const struct tpm *t, uint32_t mask, const uint8_t digest[32])
{
	uint8_t mine[32];

	if ((t->pcrs_known & mask) != mask)
		return false;
	pcr_digest(mask, t->pcrs, mine);
	return memcmp(mine, digest, 32) == 0;
}

static int pcrs_refresh(struct tpm *t, uint32_t mask, struct diag *d)
{
	int ret;

	t->pcrs_known = 0;
	ret = tpm_pcr_read(t, mask, t->pcrs, NULL, d);
	if (ret == 0)
		t->pcrs_known = mask;
	return ret;
}

int tpm_quote(struct tpm *t, const struct tpm_ak *ak, const uint8_t *qdata, size_t qlen,
	      uint32_t mask, uint8_t **attest, size_t *attest_len, uint8_t **sig, size_t *sig_len,
	      uint8_t pcrs[24][32], struct diag *d)
{
	TPM2B_DATA qd = { 0 };
	uint8_t digest[32];
	ESYS_TR akh;
	int ret;

	if (qlen > sizeof(qd.buffer))
		return diag_set(d, "qualifying data is %zu bytes; a TPM quote takes at most %zu",
				qlen, sizeof(qd.buffer)),
		       -EINVAL;
	ret = check_mask(mask, d);
	if (ret < 0)
		return ret;
	qd.size = (UINT16)qlen;
	if (qlen)
		memcpy(qd.buffer, qdata, qlen);
	ret = ak_open(t, ak, &akh, d);
	if (ret < 0)
		return ret;
	/* Quote, then pair it with the PCR values it signed: those must hash to its PCR digest.
	 * The values read last time usually do (PCRs rarely move after boot); otherwise read them
	 * now, and if even those do not, a PCR moved in between: quote again. */
	for (int i = 0; i < QUOTE_TRIES; i++) {
		ret = quote_once(t, akh, &qd, mask, attest, attest_len, sig, sig_len, d);
		if (ret < 0)
			return ret;
		ret = quoted_digest(*attest, *attest_len, mask, digest, d);
		if (ret == 0 && !known_pcrs_hash_to(t, mask, digest)) {
			ret = pcrs_refresh(t, mask, d);
			if (ret == 0 && !known_pcrs_hash_to(t, mask, digest)) {
				ret = -EAGAIN;
				diag_set(d, "PCRs kept changing during the quote (%d tries)",
					 QUOTE_TRIES);
			}
		}
		if (ret == 0) {
			for (uint32_t n = 0; n < PCR_MAX; n++)
				if (mask & (1u << n))
					memcpy(pcrs[n], t->pcrs[n], 32);
			return 0;
		}
		free(*attest);
		free(*sig);
		*attest = *sig = NULL;
		if (ret != -EAGAIN)
			break;
	}
	return ret;
}
