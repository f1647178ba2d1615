// SPDX-License-Identifier: Apache-2.0
/* The cluster CA: an Ed25519 key derived from the KMS, its deterministic self-signed certificate,
 * node certificates for WireGuard keys, and the signed member list ("CMBL") codec. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conclave/bytes.h"
#include "conclave/clusterca.h"
#include "conclave/util.h"

#define CA_KEY_LEN	    32 /* Ed25519 private and public keys */
#define WG_KEY_LEN	    32 /* X25519 public key */
#define CA_NOT_BEFORE	    "20250101000000Z"
#define CA_NOT_AFTER	    "99991231235959Z" /* RFC 5280 4.1.2.5: no well-defined expiration */
#define CA_CN_PREFIX	    "conclave cluster "
#define CA_CN_ID_HEX	    16
#define NODE_CN_PREFIX	    "node-"
#define NODE_SERIAL_LEN	    16
#define NODE_BACKDATE	    3600 /* seconds: tolerate clocks a little behind the CA's */
#define NODE_MAX_VALID_DAYS 36500

struct cluster_ca {
	EVP_PKEY *key;
	X509 *cert; /* issuer name and key id of node certificates */
	uint8_t id[CLUSTER_ID_LEN];
	uint8_t *der; /* the certificate */
	size_t der_len;
	uint8_t skid[SHA_DIGEST_LENGTH];
};

/* --- certificates -------------------------------------------------------------------------- */

static X509 *parse_der(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x;

	if (!der || len == 0 || len > CLUSTER_CERT_MAX)
		return NULL;
	x = d2i_X509(NULL, &p, (long)len);
	/* Trailing bytes after the certificate are not part of any certificate. */
	if (x && p != der + len) {
		X509_free(x);
		x = NULL;
	}
	/* Extensions OpenSSL could not decode make every later check meaningless. */
	if (x && (X509_get_extension_flags(x) & EXFLAG_INVALID)) {
		X509_free(x);
		x = NULL;
	}
	ERR_clear_error();
	return x;
}

static int sha256(const uint8_t *in, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	return EVP_Digest(in, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -EIO;
}

/* The raw 32-byte public key of pkey, which must be of type nid. */
static int raw_pubkey(EVP_PKEY *pkey, int nid, uint8_t out[32])
{
	size_t n = 32;

	if (!pkey || EVP_PKEY_get_id(pkey) != nid ||
	    EVP_PKEY_get_raw_public_key(pkey, out, &n) != 1 || n != 32)
		return -EBADMSG;
	return 0;
}

static int add_ext(X509 *x, int nid, void *value, int critical)
{
	return X509_add1_ext_i2d(x, nid, value, critical, X509V3_ADD_APPEND) == 1 ? 0 : -ENOMEM;
}

static int add_basic_constraints(X509 *x, bool ca)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	int ret = -ENOMEM;

	if (!bc)
		return -ENOMEM;
	bc->ca = ca ? 0xff : 0;
	/* A CA that signs only end-entity (node) certificates: path length 0. */
	if (ca && !(bc->pathlen = ASN1_INTEGER_new()))
		goto out;
	if (ca && ASN1_INTEGER_set(bc->pathlen, 0) != 1)
		goto out;
	ret = add_ext(x, NID_basic_constraints, bc, 1);
out:
	BASIC_CONSTRAINTS_free(bc);
	return ret;
}

static int add_key_usage(X509 *x, const int *bits, size_t n)
{
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	int ret = -ENOMEM;

	if (!ku)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (ASN1_BIT_STRING_set_bit(ku, bits[i], 1) != 1)
			goto out;
	ret = add_ext(x, NID_key_usage, ku, 1);
out:
	ASN1_BIT_STRING_free(ku);
	return ret;
}

static int add_octets_ext(X509 *x, int nid, const uint8_t *p, size_t n)
{
	ASN1_OCTET_STRING *o = ASN1_OCTET_STRING_new();
	int ret = -ENOMEM;

	if (o && ASN1_OCTET_STRING_set(o, p, (int)n) == 1)
		ret = add_ext(x, nid, o, 0);
	ASN1_OCTET_STRING_free(o);
	return ret;
}

