// SPDX-License-Identifier: Apache-2.0
/* The TPM modules against a real swtpm: EK certificate, AK lifecycle, credential activation
 * (software MakeCredential, RSA and ECC EKs), the EK persisted at its TCG handle, quotes checked
 * with OpenSSL alone, PCRs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <tss2_mu.h>
#include <tss2_tctildr.h>

#include "conclave/tpm.h"
#include "conclave/tpmobj.h"
#include "conclave/util.h"
#include "swtpm_harness.h"

#define PCRS_0_TO_9 0x3ffu
#define ALL_PCRS    0xffffffu

struct fx {
	struct swtpm sw;
	struct tpm *tpm;
	struct tpm_ak ak;
	char state[PATH_MAX];
};

/* TPM2_PERSISTENT_FIRST and TPM2_TRANSIENT_FIRST shift a signed int into its sign bit (UB that
 * UBSan reports). */
#define PERSISTENT_FIRST ((uint32_t)TPM2_HT_PERSISTENT << TPM2_HR_SHIFT)
#define TRANSIENT_FIRST	 ((uint32_t)TPM2_HT_TRANSIENT << TPM2_HR_SHIFT)
static struct tpm *fx_open(struct fx *f)
{
	struct diag d = { 0 };
	int ret = tpm_open(f->sw.tcti, &f->tpm, &d);

	if (ret < 0)
		fail_msg("tpm_open(%s): %s", f->sw.tcti, d.msg);
	return f->tpm;
}

/* A fresh swtpm (RSA EK + certificate) and an open TPM; no AK yet. */
static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || swtpm_start(&f->sw) < 0) {
		fprintf(stderr, "swtpm could not be started (see tests/tools/swtpm-env)\n");
		free(f);
		return -1;
	}
	snprintf(f->state, sizeof(f->state), "%s/node-state", f->sw.dir);
	fx_open(f);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	if (!f)
		return 0;
	tpm_close(f->tpm);
	swtpm_destroy(&f->sw);
	free(f);
	return 0;
}

/* Shared group fixture: the swtpm plus an AK under the RSA EK. */
static int group_setup(void **state)
{
	struct diag d = { 0 };
	struct fx *f;

	if (fx_setup(state) < 0)
		return -1;
	f = *state;
	if (tpm_ak_ensure(f->tpm, f->state, TPM2_ALG_RSA, &f->ak, &d) < 0) {
		fprintf(stderr, "tpm_ak_ensure: %s\n", d.msg);
		return -1;
	}
	return 0;
}

static void ak_name(const struct tpm_ak *ak, uint8_t name[TPMOBJ_NAME_MAX], size_t *len)
{
	assert_int_equal(tpmobj_name(&ak->pub.publicArea, name, len), 0);
	assert_int_equal(*len, 34);
}

static X509 *pem_cert(const char *path)
{
	FILE *fp = fopen(path, "r");
	X509 *x;

	assert_non_null(fp);
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(x);
	return x;
}

static X509 *read_ek_cert(struct fx *f)
{
	struct diag d = { 0 };
	uint8_t *der = NULL;
	const uint8_t *p;
	uint16_t alg = 0;
	size_t len = 0;
	X509 *x;

	if (tpm_read_ek_cert(f->tpm, &der, &len, &alg, &d) < 0)
		fail_msg("tpm_read_ek_cert: %s", d.msg);
	assert_int_equal(alg, TPM2_ALG_RSA);
	p = der;
	x = d2i_X509(NULL, &p, (long)len);
	assert_non_null(x);
	assert_ptr_equal(p, der + len); /* exactly one certificate, no trailing bytes */
	free(der);
	return x;
}

static void ek_cert_from_nv_chains_to_the_swtpm_ca(void **state)
{
	struct fx *f = *state;
	X509 *cert = read_ek_cert(f), *issuer = pem_cert(f->sw.issuer);
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *chain = sk_X509_new_null();

	assert_int_equal(X509_STORE_load_file(store, f->sw.ca), 1);
	assert_true(sk_X509_push(chain, issuer) > 0);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, cert, chain), 1);
	if (X509_verify_cert(ctx) != 1)
		fail_msg("EK certificate does not chain to the swtpm CA: %s",
			 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_pop_free(chain, X509_free);
	X509_free(cert);
}

static void ek_from_cert_equals_the_tpm_rsa_ek(void **state)
{
	struct fx *f = *state;
	uint8_t n1[TPMOBJ_NAME_MAX], n2[TPMOBJ_NAME_MAX];
	TPM2B_PUBLIC from_cert, from_tpm;
	struct diag d = { 0 };
	X509 *cert = read_ek_cert(f);
	size_t l1, l2;

	assert_int_equal(tpmobj_ek_from_cert(cert, &from_cert, &d), 0);
	if (tpm_ek_public(f->tpm, TPM2_ALG_RSA, &from_tpm, &d) < 0)
		fail_msg("tpm_ek_public: %s", d.msg);
	assert_int_equal(from_tpm.publicArea.unique.rsa.size, 256);
	assert_memory_equal(from_cert.publicArea.unique.rsa.buffer,
			    from_tpm.publicArea.unique.rsa.buffer, 256);
	assert_int_equal(tpmobj_name(&from_cert.publicArea, n1, &l1), 0);
	assert_int_equal(tpmobj_name(&from_tpm.publicArea, n2, &l2), 0);
	assert_int_equal(l1, l2);
	assert_memory_equal(n1, n2, l1);
	X509_free(cert);
}

static void assert_mode(const char *dir, const char *file, unsigned int mode)
{
	char path[PATH_MAX + 16];
	struct stat st;

	snprintf(path, sizeof(path), "%s%s%s", dir, file ? "/" : "", file ? file : "");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, mode);
}

