// SPDX-License-Identifier: Apache-2.0
/* Evidence production on the node, and the verifier's half of credential activation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <tss2_mu.h>

#include "conclave/attest.h"
#include "conclave/eventlog.h"
#include "conclave/tpm.h"
#include "conclave/tpmobj.h"
#include "conclave/util.h"
#include "conclave/verify.h"

struct der_chain {
	uint8_t *der[EVIDENCE_MAX_CHAIN];
	size_t n;
};

static void der_chain_free(struct der_chain *c)
{
	for (size_t i = 0; i < c->n; i++)
		OPENSSL_free(c->der[i]);
	c->n = 0;
}

/* Intermediate certificates (PEM) to ship with the EK certificate. */
static int load_chain(const char *path, struct evidence *ev, struct der_chain *c, struct diag *d)
{
	BIO *bio = BIO_new_file(path, "r");
	X509 *x;

	if (!bio) {
		diag_set(d, "cannot read EK chain %s", path);
		return -ENOENT;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		int n;

		if (c->n == EVIDENCE_MAX_CHAIN) {
			X509_free(x);
			BIO_free(bio);
			diag_set(d, "EK chain %s holds more than %d certificates", path,
				 EVIDENCE_MAX_CHAIN);
			return -E2BIG;
		}
		c->der[c->n] = NULL;
		n = i2d_X509(x, &c->der[c->n]);
		X509_free(x);
		if (n <= 0) {
			BIO_free(bio);
			return -ENOMEM;
		}
		ev->ek_chain[c->n] = (struct blob){ c->der[c->n], (size_t)n };
		c->n++;
	}
	ERR_clear_error();
	BIO_free(bio);
	ev->n_chain = c->n;
	return 0;
}

/* Open the challenge with the TPM and prove it without revealing the credential. */
static int answer_challenge(struct tpm *t, const struct tpm_ak *ak, const struct attest_opts *o,
			    uint8_t proof[32], struct diag *d)
{
	uint8_t name[TPMOBJ_NAME_MAX];
	size_t name_len, off = 0;
	struct challenge ch;
	TPM2B_ID_OBJECT blob = { 0 };
	TPM2B_ENCRYPTED_SECRET enc = { 0 };
	struct secret *cred = NULL;
	int ret;

	ret = challenge_decode(o->challenge, o->challenge_len, &ch, d);
	if (ret < 0)
		return ret;
	ret = tpmobj_name(&ak->pub.publicArea, name, &name_len);
	if (ret < 0)
		return ret;
	if (ch.ak_name.len != name_len || memcmp(ch.ak_name.p, name, name_len)) {
		diag_set(d, "the challenge is for another AK than this node's");
		return -EINVAL;
	}
	if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(ch.id_object.p, ch.id_object.len, &off, &blob) ||
	    off != ch.id_object.len) {
		diag_set(d, "challenge credential blob is malformed");
		return -EBADMSG;
	}
	off = 0;
	if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(ch.encrypted_secret.p, ch.encrypted_secret.len,
						     &off, &enc) ||
	    off != ch.encrypted_secret.len) {
		diag_set(d, "challenge encrypted secret is malformed");
		return -EBADMSG;
	}
	ret = tpm_activate(t, ak, &blob, &enc, &cred, d);
	if (ret < 0)
		return ret;
	ret = activation_proof(cred->data, cred->len, name, name_len, o->qdata, o->qlen, proof);
	secret_free(cred);
	return ret;
}