static int add_akid(X509 *x, const uint8_t *keyid, size_t n)
{
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	int ret = -ENOMEM;

	if (!akid)
		return -ENOMEM;
	akid->keyid = ASN1_OCTET_STRING_new();
	if (akid->keyid && ASN1_OCTET_STRING_set(akid->keyid, keyid, (int)n) == 1)
		ret = add_ext(x, NID_authority_key_identifier, akid, 0);
	AUTHORITY_KEYID_free(akid);
	return ret;
}

/* Append an iPAddress general name for text (an address of family af) to names. */
static int push_ip(GENERAL_NAMES *names, int af, const char *text)
{
	uint8_t addr[16];
	GENERAL_NAME *gn;
	ASN1_OCTET_STRING *o;

	if (inet_pton(af, text, addr) != 1)
		return -EINVAL;
	gn = GENERAL_NAME_new();
	o = ASN1_OCTET_STRING_new();
	if (!gn || !o || ASN1_OCTET_STRING_set(o, addr, af == AF_INET ? 4 : 16) != 1) {
		GENERAL_NAME_free(gn);
		ASN1_OCTET_STRING_free(o);
		return -ENOMEM;
	}
	GENERAL_NAME_set0_value(gn, GEN_IPADD, o);
	if (!sk_GENERAL_NAME_push(names, gn)) {
		GENERAL_NAME_free(gn);
		return -ENOMEM;
	}
	return 0;
}

static int add_san_ips(X509 *x, const char *v4, const char *v6, struct diag *d)
{
	GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
	int ret = 0;

	if (!names)
		return -ENOMEM;
	if (v4[0] && (ret = push_ip(names, AF_INET, v4)) == -EINVAL)
		diag_set(d, "cluster CA: overlay IPv4 address '%.64s' is not an IPv4 address", v4);
	if (ret == 0 && v6[0] && (ret = push_ip(names, AF_INET6, v6)) == -EINVAL)
		diag_set(d, "cluster CA: overlay IPv6 address '%.64s' is not an IPv6 address", v6);
	if (ret == 0 && sk_GENERAL_NAME_num(names) > 0)
		ret = add_ext(x, NID_subject_alt_name, names, 0);
	GENERAL_NAMES_free(names);
	return ret;
}

static int set_cn(X509_NAME *name, const char *cn)
{
	return X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
					  (const unsigned char *)cn, -1, -1, 0) == 1
		   ? 0
		   : -ENOMEM;
}

/* Sign x with the CA key (Ed25519: no separate digest); its DER into a malloc'ed *der. */
static int sign_and_encode(X509 *x, EVP_PKEY *key, uint8_t **der, size_t *len)
{
	unsigned char *buf, *p;
	int n;

	if (X509_sign(x, key, NULL) <= 0)
		return -EIO;
	n = i2d_X509(x, NULL);
	if (n <= 0 || n > CLUSTER_CERT_MAX)
		return -EIO;
	buf = malloc((size_t)n);
	if (!buf)
		return -ENOMEM;
	p = buf;
	if (i2d_X509(x, &p) != n) {
		free(buf);
		return -EIO;
	}
	*der = buf;
	*len = (size_t)n;
	return 0;
}