static void ak_is_created_then_reloaded_across_a_tpm_restart(void **state)
{
	struct fx *f = *state;
	uint8_t n1[TPMOBJ_NAME_MAX], n2[TPMOBJ_NAME_MAX];
	struct tpm_ak again;
	struct diag d = { 0 };
	size_t l1, l2;

	if (tpm_ak_ensure(f->tpm, f->state, TPM2_ALG_RSA, &f->ak, &d) < 0)
		fail_msg("tpm_ak_ensure (create): %s", d.msg);
	assert_int_equal(f->ak.handle, TPM_AK_HANDLE);
	assert_mode(f->state, NULL, 0700);
	assert_mode(f->state, "ak.pub", 0600);
	assert_mode(f->state, "ak.handle", 0600);
	assert_mode(f->state, "ek.alg", 0600);
	ak_name(&f->ak, n1, &l1);

	tpm_close(f->tpm);
	f->tpm = NULL;
	assert_int_equal(swtpm_restart(&f->sw), 0);
	fx_open(f);
	if (tpm_ak_ensure(f->tpm, f->state, TPM2_ALG_RSA, &again, &d) < 0)
		fail_msg("tpm_ak_ensure (reload): %s", d.msg);
	ak_name(&again, n2, &l2);
	assert_memory_equal(n1, n2, l1);
}

static void ak_handle_held_by_an_unrecorded_key_is_not_taken_over(void **state)
{
	struct fx *f = *state;
	char other[PATH_MAX + 16];
	struct tpm_ak ak;
	struct diag d = { 0 };

	if (tpm_ak_ensure(f->tpm, f->state, TPM2_ALG_RSA, &f->ak, &d) < 0)
		fail_msg("tpm_ak_ensure: %s", d.msg);
	snprintf(other, sizeof(other), "%s/other-state", f->sw.dir);
	assert_int_equal(tpm_ak_ensure(f->tpm, other, TPM2_ALG_RSA, &ak, &d), -EEXIST);
	assert_non_null(strstr(d.msg, "refusing"));
	/* The recorded AK is still there and still accepted. */
	assert_int_equal(tpm_ak_ensure(f->tpm, f->state, TPM2_ALG_RSA, &ak, &d), 0);
}

/* Copy state_dir's record into DIR/name, flipping the last byte of ak.pub. */
static void copy_record_tampered(struct fx *f, const char *name, char *dir, size_t len)
{
	static const char *const files[] = { "ak.pub", "ak.handle", "ek.alg" };
	char src[PATH_MAX + 16], dst[PATH_MAX + 32];

	snprintf(dir, len, "%s/%s", f->sw.dir, name);
	assert_int_equal(mkdir(dir, 0700), 0);
	for (size_t i = 0; i < 3; i++) {
		uint8_t *buf = NULL;
		size_t n;

		snprintf(src, sizeof(src), "%s/%s", f->state, files[i]);
		snprintf(dst, sizeof(dst), "%s/%s", dir, files[i]);
		assert_int_equal(read_file(src, 4096, &buf, &n), 0);
		if (i == 0)
			buf[n - 1] ^= 0x01;
		assert_int_equal(write_file_atomic(dst, buf, n, 0644), 0);
		free(buf);
	}
}

static void recorded_ak_that_differs_from_the_tpm_key_is_refused(void **state)
{
	struct fx *f = *state;
	char dir[PATH_MAX + 16];
	struct tpm_ak ak;
	struct diag d = { 0 };

	copy_record_tampered(f, "tampered-state", dir, sizeof(dir));
	assert_int_equal(tpm_ak_ensure(f->tpm, dir, TPM2_ALG_RSA, &ak, &d), -EEXIST);
	assert_non_null(strstr(d.msg, "not the AK recorded"));
	/* Asking for an AK under the other EK than the recorded one is refused too. */
	assert_int_equal(tpm_ak_ensure(f->tpm, f->state, TPM2_ALG_ECC, &ak, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "RSA EK"));
}

static void ak_passes_the_ak_check(void **state)
{
	struct fx *f = *state;
	struct diag d = { 0 };

	if (tpmobj_check_ak(&f->ak.pub.publicArea, &d) < 0)
		fail_msg("tpmobj_check_ak: %s", d.msg);
}

static void tampered_ak_template_fails_naming_the_attribute(void **state)
{
	static const struct {
		TPMA_OBJECT bit;
		int set;
		const char *word;
	} cases[] = {
		{ TPMA_OBJECT_RESTRICTED, 0, "restricted" },
		{ TPMA_OBJECT_FIXEDTPM, 0, "fixedTPM" },
		{ TPMA_OBJECT_FIXEDPARENT, 0, "fixedParent" },
		{ TPMA_OBJECT_SENSITIVEDATAORIGIN, 0, "sensitiveDataOrigin" },
		{ TPMA_OBJECT_SIGN_ENCRYPT, 0, "sign" },
		{ TPMA_OBJECT_DECRYPT, 1, "decrypt" },
	};
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TPMT_PUBLIC p = f->ak.pub.publicArea;
		struct diag d = { 0 };

		if (cases[i].set)
			p.objectAttributes |= cases[i].bit;
		else
			p.objectAttributes &= ~cases[i].bit;
		assert_int_equal(tpmobj_check_ak(&p, &d), -EINVAL);
		if (!strstr(d.msg, cases[i].word))
			fail_msg("tampering %s: message \"%s\" does not name it", cases[i].word,
				 d.msg);
	}
}

static void ak_check_refuses_a_weak_scheme(void **state)
{
	struct fx *f = *state;
	TPMT_PUBLIC p = f->ak.pub.publicArea;
	struct diag d = { 0 };

	p.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA1;
	assert_int_equal(tpmobj_check_ak(&p, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "SHA-256"));
}

