// SPDX-License-Identifier: Apache-2.0
/* EK certificates: trust anchors (the TPM manufacturers' roots) and chain verification. */
#include <errno.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include "conclave/verify.h"

int ca_store_load(const char *path, X509_STORE **out, struct diag *d)
{
	X509_STORE *store = X509_STORE_new();
	BIO *bio = BIO_new_file(path, "r");
	unsigned int n = 0;
	X509 *cert;

	if (!store || !bio) {
		diag_set(d, "cannot read CA bundle %s", path);
		goto fail;
	}
	while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		int ok = X509_STORE_add_cert(store, cert);

		X509_free(cert);
		if (!ok) {
			diag_set(d, "CA bundle %s: cannot add certificate %u", path, n + 1);
			goto fail;
		}
		n++;
	}
	ERR_clear_error(); /* the loop ends on "no start line" */
	if (!n) {
		diag_set(d, "CA bundle %s holds no PEM certificate", path);
		goto fail;
	}
	BIO_free(bio);
	*out = store;
	return 0;
fail:
	BIO_free(bio);
	X509_STORE_free(store);
	return -EINVAL;
}

static X509 *parse_der(const struct blob *b)
{
	const unsigned char *p = b->p;
	X509 *x = d2i_X509(NULL, &p, (long)b->len);

	/* Trailing bytes after the certificate are not a certificate. */
	if (x && p != b->p + b->len) {
		X509_free(x);
		return NULL;
	}
	return x;
}

int ekcert_verify(X509_STORE *store, const struct blob *cert, const struct blob *chain,
		  size_t n_chain, X509 **out, struct diag *d)
{
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509 *ek = parse_der(cert);
	int ret = -EPERM;

	if (!untrusted || !ctx) {
		ret = -ENOMEM;
		goto out;
	}
	if (!ek) {
		diag_set(d, "EK certificate is not a DER X.509 certificate");
		ret = -EBADMSG;
		goto out;
	}
	for (size_t i = 0; i < n_chain; i++) {
		X509 *x = parse_der(&chain[i]);

		if (!x || !sk_X509_push(untrusted, x)) {
			X509_free(x);
			diag_set(d, "EK chain certificate %zu is not a DER X.509 certificate",
				 i + 1);
			ret = -EBADMSG;
			goto out;
		}
	}
	if (X509_STORE_CTX_init(ctx, store, ek, untrusted) != 1) {
		ret = -ENOMEM;
		goto out;
	}
	if (X509_verify_cert(ctx) != 1) {
		int err = X509_STORE_CTX_get_error(ctx);

		diag_set(d, "EK certificate does not chain to a configured root: %s (depth %d)",
			 X509_verify_cert_error_string(err), X509_STORE_CTX_get_error_depth(ctx));
		goto out;
	}
	ret = 0;
	*out = ek;
	ek = NULL;
out:
	ERR_clear_error();
	X509_free(ek);
	X509_STORE_CTX_free(ctx);
	sk_X509_pop_free(untrusted, X509_free);
	return ret;
}
