// SPDX-License-Identifier: Apache-2.0
/* Evidence production on the node, and the verifier's half of credential activation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <tss2_mu.h>

#include "conclave/attest.h"
#include "conclave/eventlog.h"
#include "conclave/log.h"
#include "conclave/tpm.h"
#include "conclave/tpmobj.h"
#include "conclave/util.h"
#include "conclave/verify.h"

struct der_chain {
	uint8_t *der[EVIDENCE_MAX_CHAIN];
	size_t len[EVIDENCE_MAX_CHAIN];
	size_t n;
};

static void der_chain_free(struct der_chain *c)
{
	for (size_t i = 0; i < c->n; i++)
		OPENSSL_free(c->der[i]);
	c->n = 0;
}

/* Intermediate certificates (PEM) to ship with the EK certificate, as DER. */
static int load_chain(const char *path, struct der_chain *c, struct diag *d)
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
		c->len[c->n] = (size_t)n;
		c->n++;
	}
	ERR_clear_error();
	BIO_free(bio);
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

/* What every proof from one TPM shares: the open TPM, its EK certificate, the AK, the EK chain
 * to ship, and the event log with the PCR values it was read under. A one-shot proof fills it and
 * drops it; an attest_ctx keeps it across proofs. */
struct prover {
	struct tpm *tpm;
	uint8_t *ek_der;
	size_t ek_len;
	struct tpm_ak ak;
	struct der_chain chain;
	uint8_t *log; /* NULL: not read (yet) */
	size_t log_len;
	uint32_t log_mask;
	uint8_t log_pcrs[24][32];
};

static void prover_close(struct prover *p)
{
	tpm_close(p->tpm);
	free(p->ek_der);
	der_chain_free(&p->chain);
	free(p->log);
	memset(p, 0, sizeof(*p));
}

/* Open the TPM, read its EK certificate, make sure of the AK, load the EK chain. */
static int prover_open(struct prover *p, const struct attest_opts *cfg, struct diag *d)
{
	uint16_t ek_alg;
	int ret;

	memset(p, 0, sizeof(*p));
	ret = tpm_open(cfg->tcti, &p->tpm, d);
	if (ret == 0)
		ret = tpm_read_ek_cert(p->tpm, &p->ek_der, &p->ek_len, &ek_alg, d);
	if (ret == 0 && cfg->ak_per_boot)
		ret = tpm_ak_forget_unrecorded(p->tpm, cfg->ak_state, d);
	if (ret == 0)
		ret = tpm_ak_ensure(p->tpm, cfg->ak_state, ek_alg, &p->ak, d);
	if (ret == 0 && cfg->ek_chain)
		ret = load_chain(cfg->ek_chain, &p->chain, d);
	if (ret < 0)
		prover_close(p);
	return ret;
}

int attest_node_id(const char *tcti, uint8_t id[32], struct diag *d)
{
	struct tpm *t = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	uint16_t alg;
	int ret = tpm_open(tcti, &t, d);

	if (ret == 0)
		ret = tpm_read_ek_cert(t, &der, &len, &alg, d);
	if (ret == 0 && !SHA256(der, len, id)) {
		diag_set(d, "SHA-256 failed in OpenSSL");
		ret = -EIO;
	}
	free(der);
	tpm_close(t);
	return ret;
}

static bool same_pcrs(uint32_t mask, uint8_t a[24][32], uint8_t b[24][32])
{
	for (uint32_t n = 0; n < 24; n++)
		if ((mask & (1u << n)) && memcmp(a[n], b[n], 32) != 0)
			return false;
	return true;
}

/* The event log to ship with a quote of pcrs (PCRs in mask): the bytes read for an earlier quote
 * of exactly these PCR values, or else read now. A boot's log is final once the firmware hands
 * over, and an event appended to it would extend its PCR too: while the quoted PCRs stand still,
 * the log's account of them is the one read before. */
static int event_log_for(struct prover *p, const char *path, uint32_t mask, uint8_t pcrs[24][32],
			 struct diag *d)
{
	int ret;

	if (p->log && p->log_mask == mask && same_pcrs(mask, p->log_pcrs, pcrs))
		return 0;
	free(p->log);
	p->log = NULL;
	ret = read_file(path, EVENTLOG_MAX_SIZE, &p->log, &p->log_len);
	if (ret < 0) {
		p->log = NULL;
		diag_set(d, "cannot read event log %s: %s", path, strerror(-ret));
		return ret;
	}
	p->log_mask = mask;
	memcpy(p->log_pcrs, pcrs, sizeof(p->log_pcrs));
	return 0;
}