static void pubkey_refuses_a_point_off_the_curve(void **state)
{
	struct fx *f = *state;
	TPMT_PUBLIC p = f->ak.pub.publicArea;
	struct diag d = { 0 };
	EVP_PKEY *k = NULL;

	assert_int_equal(tpmobj_pubkey(&p, &k, &d), 0);
	EVP_PKEY_free(k);
	k = NULL;
	p.unique.ecc.y.buffer[31] ^= 1;
	assert_true(tpmobj_pubkey(&p, &k, &d) < 0);
	assert_null(k);
}

/* Wrap cred for (ek, name) in software; activate it in the TPM; expect ret. */
static int activate(struct fx *f, const struct tpm_ak *ak, const TPM2B_PUBLIC *ek,
		    const uint8_t *name, size_t name_len, const uint8_t *cred, size_t cred_len,
		    int corrupt, struct diag *d)
{
	TPM2B_ID_OBJECT blob;
	TPM2B_ENCRYPTED_SECRET enc;
	struct secret *out = NULL;
	int ret;

	if (tpmobj_make_credential(ek, name, name_len, cred, cred_len, &blob, &enc, d) < 0)
		fail_msg("tpmobj_make_credential: %s", d->msg);
	if (corrupt == 1)
		blob.credential[2 + 5] ^= 0x01; /* outer HMAC */
	else if (corrupt == 2)
		blob.credential[blob.size - 1] ^= 0x80; /* encrypted credential */
	else if (corrupt == 3)
		enc.secret[enc.size / 2] ^= 0x01; /* encrypted seed */
	ret = tpm_activate(f->tpm, ak, &blob, &enc, &out, d);
	if (ret == 0) {
		assert_non_null(out);
		assert_int_equal(out->len, cred_len);
		assert_memory_equal(out->data, cred, cred_len);
	} else {
		assert_null(out);
	}
	secret_free(out);
	return ret;
}

static void rsa_ek_activation_returns_the_credential(void **state)
{
	struct fx *f = *state;
	uint8_t name[TPMOBJ_NAME_MAX], cred[32];
	TPM2B_PUBLIC ek;
	struct diag d = { 0 };
	size_t nlen;

	assert_int_equal(RAND_bytes(cred, sizeof(cred)), 1);
	assert_int_equal(tpm_ek_public(f->tpm, TPM2_ALG_RSA, &ek, &d), 0);
	ak_name(&f->ak, name, &nlen);
	if (activate(f, &f->ak, &ek, name, nlen, cred, sizeof(cred), 0, &d) < 0)
		fail_msg("tpm_activate: %s", d.msg);
}

static void ecc_ek_activation_returns_the_credential(void **state)
{
	struct fx *f = *state;
	uint8_t name[TPMOBJ_NAME_MAX], cred[32];
	TPM2B_PUBLIC ek;
	struct diag d = { 0 };
	size_t nlen;

	if (tpm_ek_public(f->tpm, TPM2_ALG_ECC, &ek, &d) < 0)
		fail_msg("tpm_ek_public(ECC): %s", d.msg);
	assert_int_equal(ek.publicArea.type, TPM2_ALG_ECC);
	if (tpm_ak_ensure(f->tpm, f->state, TPM2_ALG_ECC, &f->ak, &d) < 0)
		fail_msg("tpm_ak_ensure(ECC EK): %s", d.msg);
	assert_int_equal(f->ak.ek_alg, TPM2_ALG_ECC);
	assert_int_equal(RAND_bytes(cred, sizeof(cred)), 1);
	ak_name(&f->ak, name, &nlen);
	if (activate(f, &f->ak, &ek, name, nlen, cred, sizeof(cred), 0, &d) < 0)
		fail_msg("tpm_activate: %s", d.msg);
	/* The RSA EK of the same TPM is not the key the AK was enrolled under. */
	assert_int_equal(tpm_ek_public(f->tpm, TPM2_ALG_RSA, &ek, &d), 0);
	assert_true(activate(f, &f->ak, &ek, name, nlen, cred, sizeof(cred), 0, &d) < 0);
}

static void activation_for_a_wrong_ak_name_is_refused_by_the_tpm(void **state)
{
	struct fx *f = *state;
	uint8_t name[TPMOBJ_NAME_MAX], cred[32] = { 1, 2, 3 };
	TPM2B_PUBLIC ek;
	struct diag d = { 0 };
	size_t nlen;

	assert_int_equal(tpm_ek_public(f->tpm, TPM2_ALG_RSA, &ek, &d), 0);
	ak_name(&f->ak, name, &nlen);
	name[nlen - 1] ^= 0x01;
	assert_int_equal(activate(f, &f->ak, &ek, name, nlen, cred, sizeof(cred), 0, &d), -EIO);
	assert_non_null(strstr(d.msg, "ActivateCredential"));
}

static void activation_blob_with_a_flipped_byte_is_refused(void **state)
{
	struct fx *f = *state;
	uint8_t name[TPMOBJ_NAME_MAX], cred[32] = { 4, 5, 6 };
	TPM2B_PUBLIC ek;
	struct diag d = { 0 };
	size_t nlen;

	assert_int_equal(tpm_ek_public(f->tpm, TPM2_ALG_RSA, &ek, &d), 0);
	ak_name(&f->ak, name, &nlen);
	for (int corrupt = 1; corrupt <= 3; corrupt++) {
		d.msg[0] = '\0';
		assert_int_equal(
		    activate(f, &f->ak, &ek, name, nlen, cred, sizeof(cred), corrupt, &d), -EIO);
		assert_non_null(strstr(d.msg, "ActivateCredential"));
	}
}

/* Raw ESAPI on the test's swtpm, to set up or inspect what the module must cope with. The swtpm
 * serves one connection at a time, so this closes f->tpm; raw_close reopens it. */