/* The self-signed CA certificate: every field fixed, so the same key gives the same bytes. */
static int make_ca_cert(struct cluster_ca *ca, struct diag *d)
{
	static const int ku[] = { 5 /* keyCertSign */, 6 /* cRLSign */ };
	char cn[sizeof(CA_CN_PREFIX) + 2 * CLUSTER_ID_LEN], hex[2 * CLUSTER_ID_LEN + 1];
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	unsigned int skid_len = 0;
	int ret = -ENOMEM;

	if (!x || !name)
		goto out;
	hex_encode(ca->id, CLUSTER_ID_LEN, hex);
	snprintf(cn, sizeof(cn), CA_CN_PREFIX "%.*s", CA_CN_ID_HEX, hex);
	if (X509_set_version(x, X509_VERSION_3) != 1 ||
	    ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 || set_cn(name, cn) < 0 ||
	    X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
	    ASN1_TIME_set_string_X509(X509_getm_notBefore(x), CA_NOT_BEFORE) != 1 ||
	    ASN1_TIME_set_string_X509(X509_getm_notAfter(x), CA_NOT_AFTER) != 1 ||
	    X509_set_pubkey(x, ca->key) != 1)
		goto out;
	/* RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
	if (X509_pubkey_digest(x, EVP_sha1(), ca->skid, &skid_len) != 1 ||
	    skid_len != sizeof(ca->skid))
		goto out;
	if ((ret = add_basic_constraints(x, true)) < 0 ||
	    (ret = add_key_usage(x, ku, ARRAY_SIZE(ku))) < 0 ||
	    (ret = add_octets_ext(x, NID_subject_key_identifier, ca->skid, skid_len)) < 0)
		goto out;
	ret = sign_and_encode(x, ca->key, &ca->der, &ca->der_len);
	if (ret == 0) {
		ca->cert = x;
		x = NULL;
	}
out:
	if (ret < 0)
		diag_set(d, "cluster CA: cannot build the CA certificate in OpenSSL");
	X509_NAME_free(name);
	X509_free(x);
	ERR_clear_error();
	return ret;
}

int cluster_ca_derive(const struct kms *k, struct cluster_ca **out, struct diag *d)
{
	_cleanup_secret_ struct secret *seed = NULL;
	uint8_t pub[CA_KEY_LEN];
	struct cluster_ca *ca;
	int ret;

	ret = kms_derive(k, "ca", "cluster", CA_KEY_LEN, &seed, d);
	if (ret < 0) {
		diag_prefix(d, "cluster CA");
		return ret;
	}
	ca = calloc(1, sizeof(*ca));
	if (!ca) {
		diag_set(d, "cluster CA: out of memory");
		return -ENOMEM;
	}
	/* OpenSSL keeps its own copy of the key and clears it when the key is freed. */
	ca->key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed->data, seed->len);
	if (!ca->key || raw_pubkey(ca->key, EVP_PKEY_ED25519, pub) < 0 ||
	    sha256(pub, sizeof(pub), ca->id) < 0) {
		diag_set(d, "cluster CA: cannot create the Ed25519 key in OpenSSL");
		cluster_ca_free(ca);
		ERR_clear_error();
		return -EIO;
	}
	ret = make_ca_cert(ca, d);
	if (ret < 0) {
		cluster_ca_free(ca);
		return ret;
	}
	*out = ca;
	return 0;
}

void cluster_ca_free(struct cluster_ca *ca)
{
	if (!ca)
		return;
	EVP_PKEY_free(ca->key);
	X509_free(ca->cert);
	free(ca->der);
	free(ca);
}

void cluster_ca_id(const struct cluster_ca *ca, uint8_t id[CLUSTER_ID_LEN])
{
	memcpy(id, ca->id, CLUSTER_ID_LEN);
}

void cluster_ca_cert(const struct cluster_ca *ca, const uint8_t **der, size_t *len)
{
	*der = ca->der;
	*len = ca->der_len;
}

/* x's subject public key: X25519 key bits as RFC 8410 encodes them (no parameters). Set directly:
 * X509_set_pubkey would round-trip an EVP_PKEY through OpenSSL's encoder and decoder. */
static int set_x25519_pubkey(X509 *x, const uint8_t key[WG_KEY_LEN])
{
	unsigned char *bits = OPENSSL_memdup(key, WG_KEY_LEN);

	if (!bits || X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_nid2obj(NID_X25519),
					    V_ASN1_UNDEF, NULL, bits, WG_KEY_LEN) != 1) {
		OPENSSL_free(bits);
		return -ENOMEM;
	}
	return 0;
}