static int produce(const struct attest_opts *o, uint8_t **out, size_t *len, struct diag *d)
{
	struct evidence ev = { 0 };
	struct der_chain chain = { 0 };
	struct tpm *t = NULL;
	struct tpm_ak ak;
	uint8_t *ek_der = NULL, *attest = NULL, *sig = NULL, *log = NULL;
	uint8_t akpub[sizeof(TPMT_PUBLIC)], proof[32];
	size_t ek_len, attest_len, sig_len, log_len = 0, akpub_len = 0;
	uint16_t ek_alg;
	int ret;

	ret = tpm_open(o->tcti, &t, d);
	if (ret < 0)
		return ret;
	ret = tpm_read_ek_cert(t, &ek_der, &ek_len, &ek_alg, d);
	if (ret < 0)
		goto out;
	if (o->ak_per_boot)
		ret = tpm_ak_forget_unrecorded(t, o->ak_state, d);
	if (ret == 0)
		ret = tpm_ak_ensure(t, o->ak_state, ek_alg, &ak, d);
	if (ret < 0)
		goto out;
	if (o->challenge) {
		ret = answer_challenge(t, &ak, o, proof, d);
		if (ret < 0) {
			diag_prefix(d, "credential activation");
			goto out;
		}
		ev.activation = (struct blob){ proof, sizeof(proof) };
	}
	ret = tpm_quote(t, &ak, o->qdata, o->qlen, o->pcr_mask, &attest, &attest_len, &sig,
			&sig_len, ev.pcrs, d);
	if (ret < 0)
		goto out;
	if (Tss2_MU_TPMT_PUBLIC_Marshal(&ak.pub.publicArea, akpub, sizeof(akpub), &akpub_len)) {
		diag_set(d, "cannot marshal the AK public area");
		ret = -EINVAL;
		goto out;
	}
	if (o->event_log) {
		ret = read_file(o->event_log, EVENTLOG_MAX_SIZE, &log, &log_len);
		if (ret < 0) {
			diag_set(d, "cannot read event log %s: %s", o->event_log, strerror(-ret));
			goto out;
		}
		ev.event_log = (struct blob){ log, log_len };
	}
	if (o->ek_chain && (ret = load_chain(o->ek_chain, &ev, &chain, d)) < 0)
		goto out;
	ev.quote = (struct blob){ attest, attest_len };
	ev.signature = (struct blob){ sig, sig_len };
	ev.ak_public = (struct blob){ akpub, akpub_len };
	ev.ek_cert = (struct blob){ ek_der, ek_len };
	ev.pcr_mask = o->pcr_mask;
	ret = evidence_encode(&ev, out, len);
out:
	OPENSSL_cleanse(proof, sizeof(proof));
	der_chain_free(&chain);
	free(ek_der);
	free(attest);
	free(sig);
	free(log);
	tpm_close(t);
	return ret;
}

int attest_produce(const struct attest_opts *o, uint8_t **out, size_t *len, struct diag *d)
{
	int ret;

	if (o->tpm_lock)
		pthread_mutex_lock(o->tpm_lock);
	ret = produce(o, out, len, d);
	if (o->tpm_lock)
		pthread_mutex_unlock(o->tpm_lock);
	return ret;
}

static int marshal_challenge(const TPM2B_ID_OBJECT *blob, const TPM2B_ENCRYPTED_SECRET *enc,
			     const uint8_t *name, size_t name_len, uint8_t **out, size_t *len)
{
	uint8_t bbuf[sizeof(*blob)], ebuf[sizeof(*enc)];
	size_t blen = 0, elen = 0;
	struct challenge ch;

	if (Tss2_MU_TPM2B_ID_OBJECT_Marshal(blob, bbuf, sizeof(bbuf), &blen) ||
	    Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal(enc, ebuf, sizeof(ebuf), &elen))
		return -EINVAL;
	ch.id_object = (struct blob){ bbuf, blen };
	ch.encrypted_secret = (struct blob){ ebuf, elen };
	ch.ak_name = (struct blob){ name, name_len };
	return challenge_encode(&ch, out, len);
}

int attest_make_challenge(const struct evidence *ev, X509_STORE *ca, uint8_t **out, size_t *len,
			  struct credential *credential, struct diag *d)
{
	TPM2B_PUBLIC ek_pub = { 0 };
	TPMT_PUBLIC ak = { 0 };
	TPM2B_ID_OBJECT blob = { 0 };
	TPM2B_ENCRYPTED_SECRET enc = { 0 };
	uint8_t name[TPMOBJ_NAME_MAX];
	struct secret *cred = NULL;
	size_t name_len, off = 0;
	X509 *ek = NULL;
	int ret;

	/* Wrap a credential only for a genuine EK and an AK that claims TPM residency: the TPM
	 * then refuses to activate it unless the AK really is a fixedTPM key beside that EK. */
	ret = ekcert_verify(ca, &ev->ek_cert, ev->ek_chain, ev->n_chain, &ek, d);
	if (ret < 0)
		return ret;
	ret = tpmobj_ek_from_cert(ek, &ek_pub, d);
	X509_free(ek);
	if (ret < 0)
		return ret;
	if (Tss2_MU_TPMT_PUBLIC_Unmarshal(ev->ak_public.p, ev->ak_public.len, &off, &ak) ||
	    off != ev->ak_public.len) {
		diag_set(d, "AK public area does not parse");
		return -EBADMSG;
	}
	ret = tpmobj_check_ak(&ak, d);
	if (ret < 0)
		return ret;
	ret = tpmobj_name(&ak, name, &name_len);
	if (ret < 0)
		return ret;
	cred = secret_random(32);
	if (!cred)
		return -ENOMEM;
	ret =
	    tpmobj_make_credential(&ek_pub, name, name_len, cred->data, cred->len, &blob, &enc, d);
	if (ret == 0)
		ret = marshal_challenge(&blob, &enc, name, name_len, out, len);
	if (ret < 0) {
		secret_free(cred);
		return ret;
	}
	credential->secret = cred;
	memcpy(credential->ak_name, name, name_len);
	credential->ak_name_len = name_len;
	return 0;
}