struct raw {
	TSS2_TCTI_CONTEXT *tcti;
	ESYS_CONTEXT *ctx;
};

static ESYS_CONTEXT *raw_open(struct fx *f, struct raw *r)
{
	tpm_close(f->tpm);
	f->tpm = NULL;
	assert_int_equal(Tss2_TctiLdr_Initialize(f->sw.tcti, &r->tcti), TSS2_RC_SUCCESS);
	assert_int_equal(Esys_Initialize(&r->ctx, r->tcti, NULL), TSS2_RC_SUCCESS);
	return r->ctx;
}

static void raw_close(struct fx *f, struct raw *r)
{
	Esys_Finalize(&r->ctx);
	Tss2_TctiLdr_Finalize(&r->tcti);
	fx_open(f);
}

/* Handles the TPM holds in first's range (persistent objects, or transient ones left behind). */
static uint32_t count_handles(ESYS_CONTEXT *ctx, TPM2_HANDLE first)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	uint32_t n = 0;

	assert_int_equal(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
					    TPM2_CAP_HANDLES, first, TPM2_MAX_CAP_HANDLES, &more,
					    &cap),
			 TSS2_RC_SUCCESS);
	for (uint32_t i = 0; i < cap->data.handles.count; i++)
		n += cap->data.handles.handle[i] >> TPM2_HR_SHIFT == first >> TPM2_HR_SHIFT;
	Esys_Free(cap);
	return n;
}

static bool has_handle(ESYS_CONTEXT *ctx, TPM2_HANDLE h)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	bool found;

	assert_int_equal(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
					    TPM2_CAP_HANDLES, h, 1, &more, &cap),
			 TSS2_RC_SUCCESS);
	found = cap->data.handles.count == 1 && cap->data.handles.handle[0] == h;
	Esys_Free(cap);
	return found;
}

static void read_public_at(ESYS_CONTEXT *ctx, TPM2_HANDLE h, TPM2B_PUBLIC *pub)
{
	TPM2B_PUBLIC *out = NULL;
	ESYS_TR tr;

	assert_int_equal(
	    Esys_TR_FromTPMPublic(ctx, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr),
	    TSS2_RC_SUCCESS);
	assert_int_equal(
	    Esys_ReadPublic(ctx, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &out, NULL, NULL),
	    TSS2_RC_SUCCESS);
	*pub = *out;
	Esys_Free(out);
	Esys_TR_Close(ctx, &tr);
}

/* swtpm_setup persists the RSA EK at 0x81010001: evict it for a TPM that has no persisted EK. */
static void evict(ESYS_CONTEXT *ctx, TPM2_HANDLE h)
{
	ESYS_TR tr, none;

	assert_int_equal(
	    Esys_TR_FromTPMPublic(ctx, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr),
	    TSS2_RC_SUCCESS);
	assert_int_equal(Esys_EvictControl(ctx, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD,
					   ESYS_TR_NONE, ESYS_TR_NONE, h, &none),
			 TSS2_RC_SUCCESS);
	assert_false(has_handle(ctx, h));
}

/* Create a primary key from tmpl under hierarchy and persist it at h; *pub gets its public. */
static void persist_primary(ESYS_CONTEXT *ctx, ESYS_TR hierarchy, const TPM2B_PUBLIC *tmpl,
			    TPM2_HANDLE h, TPM2B_PUBLIC *pub)
{
	const TPM2B_SENSITIVE_CREATE sens = { 0 };
	const TPML_PCR_SELECTION no_pcrs = { 0 };
	const TPM2B_DATA no_info = { 0 };
	TPM2B_PUBLIC *out = NULL;
	ESYS_TR key, persisted;

	assert_int_equal(Esys_CreatePrimary(ctx, hierarchy, ESYS_TR_PASSWORD, ESYS_TR_NONE,
					    ESYS_TR_NONE, &sens, tmpl, &no_info, &no_pcrs, &key,
					    &out, NULL, NULL, NULL),
			 TSS2_RC_SUCCESS);
	assert_int_equal(Esys_EvictControl(ctx, ESYS_TR_RH_OWNER, key, ESYS_TR_PASSWORD,
					   ESYS_TR_NONE, ESYS_TR_NONE, h, &persisted),
			 TSS2_RC_SUCCESS);
	Esys_FlushContext(ctx, key);
	Esys_TR_Close(ctx, &persisted);
	*pub = *out;
	Esys_Free(out);
}

/* Change the endorsement hierarchy's password from old to new (both may be ""). */
static void endorsement_auth(ESYS_CONTEXT *ctx, const char *old, const char *new)
{
	TPM2B_AUTH a = { .size = (uint16_t)strlen(old) }, b = { .size = (uint16_t)strlen(new) };

	memcpy(a.buffer, old, a.size);
	memcpy(b.buffer, new, b.size);
	assert_int_equal(Esys_TR_SetAuth(ctx, ESYS_TR_RH_ENDORSEMENT, &a), TSS2_RC_SUCCESS);
	assert_int_equal(Esys_HierarchyChangeAuth(ctx, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD,
						  ESYS_TR_NONE, ESYS_TR_NONE, &b),
			 TSS2_RC_SUCCESS);
}

static bool public_equal(const TPM2B_PUBLIC *a, const TPM2B_PUBLIC *b)
{
	uint8_t na[TPMOBJ_NAME_MAX], nb[TPMOBJ_NAME_MAX];
	size_t la, lb;

	assert_int_equal(tpmobj_name(&a->publicArea, na, &la), 0);
	assert_int_equal(tpmobj_name(&b->publicArea, nb, &lb), 0);
	return la == lb && memcmp(na, nb, la) == 0;
}