/* A random positive serial of exactly NODE_SERIAL_LEN bytes (RFC 5280: at most 20 octets). */
static int set_random_serial(X509 *x)
{
	uint8_t b[NODE_SERIAL_LEN];
	BIGNUM *bn;
	int ret = -EIO;

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	b[0] = (uint8_t)((b[0] & 0x7f) | 0x40); /* positive, no leading zero octet */
	bn = BN_bin2bn(b, sizeof(b), NULL);
	if (bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		ret = 0;
	BN_free(bn);
	return ret;
}

int cluster_ca_issue_node(const struct cluster_ca *ca, int64_t node_id, const uint8_t wg_pubkey[32],
			  const char *overlay_v4, const char *overlay_v6, unsigned int valid_days,
			  uint8_t **der, size_t *len, struct diag *d)
{
	static const int ku[] = { 4 /* keyAgreement */ };
	char cn[sizeof(NODE_CN_PREFIX) + 20];
	time_t now = time(NULL);
	X509_NAME *name = NULL;
	X509 *x = NULL;
	bool said = false; /* d already names the failure */
	int ret;

	if (!ca || node_id <= 0 || !wg_pubkey || !overlay_v4 || !overlay_v6 || !der || !len) {
		diag_set(d, "cluster CA: a node certificate needs a node id > 0, a WireGuard key "
			    "and overlay addresses (or \"\")");
		return -EINVAL;
	}
	if (valid_days > NODE_MAX_VALID_DAYS) {
		diag_set(d, "cluster CA: node certificate validity of %u days exceeds %d days",
			 valid_days, NODE_MAX_VALID_DAYS);
		return -EINVAL;
	}
	x = X509_new();
	name = X509_NAME_new();
	ret = -ENOMEM;
	if (!x || !name)
		goto fail;
	snprintf(cn, sizeof(cn), NODE_CN_PREFIX "%lld", (long long)node_id);
	if (X509_set_version(x, X509_VERSION_3) != 1 || set_cn(name, cn) < 0 ||
	    X509_set_subject_name(x, name) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1 ||
	    !X509_time_adj_ex(X509_getm_notBefore(x), 0, -NODE_BACKDATE, &now) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), (int)valid_days, 0, &now) ||
	    set_x25519_pubkey(x, wg_pubkey) < 0)
		goto fail;
	if ((ret = set_random_serial(x)) < 0) {
		diag_set(d, "cluster CA: the CSPRNG failed to produce a serial number");
		said = true;
		goto fail;
	}
	ret = add_san_ips(x, overlay_v4, overlay_v6, d);
	said = ret == -EINVAL;
	if (ret < 0 || (ret = add_basic_constraints(x, false)) < 0 ||
	    (ret = add_key_usage(x, ku, ARRAY_SIZE(ku))) < 0 ||
	    (ret = add_akid(x, ca->skid, sizeof(ca->skid))) < 0 ||
	    (ret = sign_and_encode(x, ca->key, der, len)) < 0)
		goto fail;
	ret = 0;
fail:
	if (ret < 0 && !said)
		diag_set(d, "cluster CA: cannot build the certificate of node %lld in OpenSSL",
			 (long long)node_id);
	X509_NAME_free(name);
	X509_free(x);
	ERR_clear_error();
	return ret;
}

int cluster_ca_sign(const struct cluster_ca *ca, const uint8_t *msg, size_t len,
		    uint8_t sig[CLUSTER_SIG_LEN], struct diag *d)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t n = CLUSTER_SIG_LEN;
	int ret = -EIO;

	if (c && EVP_DigestSignInit(c, NULL, NULL, NULL, ca->key) == 1 &&
	    EVP_DigestSign(c, sig, &n, msg, len) == 1 && n == CLUSTER_SIG_LEN)
		ret = 0;
	else
		diag_set(d, "cluster CA: Ed25519 signing failed in OpenSSL");
	EVP_MD_CTX_free(c);
	ERR_clear_error();
	return ret;
}

