// SPDX-License-Identifier: Apache-2.0
/* The TPM modules against a real swtpm: EK certificate, AK lifecycle, credential activation
 * (software MakeCredential, RSA and ECC EKs), quotes checked with OpenSSL alone, PCRs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
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
	assert_mode(f->state, "ak.pub", 0644);
	assert_mode(f->state, "ak.handle", 0644);
	assert_mode(f->state, "ek.alg", 0644);
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
		cmocka_unit_test(pcr_read_returns_all_24_pcrs),
		cmocka_unit_test(pcr_extend_changes_exactly_that_pcr),
		cmocka_unit_test(quote_refuses_qualifying_data_over_64_bytes),
	};
	const struct CMUnitTest own_tpm[] = {
		cmocka_unit_test_setup_teardown(ak_is_created_then_reloaded_across_a_tpm_restart,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(ecc_ek_activation_returns_the_credential, fx_setup,
						fx_teardown),
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