/* The EK a verifier wraps credentials to: the key in the TPM's RSA EK certificate. */
static void certified_rsa_ek(struct fx *f, TPM2B_PUBLIC *ek)
{
	struct diag d = { 0 };
	X509 *cert = read_ek_cert(f);

	if (tpmobj_ek_from_cert(cert, ek, &d) < 0)
		fail_msg("tpmobj_ek_from_cert: %s", d.msg);
	X509_free(cert);
}

/* Enroll an AK under the ekalg EK (if not yet) and activate a fresh credential made for ek. */
static void enroll_and_activate(struct fx *f, uint16_t ekalg, const TPM2B_PUBLIC *ek)
{
	uint8_t name[TPMOBJ_NAME_MAX], cred[32];
	struct diag d = { 0 };
	size_t nlen;

	if (tpm_ak_ensure(f->tpm, f->state, ekalg, &f->ak, &d) < 0)
		fail_msg("tpm_ak_ensure: %s", d.msg);
	assert_int_equal(RAND_bytes(cred, sizeof(cred)), 1);
	ak_name(&f->ak, name, &nlen);
	if (activate(f, &f->ak, ek, name, nlen, cred, sizeof(cred), 0, &d) < 0)
		fail_msg("tpm_activate: %s", d.msg);
}

/* Persisted after first use, then reused as is: with the endorsement password changed, a
 * TPM2_CreatePrimary under the endorsement hierarchy (empty password) could not succeed. */
static void ek_is_persisted_at_the_profile_handle_and_reused(void **state)
{
	struct fx *f = *state;
	TPM2B_PUBLIC certified, first, second, held;
	struct diag d = { 0 };
	uint32_t persistent;
	struct raw r;

	certified_rsa_ek(f, &certified);
	evict(raw_open(f, &r), TPM_EK_HANDLE_RSA);
	persistent = count_handles(r.ctx, PERSISTENT_FIRST);
	raw_close(f, &r);

	if (tpm_ek_public(f->tpm, TPM2_ALG_RSA, &first, &d) < 0)
		fail_msg("tpm_ek_public: %s", d.msg);
	assert_true(public_equal(&first, &certified));
	raw_open(f, &r);
	assert_true(has_handle(r.ctx, TPM_EK_HANDLE_RSA));
	read_public_at(r.ctx, TPM_EK_HANDLE_RSA, &held);
	assert_true(public_equal(&held, &certified));
	assert_int_equal(count_handles(r.ctx, PERSISTENT_FIRST), persistent + 1);
	assert_int_equal(count_handles(r.ctx, TRANSIENT_FIRST), 0); /* transient EK flushed */
	endorsement_auth(r.ctx, "", "no-createprimary");
	raw_close(f, &r);

	if (tpm_ek_public(f->tpm, TPM2_ALG_RSA, &second, &d) < 0)
		fail_msg("tpm_ek_public (second use): %s", d.msg);
	assert_true(public_equal(&second, &certified));
	raw_open(f, &r);
	endorsement_auth(r.ctx, "no-createprimary", "");
	assert_int_equal(count_handles(r.ctx, PERSISTENT_FIRST), persistent + 1);
	assert_int_equal(count_handles(r.ctx, TRANSIENT_FIRST), 0);
	raw_close(f, &r);
}

/* Someone else's key at 0x81010001 is neither used nor evicted: the EK is recreated and
 * activation works. Impostors: the EK template under the owner hierarchy (everything but the
 * key matches) and an ordinary ECC storage key. */
static void impostor_at_the_ek_handle_is_left_in_place_and_not_used(void **state)
{
	TPM2B_PUBLIC impostors[2], certified, ek, held;
	struct fx *f = *state;
	struct diag d = { 0 };
	struct raw r;

	tpmobj_ek_template(TPM2_ALG_RSA, &impostors[0]);
	memset(&impostors[1], 0, sizeof(impostors[1]));
	impostors[1].publicArea = (TPMT_PUBLIC){
		.type = TPM2_ALG_ECC,
		.nameAlg = TPM2_ALG_SHA256,
		.objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT |
				    TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
				    TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH,
		.parameters.eccDetail = { .symmetric = { .algorithm = TPM2_ALG_AES,
							 .keyBits.aes = 128,
							 .mode.aes = TPM2_ALG_CFB },
					  .scheme.scheme = TPM2_ALG_NULL,
					  .curveID = TPM2_ECC_NIST_P256,
					  .kdf.scheme = TPM2_ALG_NULL },
	};
	certified_rsa_ek(f, &certified);
	for (size_t i = 0; i < 2; i++) {
		TPM2B_PUBLIC impostor;

		evict(raw_open(f, &r), TPM_EK_HANDLE_RSA);
		persist_primary(r.ctx, ESYS_TR_RH_OWNER, &impostors[i], TPM_EK_HANDLE_RSA,
				&impostor);
		raw_close(f, &r);

		if (tpm_ek_public(f->tpm, TPM2_ALG_RSA, &ek, &d) < 0)
			fail_msg("tpm_ek_public: %s", d.msg);
		assert_true(public_equal(&ek, &certified));
		enroll_and_activate(f, TPM2_ALG_RSA, &certified);

		raw_open(f, &r);
		read_public_at(r.ctx, TPM_EK_HANDLE_RSA, &held);
		assert_true(public_equal(&held, &impostor));
		assert_int_equal(count_handles(r.ctx, TRANSIENT_FIRST), 0);
		raw_close(f, &r);
	}
}