/* Ed25519 verification of sig over msg with key: 0, or -EPERM for a bad signature. */
static int ed25519_verify(EVP_PKEY *key, const uint8_t *msg, size_t len,
			  const uint8_t sig[CLUSTER_SIG_LEN])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ret = -ENOMEM;

	if (c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, key) == 1)
		ret = EVP_DigestVerify(c, sig, CLUSTER_SIG_LEN, msg, len) == 1 ? 0 : -EPERM;
	EVP_MD_CTX_free(c);
	ERR_clear_error();
	return ret;
}

/* Whether x is signed with Ed25519 by key (signature algorithm fields agree, signature valid). */
static bool signed_by(X509 *x, EVP_PKEY *key)
{
	bool ok = X509_get_signature_nid(x) == NID_ED25519 && X509_verify(x, key) == 1;

	ERR_clear_error();
	return ok;
}

/* The public key of a CA certificate, which must be Ed25519. */
static EVP_PKEY *ca_pubkey(X509 *x)
{
	EVP_PKEY *key = X509_get0_pubkey(x);

	ERR_clear_error();
	return key && EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 ? key : NULL;
}

int cluster_ca_check(const uint8_t *der, size_t len, const uint8_t id[CLUSTER_ID_LEN],
		     struct diag *d)
{
	X509 *x = parse_der(der, len);
	uint8_t pub[CA_KEY_LEN], got[CLUSTER_ID_LEN];
	EVP_PKEY *key;
	int ret = -EPERM;

	if (!x) {
		diag_set(d,
			 "cluster CA certificate: not a DER X.509 certificate of at most %d "
			 "bytes (or trailing bytes after it)",
			 CLUSTER_CERT_MAX);
		return -EBADMSG;
	}
	key = ca_pubkey(x);
	if (!key || raw_pubkey(key, EVP_PKEY_ED25519, pub) < 0) {
		diag_set(d, "cluster CA certificate: its key is not Ed25519");
		goto out;
	}
	if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) != 0 ||
	    !signed_by(x, key)) {
		diag_set(d, "cluster CA certificate: not validly self-signed with Ed25519");
		goto out;
	}
	if (X509_check_ca(x) != 1 || !(X509_get_extension_flags(x) & EXFLAG_KUSAGE) ||
	    !(X509_get_key_usage(x) & KU_KEY_CERT_SIGN)) {
		diag_set(d, "cluster CA certificate: not a CA (needs basicConstraints CA:TRUE "
			    "and keyUsage keyCertSign)");
		goto out;
	}
	if (sha256(pub, sizeof(pub), got) < 0) {
		diag_set(d, "cluster CA certificate: SHA-256 failed in OpenSSL");
		ret = -EIO;
		goto out;
	}
	if (CRYPTO_memcmp(got, id, CLUSTER_ID_LEN) != 0) {
		diag_set(d, "cluster CA certificate: its key does not match the attested cluster "
			    "identity");
		goto out;
	}
	ret = 0;
out:
	X509_free(x);
	ERR_clear_error();
	return ret;
}

/* The node id of a subject that is exactly CN "node-<decimal id>", id 1..INT64_MAX. */
static int node_id_of(X509 *x, int64_t *out)
{
	const X509_NAME *name = X509_get_subject_name(x);
	const ASN1_STRING *s;
	const unsigned char *p;
	size_t plen = sizeof(NODE_CN_PREFIX) - 1;
	int n, i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	uint64_t v = 0;

	if (X509_NAME_entry_count(name) != 1 || i < 0)
		return -EBADMSG;
	s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	p = ASN1_STRING_get0_data(s);
	n = ASN1_STRING_length(s);
	if (!p || n <= (int)plen || n > (int)plen + 19 || memcmp(p, NODE_CN_PREFIX, plen) != 0 ||
	    p[plen] == '0')
		return -EBADMSG;
	for (size_t k = plen; k < (size_t)n; k++) {
		if (p[k] < '0' || p[k] > '9')
			return -EBADMSG;
		v = v * 10 + (uint64_t)(p[k] - '0'); /* at most 19 digits: no overflow */
	}
	if (v == 0 || v > INT64_MAX)
		return -EBADMSG;
	*out = (int64_t)v;
	return 0;
}