/* One proof: answer the challenge if any, quote over o's qualifying data, encode the evidence. */
static int prove(struct prover *p, const char *event_log, const struct attest_opts *o,
		 uint8_t **out, size_t *len, struct diag *d)
{
	struct evidence ev = { 0 };
	uint8_t *attest = NULL, *sig = NULL;
	uint8_t akpub[sizeof(TPMT_PUBLIC)], proof[32];
	size_t attest_len, sig_len, akpub_len = 0;
	int ret = 0;

	if (o->challenge) {
		ret = answer_challenge(p->tpm, &p->ak, o, proof, d);
		if (ret < 0) {
			diag_prefix(d, "credential activation");
			goto out;
		}
		ev.activation = (struct blob){ proof, sizeof(proof) };
	}
	ret = tpm_quote(p->tpm, &p->ak, o->qdata, o->qlen, o->pcr_mask, &attest, &attest_len, &sig,
			&sig_len, ev.pcrs, d);
	if (ret < 0)
		goto out;
	if (Tss2_MU_TPMT_PUBLIC_Marshal(&p->ak.pub.publicArea, akpub, sizeof(akpub), &akpub_len)) {
		diag_set(d, "cannot marshal the AK public area");
		ret = -EINVAL;
		goto out;
	}
	if (event_log) {
		ret = event_log_for(p, event_log, o->pcr_mask, ev.pcrs, d);
		if (ret < 0)
			goto out;
		ev.event_log = (struct blob){ p->log, p->log_len };
	}
	for (size_t i = 0; i < p->chain.n; i++)
		ev.ek_chain[i] = (struct blob){ p->chain.der[i], p->chain.len[i] };
	ev.n_chain = p->chain.n;
	ev.quote = (struct blob){ attest, attest_len };
	ev.signature = (struct blob){ sig, sig_len };
	ev.ak_public = (struct blob){ akpub, akpub_len };
	ev.ek_cert = (struct blob){ p->ek_der, p->ek_len };
	ev.pcr_mask = o->pcr_mask;
	ret = evidence_encode(&ev, out, len);
out:
	OPENSSL_cleanse(proof, sizeof(proof));
	free(attest);
	free(sig);
	return ret;
}

struct attest_ctx {
	pthread_mutex_t lock; /* one proof at a time: the TPM session is one */
	struct attest_opts cfg;
	char *strings[4]; /* cfg's, owned */
	struct prover p;  /* p.tpm == NULL: closed */
};

int attest_ctx_new(const struct attest_opts *o, struct attest_ctx **out, struct diag *d)
{
	struct attest_ctx *c = calloc(1, sizeof(*c));
	const char *src[4] = { o->tcti, o->ak_state, o->event_log, o->ek_chain };
	const char **dst[4];

	if (!c)
		return diag_set(d, "out of memory"), -ENOMEM;
	c->cfg = (struct attest_opts){ .pcr_mask = o->pcr_mask, .ak_per_boot = o->ak_per_boot };
	dst[0] = &c->cfg.tcti;
	dst[1] = &c->cfg.ak_state;
	dst[2] = &c->cfg.event_log;
	dst[3] = &c->cfg.ek_chain;
	for (size_t i = 0; i < ARRAY_SIZE(src); i++) {
		if (!src[i])
			continue;
		c->strings[i] = strdup(src[i]);
		if (!c->strings[i]) {
			attest_ctx_free(c);
			return diag_set(d, "out of memory"), -ENOMEM;
		}
		*dst[i] = c->strings[i];
	}
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void attest_ctx_free(struct attest_ctx *c)
{
	if (!c)
		return;
	prover_close(&c->p);
	for (size_t i = 0; i < ARRAY_SIZE(c->strings); i++)
		free(c->strings[i]);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* A proof with the kept prover, opening it first if needed. When the TPM fails (-EIO: transport,
 * TPM or tpm2-tss error) the prover is dropped; if it was kept from an earlier proof, the proof is
 * tried once more on a fresh connection, so a restarted TPM costs no proof. */
static int ctx_produce(struct attest_ctx *c, const struct attest_opts *o, uint8_t **out,
		       size_t *len, struct diag *d)
{
	bool kept;
	int ret;

	pthread_mutex_lock(&c->lock);
	for (int attempt = 0;; attempt++) {
		kept = c->p.tpm != NULL;
		ret = kept ? 0 : prover_open(&c->p, &c->cfg, d);
		if (ret == 0)
			ret = prove(&c->p, c->cfg.event_log, o, out, len, d);
		if (ret != -EIO)
			break;
		prover_close(&c->p);
		if (!kept || attempt > 0)
			break;
		log_info("attest: the TPM at %s failed (%s); opening it again", c->cfg.tcti,
			 d ? d->msg : "no detail");
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int attest_produce(const struct attest_opts *o, uint8_t **out, size_t *len, struct diag *d)
{
	struct prover p;
	int ret;

	if (o->ctx)
		return ctx_produce(o->ctx, o, out, len, d);
	if (o->tpm_lock)
		pthread_mutex_lock(o->tpm_lock);
	ret = prover_open(&p, o, d);
	if (ret == 0)
		ret = prove(&p, o->event_log, o, out, len, d);
	prover_close(&p);
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