static void activation_works_across_sessions_with_the_persisted_ek(void **state)
{
	struct fx *f = *state;
	TPM2B_PUBLIC certified;
	struct raw r;

	certified_rsa_ek(f, &certified);
	evict(raw_open(f, &r), TPM_EK_HANDLE_RSA);
	raw_close(f, &r);
	/* First session: the AK is created under the EK, which gets persisted. */
	enroll_and_activate(f, TPM2_ALG_RSA, &certified);
	tpm_close(f->tpm);
	f->tpm = NULL;
	/* Second session: the recorded AK, the persisted EK. */
	fx_open(f);
	enroll_and_activate(f, TPM2_ALG_RSA, &certified);
	raw_open(f, &r);
	assert_true(has_handle(r.ctx, TPM_EK_HANDLE_RSA));
	assert_int_equal(count_handles(r.ctx, TRANSIENT_FIRST), 0);
	raw_close(f, &r);
}

/* A self-signed certificate for ek's key, as a stand-in for a manufacturer's EK certificate. */
static int cert_for(const TPM2B_PUBLIC *ek, uint8_t **der)
{
	EVP_PKEY *key = NULL, *signer = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	struct diag d = { 0 };
	int len;

	assert_non_null(signer);
	assert_non_null(x);
	assert_int_equal(tpmobj_pubkey(&ek->publicArea, &key, &d), 0);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
	*der = NULL;
	len = i2d_X509(x, der);
	assert_true(len > 0);
	X509_free(x);
	EVP_PKEY_free(key);
	EVP_PKEY_free(signer);
	return len;
}

/* Define NV index (owner auth, empty) holding data. */
static void nv_store(ESYS_CONTEXT *ctx, TPM2_HANDLE index, const uint8_t *data, uint16_t len)
{
	const TPM2B_AUTH no_auth = { 0 };
	TPM2B_NV_PUBLIC pub = {
		.nvPublic = { .nvIndex = index,
			      .nameAlg = TPM2_ALG_SHA256,
			      .attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD |
					    TPMA_NV_AUTHREAD | TPMA_NV_NO_DA,
			      .dataSize = len },
	};
	ESYS_TR nv;

	assert_int_equal(Esys_NV_DefineSpace(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
					     ESYS_TR_NONE, &no_auth, &pub, &nv),
			 TSS2_RC_SUCCESS);
	for (uint16_t off = 0; off < len; off += 512) {
		TPM2B_MAX_NV_BUFFER chunk = { .size = len - off < 512 ? len - off : 512 };

		memcpy(chunk.buffer, data + off, chunk.size);
		assert_int_equal(Esys_NV_Write(ctx, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD,
					       ESYS_TR_NONE, ESYS_TR_NONE, &chunk, off),
				 TSS2_RC_SUCCESS);
	}
	Esys_TR_Close(ctx, &nv);
}

/* The swtpm has no P-256 EK certificate: the ECC EK stays transient until one is provisioned,
 * then it is persisted at 0x81010002 and reused. */
static void ecc_ek_is_persisted_at_its_own_handle_once_certified(void **state)
{
	struct fx *f = *state;
	TPM2B_PUBLIC ek, again;
	struct diag d = { 0 };
	uint8_t *der;
	struct raw r;
	int len;

	if (tpm_ek_public(f->tpm, TPM2_ALG_ECC, &ek, &d) < 0)
		fail_msg("tpm_ek_public(ECC): %s", d.msg);
	len = cert_for(&ek, &der);
	raw_open(f, &r);
	assert_false(has_handle(r.ctx, TPM_EK_HANDLE_ECC)); /* uncertified: not persisted */
	nv_store(r.ctx, TPM_NV_EK_CERT_ECC, der, (uint16_t)len);
	raw_close(f, &r);
	OPENSSL_free(der);

	if (tpm_ek_public(f->tpm, TPM2_ALG_ECC, &again, &d) < 0)
		fail_msg("tpm_ek_public(ECC, certified): %s", d.msg);
	assert_true(public_equal(&again, &ek));
	raw_open(f, &r);
	read_public_at(r.ctx, TPM_EK_HANDLE_ECC, &again);
	assert_true(public_equal(&again, &ek));
	endorsement_auth(r.ctx, "", "no-createprimary");
	raw_close(f, &r);
	if (tpm_ek_public(f->tpm, TPM2_ALG_ECC, &again, &d) < 0)
		fail_msg("tpm_ek_public(ECC, persisted): %s", d.msg);
	assert_true(public_equal(&again, &ek));
	endorsement_auth(raw_open(f, &r), "no-createprimary", "");
	raw_close(f, &r);
	enroll_and_activate(f, TPM2_ALG_ECC, &ek);
}

/* Verify an ECDSA TPMT_SIGNATURE over data with the AK, as a verifier would: 1 if valid. */
static int ecdsa_verify(const struct tpm_ak *ak, const uint8_t *sig, size_t sig_len,
			const uint8_t *data, size_t len)
{
	TPMT_SIGNATURE s;
	ECDSA_SIG *es = ECDSA_SIG_new();
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	struct diag d = { 0 };
	EVP_PKEY *key = NULL;
	uint8_t *der = NULL;
	size_t off = 0;
	int der_len, ok;

	assert_int_equal(Tss2_MU_TPMT_SIGNATURE_Unmarshal(sig, sig_len, &off, &s), 0);
	assert_int_equal(off, sig_len);
	assert_int_equal(s.sigAlg, TPM2_ALG_ECDSA);
	assert_int_equal(s.signature.ecdsa.hash, TPM2_ALG_SHA256);
	assert_int_equal(ECDSA_SIG_set0(es,
					BN_bin2bn(s.signature.ecdsa.signatureR.buffer,
						  s.signature.ecdsa.signatureR.size, NULL),
					BN_bin2bn(s.signature.ecdsa.signatureS.buffer,
						  s.signature.ecdsa.signatureS.size, NULL)),
			 1);
	der_len = i2d_ECDSA_SIG(es, &der);
	assert_true(der_len > 0);
	assert_int_equal(tpmobj_pubkey(&ak->pub.publicArea, &key, &d), 0);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key), 1);
	ok = EVP_DigestVerify(md, der, (size_t)der_len, data, len);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	return ok;
}