int cluster_node_cert_check(const uint8_t *ca_der, size_t ca_len, const uint8_t *der, size_t len,
			    const uint8_t wg_pubkey[32], int64_t *node_id, struct diag *d)
{
	X509 *ca = parse_der(ca_der, ca_len), *x = parse_der(der, len);
	uint8_t pub[WG_KEY_LEN];
	EVP_PKEY *ca_key;
	int64_t id;
	int ret = -EBADMSG;

	if (!ca || !(ca_key = ca_pubkey(ca))) {
		diag_set(d, "node certificate: the cluster CA certificate is not a DER X.509 "
			    "certificate with an Ed25519 key");
		goto out;
	}
	if (!x) {
		diag_set(d,
			 "node certificate: not a DER X.509 certificate of at most %d bytes "
			 "(or trailing bytes after it)",
			 CLUSTER_CERT_MAX);
		goto out;
	}
	ret = -EPERM;
	if (X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca)) != 0) {
		diag_set(d, "node certificate: issued by someone else than this cluster's CA");
		goto out;
	}
	if (!signed_by(x, ca_key)) {
		diag_set(d, "node certificate: its signature is not the cluster CA's");
		goto out;
	}
	if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0 ||
	    X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
		diag_set(d, "node certificate: expired or not yet valid (check the clock, or "
			    "have the node join again)");
		ret = -EKEYEXPIRED;
		goto out;
	}
	if (X509_check_ca(x) != 0) {
		diag_set(d, "node certificate: is a CA certificate, not a node's");
		goto out;
	}
	if (raw_pubkey(X509_get0_pubkey(x), EVP_PKEY_X25519, pub) < 0) {
		diag_set(d, "node certificate: does not certify an X25519 (WireGuard) key");
		goto out;
	}
	if (CRYPTO_memcmp(pub, wg_pubkey, WG_KEY_LEN) != 0) {
		diag_set(d, "node certificate: certifies another WireGuard key than the peer's");
		goto out;
	}
	if (node_id_of(x, &id) < 0) {
		diag_set(d, "node certificate: its subject is not exactly CN \"node-<id>\"");
		goto out;
	}
	*node_id = id;
	ret = 0;
out:
	X509_free(ca);
	X509_free(x);
	ERR_clear_error();
	return ret;
}

int cluster_ca_verify_sig(const uint8_t *ca_der, size_t ca_len, const uint8_t *msg, size_t len,
			  const uint8_t sig[CLUSTER_SIG_LEN], struct diag *d)
{
	X509 *ca = parse_der(ca_der, ca_len);
	EVP_PKEY *key = ca ? ca_pubkey(ca) : NULL;
	int ret;

	if (!key) {
		diag_set(d, "cluster CA certificate: not a DER X.509 certificate with an Ed25519 "
			    "key");
		X509_free(ca);
		return -EBADMSG;
	}
	ret = ed25519_verify(key, msg, len, sig);
	if (ret == -EPERM)
		diag_set(d, "signature is not the cluster CA's (forged or altered)");
	else if (ret < 0)
		diag_set(d, "cluster CA: Ed25519 verification failed in OpenSSL");
	X509_free(ca);
	return ret;
}

/* --- member list --------------------------------------------------------------------------- */

#define ML_FLAG_ACTIVE	  1u
#define ML_FLAG_POLICY_OK 2u
/* The smallest encoded entry: id, flags, EK id, key, two times and four empty strings. */
#define ML_ENTRY_MIN_SIZE (8 + 1 + MEMBERSHIP_EK_ID_LEN + MEMBERSHIP_WG_KEY_LEN + 8 + 8 + 4)