static void quote_over_pcrs_0_to_9_verifies_with_openssl(void **state)
{
	static const uint8_t want_select[3] = { 0xff, 0x03, 0x00 };
	struct fx *f = *state;
	uint8_t qd[32], pcrs[24][32], digest[32], *attest = NULL, *sig = NULL;
	size_t alen = 0, slen = 0, off = 0;
	struct diag d = { 0 };
	TPMS_ATTEST a;

	assert_int_equal(RAND_bytes(qd, sizeof(qd)), 1);
	if (tpm_quote(f->tpm, &f->ak, qd, sizeof(qd), PCRS_0_TO_9, &attest, &alen, &sig, &slen,
		      pcrs, &d) < 0)
		fail_msg("tpm_quote: %s", d.msg);

	assert_int_equal(Tss2_MU_TPMS_ATTEST_Unmarshal(attest, alen, &off, &a), 0);
	assert_int_equal(off, alen);
	assert_int_equal(a.magic, TPM2_GENERATED_VALUE);
	assert_int_equal(a.type, TPM2_ST_ATTEST_QUOTE);
	assert_int_equal(a.extraData.size, sizeof(qd));
	assert_memory_equal(a.extraData.buffer, qd, sizeof(qd));
	assert_int_equal(a.attested.quote.pcrSelect.count, 1);
	assert_int_equal(a.attested.quote.pcrSelect.pcrSelections[0].hash, TPM2_ALG_SHA256);
	assert_int_equal(a.attested.quote.pcrSelect.pcrSelections[0].sizeofSelect, 3);
	assert_memory_equal(a.attested.quote.pcrSelect.pcrSelections[0].pcrSelect, want_select, 3);
	/* PCRs 0-9 are contiguous in pcrs[][]: their concatenation is what the TPM hashed. */
	SHA256(&pcrs[0][0], 10 * 32, digest);
	assert_int_equal(a.attested.quote.pcrDigest.size, 32);
	assert_memory_equal(a.attested.quote.pcrDigest.buffer, digest, 32);
	assert_int_equal(ecdsa_verify(&f->ak, sig, slen, attest, alen), 1);
	/* One flipped bit of the attested bytes must break the signature. */
	attest[alen - 1] ^= 1;
	assert_int_not_equal(ecdsa_verify(&f->ak, sig, slen, attest, alen), 1);
	free(attest);
	free(sig);
}

/* A node's VM can be reset hard any number of times (the cloud's stop button, a crash): the TPM
 * sees each as a power loss without TPM2_Shutdown. Quoting must survive more of them than the
 * TPM's dictionary-attack limit (swtpm: 3 tries, 1000 s recovery): the AK is noDA. */
static void quotes_survive_power_losses_beyond_the_lockout_limit(void **state)
{
	struct fx *f = *state;
	uint8_t qd[32] = { 1 }, pcrs[24][32], *attest = NULL, *sig = NULL;
	size_t alen, slen;
	struct diag d = { 0 };

	for (int loss = 0; loss <= 6; loss++) {
		if (tpm_ak_ensure(f->tpm, f->state, TPM2_ALG_RSA, &f->ak, &d) < 0)
			fail_msg("tpm_ak_ensure after %d power losses: %s", loss, d.msg);
		if (tpm_quote(f->tpm, &f->ak, qd, sizeof(qd), PCRS_0_TO_9, &attest, &alen, &sig,
			      &slen, pcrs, &d) < 0)
			fail_msg("quote after %d power losses: %s", loss, d.msg);
		free(attest);
		free(sig);
		tpm_close(f->tpm);
		f->tpm = NULL;
		assert_int_equal(swtpm_power_loss(&f->sw), 0);
		fx_open(f);
	}
}

/* A TPM kept open remembers the PCR values of its last quote; when a PCR moved since (here
 * through another connection), the quote must still come with the values it signed. */
static void quote_after_a_pcr_moved_elsewhere_carries_the_values_it_signed(void **state)
{
	struct fx *f = *state;
	uint8_t qd[32] = { 7 }, ext[32] = { 1 }, pcrs[24][32], now[24][32], digest[32];
	uint8_t *attest = NULL, *sig = NULL;
	size_t alen = 0, slen = 0, off = 0;
	struct tpm *other = NULL;
	struct diag d = { 0 };
	TPMS_ATTEST a;

	assert_int_equal(tpm_quote(f->tpm, &f->ak, qd, sizeof(qd), PCRS_0_TO_9, &attest, &alen,
				   &sig, &slen, pcrs, &d),
			 0);
	free(attest);
	free(sig);
	if (tpm_open(f->sw.tcti, &other, &d) < 0)
		fail_msg("second connection: %s", d.msg);
	assert_int_equal(tpm_pcr_extend(other, 9, ext, &d), 0);
	tpm_close(other);

	if (tpm_quote(f->tpm, &f->ak, qd, sizeof(qd), PCRS_0_TO_9, &attest, &alen, &sig, &slen,
		      pcrs, &d) < 0)
		fail_msg("tpm_quote after the extend: %s", d.msg);
	assert_int_equal(tpm_pcr_read(f->tpm, PCRS_0_TO_9, now, NULL, &d), 0);
	assert_memory_equal(pcrs[9], now[9], 32);
	assert_int_equal(Tss2_MU_TPMS_ATTEST_Unmarshal(attest, alen, &off, &a), 0);
	SHA256(&pcrs[0][0], 10 * 32, digest);
	assert_memory_equal(a.attested.quote.pcrDigest.buffer, digest, 32);
	free(attest);
	free(sig);
}

static void pcr_read_returns_all_24_pcrs(void **state)
{
	static const uint8_t ones[32] = { [0 ... 31] = 0xff };
	struct fx *f = *state;
	uint8_t all[24][32], one[24][32];
	struct diag d = { 0 };
	uint32_t counter;

	memset(all, 0xaa, sizeof(all));
	if (tpm_pcr_read(f->tpm, ALL_PCRS, all, &counter, &d) < 0)
		fail_msg("tpm_pcr_read(all): %s", d.msg);
	for (uint32_t n = 0; n < 24; n++) {
		assert_int_equal(tpm_pcr_read(f->tpm, 1u << n, one, NULL, &d), 0);
		assert_memory_equal(all[n], one[n], 32);
	}
	/* PC Client: PCRs 17-22 (DRTM) start as all ones, so the read really reached them. */
	assert_memory_equal(all[17], ones, 32);
	assert_memory_equal(all[22], ones, 32);
}

static void pcr_extend_changes_exactly_that_pcr(void **state)
{
	struct fx *f = *state;
	uint8_t before[24][32], after[24][32], digest[32], cat[64], want[32];
	struct diag d = { 0 };

	assert_int_equal(RAND_bytes(digest, sizeof(digest)), 1);
	assert_int_equal(tpm_pcr_read(f->tpm, ALL_PCRS, before, NULL, &d), 0);
	if (tpm_pcr_extend(f->tpm, 12, digest, &d) < 0)
		fail_msg("tpm_pcr_extend: %s", d.msg);
	assert_int_equal(tpm_pcr_read(f->tpm, ALL_PCRS, after, NULL, &d), 0);
	memcpy(cat, before[12], 32);
	memcpy(cat + 32, digest, 32);
	SHA256(cat, sizeof(cat), want);
	for (int n = 0; n < 24; n++)
		if (n == 12)
			assert_memory_equal(after[n], want, 32);
		else
			assert_memory_equal(after[n], before[n], 32);
	assert_int_equal(tpm_pcr_extend(f->tpm, 24, digest, &d), -EINVAL);
}

static void quote_refuses_qualifying_data_over_64_bytes(void **state)
{
	struct fx *f = *state;
	uint8_t qd[65] = { 0 }, pcrs[24][32], *attest = NULL, *sig = NULL;
	size_t alen, slen;
	struct diag d = { 0 };

	assert_int_equal(tpm_quote(f->tpm, &f->ak, qd, sizeof(qd), PCRS_0_TO_9, &attest, &alen,
				   &sig, &slen, pcrs, &d),
			 -EINVAL);
	assert_non_null(strstr(d.msg, "64"));
	assert_null(attest);
	assert_null(sig);
}

static void open_on_a_missing_socket_gives_a_clear_error(void **state)
{
	const char *tcti = "swtpm:path=/nonexistent/conclave-test.sock";
	struct tpm *t = NULL;
	struct diag d = { 0 };

	assert_true(tpm_open(tcti, &t, &d) < 0);
	assert_null(t);
	assert_non_null(strstr(d.msg, "/nonexistent/conclave-test.sock"));
	assert_non_null(strstr(d.msg, "cannot reach the TPM"));
}

int main(void)
{
	const struct CMUnitTest shared[] = {
		cmocka_unit_test(ek_cert_from_nv_chains_to_the_swtpm_ca),
		cmocka_unit_test(ek_from_cert_equals_the_tpm_rsa_ek),
		cmocka_unit_test(ak_passes_the_ak_check),
		cmocka_unit_test(ak_handle_held_by_an_unrecorded_key_is_not_taken_over),
		cmocka_unit_test(recorded_ak_that_differs_from_the_tpm_key_is_refused),
		cmocka_unit_test(tampered_ak_template_fails_naming_the_attribute),
		cmocka_unit_test(ak_check_refuses_a_weak_scheme),
		cmocka_unit_test(pubkey_refuses_a_point_off_the_curve),
		cmocka_unit_test(rsa_ek_activation_returns_the_credential),
		cmocka_unit_test(activation_for_a_wrong_ak_name_is_refused_by_the_tpm),
		cmocka_unit_test(activation_blob_with_a_flipped_byte_is_refused),
		cmocka_unit_test(quote_over_pcrs_0_to_9_verifies_with_openssl),
		cmocka_unit_test(quote_after_a_pcr_moved_elsewhere_carries_the_values_it_signed),
		cmocka_unit_test(pcr_read_returns_all_24_pcrs),
		cmocka_unit_test(pcr_extend_changes_exactly_that_pcr),
		cmocka_unit_test(quote_refuses_qualifying_data_over_64_bytes),
	};
	const struct CMUnitTest own_tpm[] = {
		cmocka_unit_test_setup_teardown(ak_is_created_then_reloaded_across_a_tpm_restart,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(ecc_ek_activation_returns_the_credential, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(ek_is_persisted_at_the_profile_handle_and_reused,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(
		    impostor_at_the_ek_handle_is_left_in_place_and_not_used, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(
		    activation_works_across_sessions_with_the_persisted_ek, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(
		    ecc_ek_is_persisted_at_its_own_handle_once_certified, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(
		    quotes_survive_power_losses_beyond_the_lockout_limit, fx_setup, fx_teardown),
		cmocka_unit_test(open_on_a_missing_socket_gives_a_clear_error),
	};
	int failed = 0;

	/* Refusals are expected here; tpm2-tss would log each one to stderr. */
	setenv("TSS2_LOG", "all+none", 0);
	failed +=
	    cmocka_run_group_tests_name("tpm (shared swtpm)", shared, group_setup, fx_teardown);
	failed += cmocka_run_group_tests_name("tpm (own swtpm)", own_tpm, NULL, NULL);
	return failed ? 1 : 0;
}