static bool printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

/* Refuses what the decoder would refuse, so every encoded list decodes. */
static int ml_wr_str(struct writer *w, const char *s, size_t field_size)
{
	size_t n = strnlen(s, field_size);

	if (n >= field_size || n > UINT8_MAX || !printable(s, n))
		return -EINVAL;
	wr_u8(w, (uint8_t)n);
	return wr_bytes(w, s, n);
}

static int ml_wr_entry(struct writer *w, const struct member_entry *e)
{
	const struct peer *p = &e->peer;
	uint8_t flags =
	    (uint8_t)((e->active ? ML_FLAG_ACTIVE : 0) | (e->policy_ok ? ML_FLAG_POLICY_OK : 0));

	if (p->node_id <= 0)
		return -EINVAL;
	wr_be64(w, (uint64_t)p->node_id);
	wr_u8(w, flags);
	wr_bytes(w, e->ek_id, sizeof(e->ek_id));
	wr_bytes(w, p->wg_pubkey, sizeof(p->wg_pubkey));
	wr_be64(w, e->joined_at);
	wr_be64(w, e->attested_at);
	if (ml_wr_str(w, p->endpoints, sizeof(p->endpoints)) < 0 ||
	    ml_wr_str(w, p->overlay_v4, sizeof(p->overlay_v4)) < 0 ||
	    ml_wr_str(w, p->overlay_v6, sizeof(p->overlay_v6)) < 0 ||
	    ml_wr_str(w, p->pod_cidr, sizeof(p->pod_cidr)) < 0)
		return -EINVAL;
	return w->failed ? -ENOMEM : 0;
}

int memberlist_encode(const struct memberlist *l, uint8_t **out, size_t *len)
{
	struct writer w = { 0 };
	int ret = 0;

	if (!l || (l->n && !l->members) || !out || !len)
		return -EINVAL;
	if (l->n > (MEMBERLIST_MAX_SIZE / ML_ENTRY_MIN_SIZE))
		return -E2BIG;
	wr_bytes(&w, MEMBERLIST_MAGIC, 4);
	wr_u8(&w, MEMBERLIST_VERSION);
	wr_bytes(&w, l->binding, sizeof(l->binding));
	wr_bytes(&w, l->cluster_id, sizeof(l->cluster_id));
	wr_be64(&w, l->generation);
	wr_be32(&w, (uint32_t)l->n);
	for (size_t i = 0; ret == 0 && i < l->n; i++)
		ret = ml_wr_entry(&w, &l->members[i]);
	if (ret == 0 && w.failed)
		ret = -ENOMEM;
	if (ret == 0 && w.len > MEMBERLIST_MAX_SIZE)
		ret = -E2BIG;
	if (ret < 0) {
		writer_free(&w);
		return ret;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

static int ml_rd_str(struct reader *r, char *out, size_t size)
{
	const uint8_t *p;
	uint8_t n;

	if (rd_u8(r, &n) < 0 || n >= size || rd_bytes(r, n, &p) < 0 ||
	    !printable((const char *)p, n))
		return -EBADMSG;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

static int ml_rd_entry(struct reader *r, struct member_entry *e, uint32_t i, struct diag *d)
{
	static const char *const names[] = { "endpoints", "overlay IPv4 address",
					     "overlay IPv6 address", "pod CIDR" };
	struct peer *p = &e->peer;
	char *const fields[] = { p->endpoints, p->overlay_v4, p->overlay_v6, p->pod_cidr };
	const size_t sizes[] = { sizeof(p->endpoints), sizeof(p->overlay_v4), sizeof(p->overlay_v6),
				 sizeof(p->pod_cidr) };
	const uint8_t *ek, *wg;
	size_t at = r->off;
	uint64_t id;
	uint8_t flags;

	if (rd_be64(r, &id) < 0 || rd_u8(r, &flags) < 0 || rd_bytes(r, sizeof(e->ek_id), &ek) < 0 ||
	    rd_bytes(r, sizeof(p->wg_pubkey), &wg) < 0 || rd_be64(r, &e->joined_at) < 0 ||
	    rd_be64(r, &e->attested_at) < 0) {
		diag_set(d, "member list: member %u at offset %zu is truncated", i, at);
		return -EBADMSG;
	}
	if (id == 0 || id > INT64_MAX) {
		diag_set(d, "member list: member %u has node id %llu, outside 1..%lld", i,
			 (unsigned long long)id, (long long)INT64_MAX);
		return -EBADMSG;
	}
	if (flags & ~(ML_FLAG_ACTIVE | ML_FLAG_POLICY_OK)) {
		diag_set(d, "member list: member %u has unknown flags 0x%02x", i, flags);
		return -EBADMSG;
	}
	for (size_t k = 0; k < ARRAY_SIZE(names); k++) {
		if (ml_rd_str(r, fields[k], sizes[k]) < 0) {
			diag_set(d,
				 "member list: member %u: %s at offset %zu is truncated, longer "
				 "than %zu characters or not printable ASCII",
				 i, names[k], r->off, sizes[k] - 1);
			return -EBADMSG;
		}
	}
	p->node_id = (int64_t)id;
	memcpy(p->wg_pubkey, wg, sizeof(p->wg_pubkey));
	memcpy(e->ek_id, ek, sizeof(e->ek_id));
	e->active = flags & ML_FLAG_ACTIVE;
	e->policy_ok = flags & ML_FLAG_POLICY_OK;
	return 0;
}

int memberlist_decode(const uint8_t *buf, size_t len, struct memberlist *out, struct diag *d)
{
	struct reader r = reader_init(buf, len);
	const uint8_t *magic, *binding, *cid;
	uint8_t version;
	uint32_t n;

	memset(out, 0, sizeof(*out));
	if (len > MEMBERLIST_MAX_SIZE) {
		diag_set(d, "member list: %zu bytes, more than the limit of %u", len,
			 MEMBERLIST_MAX_SIZE);
		return -EBADMSG;
	}
	if (rd_bytes(&r, 4, &magic) < 0 || memcmp(magic, MEMBERLIST_MAGIC, 4) != 0 ||
	    rd_u8(&r, &version) < 0 || version != MEMBERLIST_VERSION) {
		diag_set(d, "member list: not a version %d member-list document",
			 MEMBERLIST_VERSION);
		return -EBADMSG;
	}
	if (rd_bytes(&r, sizeof(out->binding), &binding) < 0 ||
	    rd_bytes(&r, sizeof(out->cluster_id), &cid) < 0 || rd_be64(&r, &out->generation) < 0 ||
	    rd_be32(&r, &n) < 0) {
		diag_set(d, "member list: header truncated at offset %zu", r.off);
		memset(out, 0, sizeof(*out));
		return -EBADMSG;
	}
	if (n > reader_left(&r) / ML_ENTRY_MIN_SIZE) {
		diag_set(d, "member list: %u members cannot fit in the %zu bytes that follow", n,
			 reader_left(&r));
		memset(out, 0, sizeof(*out));
		return -EBADMSG;
	}
	memcpy(out->binding, binding, sizeof(out->binding));
	memcpy(out->cluster_id, cid, sizeof(out->cluster_id));
	out->members = calloc(n ? n : 1, sizeof(*out->members));
	if (!out->members) {
		diag_set(d, "member list: out of memory");
		memset(out, 0, sizeof(*out));
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++, out->n++) {
		if (ml_rd_entry(&r, &out->members[i], i, d) < 0) {
			memberlist_free(out);
			return -EBADMSG;
		}
	}
	if (reader_left(&r) != 0) {
		diag_set(d, "member list: %zu trailing bytes", reader_left(&r));
		memberlist_free(out);
		return -EBADMSG;
	}
	return 0;
}

void memberlist_free(struct memberlist *l)
{
	if (!l)
		return;
	free(l->members);
	memset(l, 0, sizeof(*l));
}
