// SPDX-License-Identifier: Apache-2.0
/* The cluster CA: a deterministic CA certificate derived from the master secret, the checks a
 * peer applies to it and to node certificates, CA signatures, and the strict member-list codec. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "conclave/clusterca.h"
#include "conclave/util.h"

static const uint8_t wg_key[32] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
				    0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01,
				    0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
				    0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x12 };

/* A KMS whose master and salt are bytes from, from+1, ... */
static struct kms *kms_from(uint8_t from)
{
	struct secret *master = secret_new(KMS_MASTER_LEN), *salt = secret_new(KMS_SALT_LEN);
	struct kms *k = NULL;

	assert_non_null(master);
	assert_non_null(salt);
	for (size_t i = 0; i < KMS_MASTER_LEN; i++)
		master->data[i] = (uint8_t)(from + i);
	for (size_t i = 0; i < KMS_SALT_LEN; i++)
		salt->data[i] = (uint8_t)(0x80 + i);
	assert_int_equal(kms_from_secret(master, salt, &k, NULL), 0);
	secret_free(master);
	secret_free(salt);
	return k;
}

static struct cluster_ca *ca_from(uint8_t from)
{
	struct kms *k = kms_from(from);
	struct cluster_ca *ca = NULL;
	struct diag d = { "" };

	assert_int_equal(cluster_ca_derive(k, &ca, &d), 0);
	kms_free(k);
	return ca;
}

/* The CA's private key the way the header documents it: HKDF info "conclave/v1/ca/cluster". */
static EVP_PKEY *ca_key_from(uint8_t from)
{
	struct kms *k = kms_from(from);
	struct secret *seed = NULL;
	EVP_PKEY *key;

	assert_int_equal(kms_derive(k, "ca", "cluster", 32, &seed, NULL), 0);
	key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed->data, seed->len);
	assert_non_null(key);
	secret_free(seed);
	kms_free(k);
	return key;
}

static X509 *parse(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);

	assert_non_null(x);
	return x;
}

static void encode(X509 *x, uint8_t **der, size_t *len)
{
	unsigned char *buf = NULL;
	int n = i2d_X509(x, &buf);

	assert_true(n > 0);
	*der = malloc((size_t)n);
	assert_non_null(*der);
	memcpy(*der, buf, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(buf);
}

static void add_ext(X509 *x, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, nid, value);

	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* A certificate no conclave code would issue: subject CN cn, issuer issuer, certifying pub,
 * with basicConstraints bc, signed by signer. For the checks' refusals. */
static void craft(EVP_PKEY *signer, const X509_NAME *issuer, const char *cn, EVP_PKEY *pub,
		  const char *bc, uint8_t **der, size_t *len)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();

	assert_non_null(x);
	assert_non_null(name);
	assert_int_equal(X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
						    (const unsigned char *)cn, -1, -1, 0),
			 1);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 2), 1);
	assert_int_equal(X509_set_subject_name(x, name), 1);
	assert_int_equal(X509_set_issuer_name(x, issuer ? issuer : name), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_set_pubkey(x, pub), 1);
	add_ext(x, NID_basic_constraints, bc);
	assert_true(X509_sign(x, signer, NULL) > 0);
	encode(x, der, len);
	X509_NAME_free(name);
	X509_free(x);
}

static void issue(struct cluster_ca *ca, int64_t id, const uint8_t key[32], unsigned int days,
		  uint8_t **der, size_t *len)
{
	struct diag d = { "" };

	assert_int_equal(
	    cluster_ca_issue_node(ca, id, key, "10.100.0.7", "fd00:100::7", days, der, len, &d), 0);
	assert_true(*len <= CLUSTER_CERT_MAX);
}

static void ca_cert_is_identical_for_the_same_master(void **state)
{
	struct cluster_ca *a = ca_from(0), *b = ca_from(0);
	const uint8_t *da, *db;
	size_t la, lb;
	uint8_t ia[CLUSTER_ID_LEN], ib[CLUSTER_ID_LEN];

	cluster_ca_cert(a, &da, &la);
	cluster_ca_cert(b, &db, &lb);
	assert_true(la > 0 && la <= CLUSTER_CERT_MAX);
	assert_int_equal(la, lb);
	assert_memory_equal(da, db, la);
	cluster_ca_id(a, ia);
	cluster_ca_id(b, ib);
	assert_memory_equal(ia, ib, CLUSTER_ID_LEN);
	cluster_ca_free(a);
	cluster_ca_free(b);
}

static void another_master_is_another_cluster(void **state)
{
	struct cluster_ca *a = ca_from(0), *b = ca_from(1);
	uint8_t ia[CLUSTER_ID_LEN], ib[CLUSTER_ID_LEN];

	cluster_ca_id(a, ia);
	cluster_ca_id(b, ib);
	assert_memory_not_equal(ia, ib, CLUSTER_ID_LEN);
	cluster_ca_free(a);
	cluster_ca_free(b);
}

static void ca_id_is_sha256_of_the_key_derived_for_ca_cluster(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	EVP_PKEY *key = ca_key_from(0);
	uint8_t pub[32], want[32], id[CLUSTER_ID_LEN];
	size_t n = sizeof(pub);
	unsigned int md_len;

	assert_int_equal(EVP_PKEY_get_raw_public_key(key, pub, &n), 1);
	assert_int_equal(EVP_Digest(pub, n, want, &md_len, EVP_sha256(), NULL), 1);
	cluster_ca_id(ca, id);
	assert_memory_equal(id, want, CLUSTER_ID_LEN);
	EVP_PKEY_free(key);
	cluster_ca_free(ca);
}

static void ca_cert_has_the_documented_fields(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	const uint8_t *der;
	size_t len;
	uint8_t id[CLUSTER_ID_LEN];
	char hex[2 * CLUSTER_ID_LEN + 1], want_cn[64], cn[64];
	X509 *x;
	BASIC_CONSTRAINTS *bc;
	int crit = -1;

	cluster_ca_cert(ca, &der, &len);
	x = parse(der, len);
	cluster_ca_id(ca, id);
	hex_encode(id, sizeof(id), hex);
	snprintf(want_cn, sizeof(want_cn), "conclave cluster %.16s", hex);
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
					      sizeof(cn)) > 0);
	assert_string_equal(cn, want_cn);
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_int_equal(ASN1_INTEGER_get(X509_get0_serialNumber(x)), 1);
	assert_int_equal(X509_get_signature_nid(x), NID_ED25519);
	assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), 1735689600), 0);
	assert_int_equal(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_GENERALIZEDTIME);
	assert_memory_equal(ASN1_STRING_get0_data(X509_get0_notAfter(x)), "99991231235959Z", 15);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	assert_non_null(bc);
	assert_int_equal(crit, 1);
	assert_true(bc->ca);
	assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
	BASIC_CONSTRAINTS_free(bc);
	assert_int_equal(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_int_equal(X509_get_extended_key_usage(x), UINT32_MAX); /* none */
	assert_non_null(X509_get0_subject_key_id(x));
	assert_int_equal(X509_check_ca(x), 1);
	X509_free(x);
	cluster_ca_free(ca);
}

static void ca_check_accepts_the_real_ca(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	uint8_t id[CLUSTER_ID_LEN];
	const uint8_t *der;
	size_t len;
	struct diag d = { "" };

	cluster_ca_cert(ca, &der, &len);
	cluster_ca_id(ca, id);
	assert_int_equal(cluster_ca_check(der, len, id, &d), 0);
	cluster_ca_free(ca);
}

static void ca_check_refuses_another_cluster_id(void **state)
{
	struct cluster_ca *ca = ca_from(0), *other = ca_from(1);
	uint8_t id[CLUSTER_ID_LEN];
	const uint8_t *der;
	size_t len;
	struct diag d = { "" };

	cluster_ca_cert(ca, &der, &len);
	cluster_ca_id(other, id);
	assert_int_equal(cluster_ca_check(der, len, id, &d), -EPERM);
	assert_non_null(strstr(d.msg, "cluster identity"));
	cluster_ca_id(ca, id);
	id[31] ^= 1;
	assert_int_equal(cluster_ca_check(der, len, id, &d), -EPERM);
	cluster_ca_free(ca);
	cluster_ca_free(other);
}

/* The CA's own certificate (its key, so its id) signed by another cluster's key. */
static void ca_check_refuses_a_cert_signed_by_another_key(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	EVP_PKEY *other = ca_key_from(1);
	uint8_t id[CLUSTER_ID_LEN], *bad;
	const uint8_t *der;
	size_t len, bad_len;
	struct diag d = { "" };
	X509 *x;

	cluster_ca_cert(ca, &der, &len);
	cluster_ca_id(ca, id);
	x = parse(der, len);
	assert_true(X509_sign(x, other, NULL) > 0);
	encode(x, &bad, &bad_len);
	assert_int_equal(cluster_ca_check(bad, bad_len, id, &d), -EPERM);
	assert_non_null(strstr(d.msg, "self-signed"));
	free(bad);
	X509_free(x);
	EVP_PKEY_free(other);
	cluster_ca_free(ca);
}

static void ca_check_refuses_truncated_der_and_trailing_bytes(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	uint8_t id[CLUSTER_ID_LEN], longer[CLUSTER_CERT_MAX + 1];
	const uint8_t *der;
	size_t len;
	struct diag d = { "" };

	cluster_ca_cert(ca, &der, &len);
	cluster_ca_id(ca, id);
	for (size_t n = 0; n < len; n++)
		assert_int_equal(cluster_ca_check(der, n, id, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "not a DER X.509 certificate"));
	memcpy(longer, der, len);
	longer[len] = 0;
	assert_int_equal(cluster_ca_check(longer, len + 1, id, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "trailing bytes"));
	cluster_ca_free(ca);
}

static void ca_check_refuses_a_node_cert(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	uint8_t id[CLUSTER_ID_LEN], *node;
	size_t len;
	struct diag d = { "" };

	cluster_ca_id(ca, id);
	issue(ca, 3, wg_key, 30, &node, &len);
	assert_int_equal(cluster_ca_check(node, len, id, &d), -EPERM);
	free(node);
	cluster_ca_free(ca);
}

/* Self-signed with the CA's own key (so the id matches), but CA:FALSE. */
static void ca_check_refuses_a_self_signed_non_ca(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	EVP_PKEY *key = ca_key_from(0);
	uint8_t id[CLUSTER_ID_LEN], *der;
	size_t len;
	struct diag d = { "" };

	cluster_ca_id(ca, id);
	craft(key, NULL, "conclave cluster", key, "critical,CA:FALSE", &der, &len);
	assert_int_equal(cluster_ca_check(der, len, id, &d), -EPERM);
	assert_non_null(strstr(d.msg, "not a CA"));
	free(der);
	EVP_PKEY_free(key);
	cluster_ca_free(ca);
}

static void node_cert_round_trips_id_and_key(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	const uint8_t *ca_der;
	uint8_t *der;
	size_t ca_len, len;
	int64_t id = 0;
	struct diag d = { "" };

	cluster_ca_cert(ca, &ca_der, &ca_len);
	issue(ca, 42, wg_key, 30, &der, &len);
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, wg_key, &id, &d), 0);
	assert_int_equal(id, 42);
	free(der);
	issue(ca, INT64_MAX, wg_key, 1, &der, &len);
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, wg_key, &id, &d), 0);
	assert_int_equal(id, INT64_MAX);
	free(der);
	cluster_ca_free(ca);
}

static void node_cert_has_the_documented_fields(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	const uint8_t *ca_der;
	uint8_t *der, *der2, raw[32];
	size_t ca_len, len, len2, n = sizeof(raw);
	X509 *x, *x2, *cax;
	GENERAL_NAMES *san;
	BASIC_CONSTRAINTS *bc;
	char cn[32];
	time_t now = time(NULL);

	cluster_ca_cert(ca, &ca_der, &ca_len);
	cax = parse(ca_der, ca_len);
	issue(ca, 7, wg_key, 30, &der, &len);
	issue(ca, 7, wg_key, 30, &der2, &len2);
	x = parse(der, len);
	x2 = parse(der2, len2);
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
					      sizeof(cn)) > 0);
	assert_string_equal(cn, "node-7");
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(cax)), 0);
	assert_int_equal(EVP_PKEY_get_id(X509_get0_pubkey(x)), EVP_PKEY_X25519);
	assert_int_equal(EVP_PKEY_get_raw_public_key(X509_get0_pubkey(x), raw, &n), 1);
	assert_memory_equal(raw, wg_key, 32);
	/* Serials are random and positive. */
	assert_int_not_equal(
	    ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(x2)), 0);
	assert_int_equal(X509_get0_serialNumber(x)->type, V_ASN1_INTEGER);
	assert_true(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), now - 3600 - 5) > 0);
	assert_true(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), now - 3600 + 5) < 0);
	assert_true(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), now + 30 * 86400 - 5) > 0);
	assert_true(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), now + 30 * 86400 + 5) < 0);
	san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(san);
	assert_int_equal(sk_GENERAL_NAME_num(san), 2);
	for (int i = 0; i < 2; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);
		uint8_t want[16];
		int af = i == 0 ? AF_INET : AF_INET6;

		assert_int_equal(gn->type, GEN_IPADD);
		assert_int_equal(inet_pton(af, i == 0 ? "10.100.0.7" : "fd00:100::7", want), 1);
		assert_int_equal(ASN1_STRING_length(gn->d.iPAddress), i == 0 ? 4 : 16);
		assert_memory_equal(ASN1_STRING_get0_data(gn->d.iPAddress), want, i == 0 ? 4 : 16);
	}
	GENERAL_NAMES_free(san);
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	assert_non_null(bc);
	assert_false(bc->ca);
	BASIC_CONSTRAINTS_free(bc);
	assert_int_equal(X509_get_key_usage(x), KU_KEY_AGREEMENT);
	assert_int_equal(X509_check_ca(x), 0);
	X509_free(x);
	X509_free(x2);
	X509_free(cax);
	free(der);
	free(der2);
	cluster_ca_free(ca);
}

static void node_cert_without_addresses_has_no_san(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	const uint8_t *ca_der;
	uint8_t *der;
	size_t ca_len, len;
	int64_t id = 0;
	struct diag d = { "" };
	X509 *x;

	cluster_ca_cert(ca, &ca_der, &ca_len);
	assert_int_equal(cluster_ca_issue_node(ca, 5, wg_key, "", "", 1, &der, &len, &d), 0);
	x = parse(der, len);
	assert_int_equal(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), -1);
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, wg_key, &id, &d), 0);
	assert_int_equal(id, 5);
	X509_free(x);
	free(der);
	cluster_ca_free(ca);
}

static void issue_refuses_bad_ids_addresses_and_validity(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	uint8_t *der = NULL;
	size_t len = 0;
	struct diag d = { "" };

	assert_int_equal(cluster_ca_issue_node(ca, 0, wg_key, "", "", 1, &der, &len, &d), -EINVAL);
	assert_int_equal(cluster_ca_issue_node(ca, -1, wg_key, "", "", 1, &der, &len, &d), -EINVAL);
	assert_int_equal(
	    cluster_ca_issue_node(ca, 1, wg_key, "10.100.0.300", "", 1, &der, &len, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "IPv4"));
	assert_int_equal(cluster_ca_issue_node(ca, 1, wg_key, "fd00::1", "", 1, &der, &len, &d),
			 -EINVAL);
	assert_int_equal(cluster_ca_issue_node(ca, 1, wg_key, "", "10.0.0.1", 1, &der, &len, &d),
			 -EINVAL);
	assert_non_null(strstr(d.msg, "IPv6"));
	assert_int_equal(cluster_ca_issue_node(ca, 1, wg_key, "", "", 100000, &der, &len, &d),
			 -EINVAL);
	assert_null(der);
	cluster_ca_free(ca);
}

static void node_check_refuses_another_wireguard_key(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	const uint8_t *ca_der;
	uint8_t *der, other[32];
	size_t ca_len, len;
	int64_t id = -1;
	struct diag d = { "" };

	cluster_ca_cert(ca, &ca_der, &ca_len);
	issue(ca, 9, wg_key, 30, &der, &len);
	memcpy(other, wg_key, sizeof(other));
	other[0] ^= 0x80;
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, other, &id, &d), -EPERM);
	assert_non_null(strstr(d.msg, "WireGuard key"));
	assert_int_equal(id, -1);
	free(der);
	cluster_ca_free(ca);
}

static void node_check_refuses_a_cert_of_another_cluster(void **state)
{
	struct cluster_ca *ca = ca_from(0), *other = ca_from(1);
	const uint8_t *ca_der;
	uint8_t *der;
	size_t ca_len, len;
	int64_t id = -1;
	struct diag d = { "" };

	cluster_ca_cert(ca, &ca_der, &ca_len);
	issue(other, 9, wg_key, 30, &der, &len);
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, wg_key, &id, &d),
			 -EPERM);
	assert_non_null(strstr(d.msg, "CA"));
	assert_int_equal(id, -1);
	free(der);
	cluster_ca_free(ca);
	cluster_ca_free(other);
}

/* Right issuer name, wrong signer: only the signature tells them apart. */
static void node_check_refuses_a_forged_signature(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	EVP_PKEY *forger = ca_key_from(1), *wg;
	const uint8_t *ca_der;
	uint8_t *der;
	size_t ca_len, len;
	int64_t id = -1;
	struct diag d = { "" };
	X509 *cax;

	cluster_ca_cert(ca, &ca_der, &ca_len);
	cax = parse(ca_der, ca_len);
	wg = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, wg_key, 32);
	assert_non_null(wg);
	craft(forger, X509_get_subject_name(cax), "node-9", wg, "critical,CA:FALSE", &der, &len);
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, wg_key, &id, &d),
			 -EPERM);
	assert_non_null(strstr(d.msg, "signature"));
	free(der);
	/* The same with the CA's own key is accepted: the refusal was the signature's. */
	EVP_PKEY_free(forger);
	forger = ca_key_from(0);
	craft(forger, X509_get_subject_name(cax), "node-9", wg, "critical,CA:FALSE", &der, &len);
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, wg_key, &id, &d), 0);
	assert_int_equal(id, 9);
	free(der);
	EVP_PKEY_free(forger);
	EVP_PKEY_free(wg);
	X509_free(cax);
	cluster_ca_free(ca);
}

static void node_check_refuses_subjects_that_are_not_node_ids(void **state)
{
	static const char *const bad[] = { "node-0",  "node-01",
					   "node-",   "node-9223372036854775808",
					   "node--1", "node-1x",
					   "Node-1",  "node-99999999999999999999",
					   "nodes-1", "node-1 " };
	struct cluster_ca *ca = ca_from(0);
	EVP_PKEY *key = ca_key_from(0), *wg;
	const uint8_t *ca_der;
	uint8_t *der;
	size_t ca_len, len;
	int64_t id = -1;
	struct diag d = { "" };
	X509 *cax;

	cluster_ca_cert(ca, &ca_der, &ca_len);
	cax = parse(ca_der, ca_len);
	wg = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, wg_key, 32);
	assert_non_null(wg);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		craft(key, X509_get_subject_name(cax), bad[i], wg, "critical,CA:FALSE", &der, &len);
		assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, wg_key, &id, &d),
				 -EPERM);
		assert_non_null(strstr(d.msg, "node-<id>"));
		free(der);
	}
	/* A CA certificate for the WireGuard key is not a node certificate. */
	craft(key, X509_get_subject_name(cax), "node-1", wg, "critical,CA:TRUE", &der, &len);
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, wg_key, &id, &d),
			 -EPERM);
	free(der);
	assert_int_equal(id, -1);
	EVP_PKEY_free(wg);
	EVP_PKEY_free(key);
	X509_free(cax);
	cluster_ca_free(ca);
}

static void node_check_refuses_an_expired_cert(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	const uint8_t *ca_der;
	uint8_t *der;
	size_t ca_len, len;
	int64_t id = -1;
	struct diag d = { "" };

	cluster_ca_cert(ca, &ca_der, &ca_len);
	issue(ca, 9, wg_key, 0, &der, &len); /* notAfter = now */
	sleep(1);
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, wg_key, &id, &d),
			 -EKEYEXPIRED);
	assert_non_null(strstr(d.msg, "expired"));
	assert_int_equal(id, -1);
	free(der);
	cluster_ca_free(ca);
}

static void node_check_refuses_malformed_input(void **state)
{
	struct cluster_ca *ca = ca_from(0);
	const uint8_t *ca_der;
	uint8_t *der;
	size_t ca_len, len;
	int64_t id = -1;
	struct diag d = { "" };

	cluster_ca_cert(ca, &ca_der, &ca_len);
	issue(ca, 9, wg_key, 30, &der, &len);
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len - 1, wg_key, &id, &d),
			 -EBADMSG);
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len - 1, der, len, wg_key, &id, &d),
			 -EBADMSG);
	/* A node certificate is no CA: its key is not Ed25519. */
	assert_int_equal(cluster_node_cert_check(der, len, der, len, wg_key, &id, &d), -EBADMSG);
	der[len - 1] ^= 1; /* inside the signature */
	assert_int_equal(cluster_node_cert_check(ca_der, ca_len, der, len, wg_key, &id, &d),
			 -EPERM);
	assert_int_equal(id, -1);
	free(der);
	cluster_ca_free(ca);
}

/* What `openssl verify -x509_strict -CAfile ca.pem node.pem` does: X509_V_OK or its error. */
static int store_verify(const uint8_t *ca_der, size_t ca_len, const uint8_t *der, size_t len)
{
	X509 *cax = parse(ca_der, ca_len), *x = parse(der, len);
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int err;

	assert_non_null(store);
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_add_cert(store, cax), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, x, NULL), 1);
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
	err = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(x);
	X509_free(cax);
	return err;
}

static void node_cert_verifies_under_openssl_strict_chain_rules(void **state)
{
	struct cluster_ca *ca = ca_from(0), *other = ca_from(1);
	const uint8_t *ca_der;
	uint8_t *der;
	size_t ca_len, len;
	int err;

	cluster_ca_cert(ca, &ca_der, &ca_len);
	issue(ca, 12, wg_key, 30, &der, &len);
	err = store_verify(ca_der, ca_len, der, len);
	if (err != X509_V_OK)
		fail_msg("X509_verify_cert: %s", X509_verify_cert_error_string(err));
	free(der);
	issue(other, 12, wg_key, 30, &der, &len);
	assert_int_equal(store_verify(ca_der, ca_len, der, len),
			 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	free(der);
	cluster_ca_free(ca);
	cluster_ca_free(other);
}

static void signatures_verify_and_tampering_is_refused(void **state)
{
	static const uint8_t msg[] = "member list generation 7";
	struct cluster_ca *ca = ca_from(0), *other = ca_from(1);
	const uint8_t *ca_der, *other_der;
	size_t ca_len, other_len;
	uint8_t sig[CLUSTER_SIG_LEN], again[CLUSTER_SIG_LEN], bad[sizeof(msg)];
	struct diag d = { "" };

	cluster_ca_cert(ca, &ca_der, &ca_len);
	cluster_ca_cert(other, &other_der, &other_len);
	assert_int_equal(cluster_ca_sign(ca, msg, sizeof(msg), sig, &d), 0);
	assert_int_equal(cluster_ca_sign(ca, msg, sizeof(msg), again, &d), 0);
	assert_memory_equal(sig, again, sizeof(sig)); /* Ed25519 is deterministic */
	assert_int_equal(cluster_ca_verify_sig(ca_der, ca_len, msg, sizeof(msg), sig, &d), 0);
	assert_int_equal(cluster_ca_sign(ca, NULL, 0, again, &d), 0);
	assert_int_equal(cluster_ca_verify_sig(ca_der, ca_len, NULL, 0, again, &d), 0);

	memcpy(bad, msg, sizeof(msg));
	bad[0] ^= 1;
	assert_int_equal(cluster_ca_verify_sig(ca_der, ca_len, bad, sizeof(bad), sig, &d), -EPERM);
	assert_non_null(strstr(d.msg, "not the cluster CA's"));
	assert_int_equal(cluster_ca_verify_sig(ca_der, ca_len, msg, sizeof(msg) - 1, sig, &d),
			 -EPERM);
	assert_int_equal(cluster_ca_verify_sig(other_der, other_len, msg, sizeof(msg), sig, &d),
			 -EPERM);
	sig[10] ^= 4;
	assert_int_equal(cluster_ca_verify_sig(ca_der, ca_len, msg, sizeof(msg), sig, &d), -EPERM);
	assert_int_equal(cluster_ca_verify_sig(ca_der, ca_len - 1, msg, sizeof(msg), sig, &d),
			 -EBADMSG);
	cluster_ca_free(ca);
	cluster_ca_free(other);
}

/* --- member list --------------------------------------------------------------------------- */

/* Offsets in a document: header, then the first member. */
#define ML_HEADER     (4 + 1 + 32 + 32 + 8 + 4)
#define ML_COUNT_AT   (ML_HEADER - 4)
#define ML_M0_FLAGS   (ML_HEADER + 8)
#define ML_M0_ENDPTS  (ML_HEADER + 8 + 1 + 32 + 32 + 8 + 8)
#define ML_M0_ENDPT_0 (ML_M0_ENDPTS + 1)

static void member(struct member_entry *e, int64_t id, bool active, const char *endpoints)
{
	memset(e, 0, sizeof(*e));
	e->peer.node_id = id;
	for (size_t i = 0; i < 32; i++) {
		e->peer.wg_pubkey[i] = (uint8_t)(id + i);
		e->ek_id[i] = (uint8_t)(0xa0 + id + i);
	}
	snprintf(e->peer.endpoints, sizeof(e->peer.endpoints), "%s", endpoints);
	snprintf(e->peer.overlay_v4, sizeof(e->peer.overlay_v4), "10.100.0.%d", (int)id);
	snprintf(e->peer.overlay_v6, sizeof(e->peer.overlay_v6), "fd00:100::%d", (int)id);
	snprintf(e->peer.pod_cidr, sizeof(e->peer.pod_cidr), "10.244.%d.0/24", (int)id);
	e->active = active;
	e->policy_ok = active && id != 2;
	e->joined_at = 1735689600 + (uint64_t)id;
	e->attested_at = 1735776000 + (uint64_t)id;
}

static struct member_entry members[3];

static const struct memberlist *sample_list(void)
{
	static struct memberlist l;

	member(&members[0], 1, true, "192.0.2.1:51820");
	member(&members[1], 2, true, "192.0.2.2:51820,[2001:db8::2]:51820");
	member(&members[2], 3, false, ""); /* revoked */
	memset(&l, 0, sizeof(l));
	memset(l.binding, 0xbb, sizeof(l.binding));
	memset(l.cluster_id, 0xcc, sizeof(l.cluster_id));
	l.generation = 0x0102030405060708;
	l.members = members;
	l.n = ARRAY_SIZE(members);
	return &l;
}

static void sample_doc(uint8_t **doc, size_t *len)
{
	assert_int_equal(memberlist_encode(sample_list(), doc, len), 0);
}

static void memberlist_round_trips_with_a_revoked_member(void **state)
{
	const struct memberlist *l = sample_list();
	struct memberlist back;
	struct diag d = { "" };
	uint8_t *doc, *again;
	size_t len, again_len;

	sample_doc(&doc, &len);
	assert_memory_equal(doc, "CMBL\x01", 5);
	assert_int_equal(memberlist_decode(doc, len, &back, &d), 0);
	assert_memory_equal(back.binding, l->binding, 32);
	assert_memory_equal(back.cluster_id, l->cluster_id, 32);
	assert_int_equal(back.generation, l->generation);
	assert_int_equal(back.n, 3);
	for (size_t i = 0; i < 3; i++) {
		const struct member_entry *a = &l->members[i], *b = &back.members[i];

		assert_int_equal(b->peer.node_id, a->peer.node_id);
		assert_memory_equal(b->peer.wg_pubkey, a->peer.wg_pubkey, 32);
		assert_memory_equal(b->ek_id, a->ek_id, 32);
		assert_string_equal(b->peer.endpoints, a->peer.endpoints);
		assert_string_equal(b->peer.overlay_v4, a->peer.overlay_v4);
		assert_string_equal(b->peer.overlay_v6, a->peer.overlay_v6);
		assert_string_equal(b->peer.pod_cidr, a->peer.pod_cidr);
		assert_int_equal(b->active, a->active);
		assert_int_equal(b->policy_ok, a->policy_ok);
		assert_int_equal(b->joined_at, a->joined_at);
		assert_int_equal(b->attested_at, a->attested_at);
	}
	assert_false(back.members[2].active);
	assert_int_equal(memberlist_encode(&back, &again, &again_len), 0);
	assert_int_equal(again_len, len);
	assert_memory_equal(again, doc, len);
	memberlist_free(&back);
	free(again);
	free(doc);
}

static void memberlist_of_no_members_round_trips(void **state)
{
	struct memberlist l = { .generation = 1 }, back;
	uint8_t *doc;
	size_t len;

	assert_int_equal(memberlist_encode(&l, &doc, &len), 0);
	assert_int_equal(len, ML_HEADER);
	assert_int_equal(memberlist_decode(doc, len, &back, NULL), 0);
	assert_int_equal(back.n, 0);
	assert_int_equal(back.generation, 1);
	memberlist_free(&back);
	free(doc);
}

/* Decoding buf must fail with -EBADMSG and a message containing what. */
static void refused(const uint8_t *buf, size_t len, const char *what)
{
	struct memberlist l;
	struct diag d = { "" };

	assert_int_equal(memberlist_decode(buf, len, &l, &d), -EBADMSG);
	assert_null(l.members);
	assert_int_equal(l.n, 0);
	if (!strstr(d.msg, what))
		fail_msg("diag \"%s\" does not mention \"%s\"", d.msg, what);
}

static void memberlist_refuses_bad_magic_and_version(void **state)
{
	uint8_t *doc;
	size_t len;

	sample_doc(&doc, &len);
	doc[0] = 'X';
	refused(doc, len, "not a version 1");
	doc[0] = 'C';
	doc[4] = 2;
	refused(doc, len, "not a version 1");
	doc[4] = 0;
	refused(doc, len, "not a version 1");
	free(doc);
}

static void memberlist_refuses_every_truncation(void **state)
{
	uint8_t *doc;
	size_t len;

	sample_doc(&doc, &len);
	for (size_t n = 0; n < len; n++)
		refused(doc, n, "member list");
	free(doc);
}

static void memberlist_refuses_a_trailing_byte(void **state)
{
	uint8_t *doc, *longer;
	size_t len;

	sample_doc(&doc, &len);
	longer = malloc(len + 1);
	assert_non_null(longer);
	memcpy(longer, doc, len);
	longer[len] = 0;
	refused(longer, len + 1, "1 trailing bytes");
	free(longer);
	free(doc);
}

static void memberlist_refuses_bad_strings(void **state)
{
	uint8_t *doc;
	size_t len;

	sample_doc(&doc, &len);
	doc[ML_M0_ENDPT_0] = 0x07;
	refused(doc, len, "endpoints");
	doc[ML_M0_ENDPT_0] = 0x7f;
	refused(doc, len, "not printable");
	doc[ML_M0_ENDPT_0] = 0xc3;
	refused(doc, len, "not printable");
	free(doc);

	/* An overlay IPv4 string of 16 characters does not fit its 16-byte field. */
	{
		struct memberlist l = { 0 };
		struct member_entry e;
		uint8_t *p;

		member(&e, 1, true, "");
		l.members = &e;
		l.n = 1;
		assert_int_equal(memberlist_encode(&l, &doc, &len), 0);
		/* endpoints "" | v4 "10.100.0.1" (10): widen it to 16 in a copy. */
		p = malloc(len + 6);
		assert_non_null(p);
		memcpy(p, doc, ML_M0_ENDPTS + 1);
		p[ML_M0_ENDPTS + 1] = 16;
		memcpy(p + ML_M0_ENDPTS + 2, "10.100.000.00001", 16);
		memcpy(p + ML_M0_ENDPTS + 18, doc + ML_M0_ENDPTS + 12, len - (ML_M0_ENDPTS + 12));
		refused(p, len + 6, "overlay IPv4");
		/* 15 would fit, but then the 16th character is taken for the IPv6 length. */
		p[ML_M0_ENDPTS + 1] = 15;
		refused(p, len + 6, "overlay IPv6");
		free(p);
		free(doc);
	}
}

static void memberlist_refuses_unknown_flags(void **state)
{
	uint8_t *doc;
	size_t len;

	sample_doc(&doc, &len);
	for (unsigned int bit = 2; bit < 8; bit++) {
		doc[ML_M0_FLAGS] = (uint8_t)(1u << bit | 1u);
		refused(doc, len, "unknown flags");
	}
	free(doc);
}

static void memberlist_refuses_node_ids_out_of_range(void **state)
{
	uint8_t *doc;
	size_t len;

	sample_doc(&doc, &len);
	memset(doc + ML_HEADER, 0, 8);
	refused(doc, len, "node id 0");
	doc[ML_HEADER] = 0x80;
	refused(doc, len, "node id");
	free(doc);
}

static void memberlist_refuses_counts_beyond_the_data(void **state)
{
	uint8_t *doc;
	size_t len;

	sample_doc(&doc, &len);
	doc[ML_COUNT_AT + 3] = 4; /* 3 members present */
	refused(doc, len, "member list");
	memset(doc + ML_COUNT_AT, 0xff, 4);
	refused(doc, len, "cannot fit");
	doc[ML_COUNT_AT + 0] = 0;
	doc[ML_COUNT_AT + 1] = 0;
	doc[ML_COUNT_AT + 2] = 0;
	doc[ML_COUNT_AT + 3] = 2; /* fewer: the rest is trailing */
	refused(doc, len, "trailing bytes");
	free(doc);
}

static void memberlist_refuses_documents_over_the_size_limit(void **state)
{
	uint8_t *doc, *big = calloc(1, MEMBERLIST_MAX_SIZE + 1);
	size_t len;

	assert_non_null(big);
	sample_doc(&doc, &len);
	memcpy(big, doc, len);
	refused(big, MEMBERLIST_MAX_SIZE + 1, "limit");
	free(big);
	free(doc);
}

static void memberlist_encode_refuses_what_decode_would(void **state)
{
	struct member_entry e;
	struct memberlist l = { .members = &e, .n = 1 };
	uint8_t *doc = NULL;
	size_t len;

	member(&e, 0, true, "");
	assert_int_equal(memberlist_encode(&l, &doc, &len), -EINVAL);
	member(&e, -5, true, "");
	assert_int_equal(memberlist_encode(&l, &doc, &len), -EINVAL);
	member(&e, 1, true, "a\tb");
	assert_int_equal(memberlist_encode(&l, &doc, &len), -EINVAL);
	member(&e, 1, true, "");
	memset(e.peer.pod_cidr, 'x', sizeof(e.peer.pod_cidr)); /* not terminated */
	assert_int_equal(memberlist_encode(&l, &doc, &len), -EINVAL);
	assert_null(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ca_cert_is_identical_for_the_same_master),
		cmocka_unit_test(another_master_is_another_cluster),
		cmocka_unit_test(ca_id_is_sha256_of_the_key_derived_for_ca_cluster),
		cmocka_unit_test(ca_cert_has_the_documented_fields),
		cmocka_unit_test(ca_check_accepts_the_real_ca),
		cmocka_unit_test(ca_check_refuses_another_cluster_id),
		cmocka_unit_test(ca_check_refuses_a_cert_signed_by_another_key),
		cmocka_unit_test(ca_check_refuses_truncated_der_and_trailing_bytes),
		cmocka_unit_test(ca_check_refuses_a_node_cert),
		cmocka_unit_test(ca_check_refuses_a_self_signed_non_ca),
		cmocka_unit_test(node_cert_round_trips_id_and_key),
		cmocka_unit_test(node_cert_has_the_documented_fields),
		cmocka_unit_test(node_cert_without_addresses_has_no_san),
		cmocka_unit_test(issue_refuses_bad_ids_addresses_and_validity),
		cmocka_unit_test(node_check_refuses_another_wireguard_key),
		cmocka_unit_test(node_check_refuses_a_cert_of_another_cluster),
		cmocka_unit_test(node_check_refuses_a_forged_signature),
		cmocka_unit_test(node_check_refuses_subjects_that_are_not_node_ids),
		cmocka_unit_test(node_check_refuses_an_expired_cert),
		cmocka_unit_test(node_check_refuses_malformed_input),
		cmocka_unit_test(node_cert_verifies_under_openssl_strict_chain_rules),
		cmocka_unit_test(signatures_verify_and_tampering_is_refused),
		cmocka_unit_test(memberlist_round_trips_with_a_revoked_member),
		cmocka_unit_test(memberlist_of_no_members_round_trips),
		cmocka_unit_test(memberlist_refuses_bad_magic_and_version),
		cmocka_unit_test(memberlist_refuses_every_truncation),
		cmocka_unit_test(memberlist_refuses_a_trailing_byte),
		cmocka_unit_test(memberlist_refuses_bad_strings),
		cmocka_unit_test(memberlist_refuses_unknown_flags),
		cmocka_unit_test(memberlist_refuses_node_ids_out_of_range),
		cmocka_unit_test(memberlist_refuses_counts_beyond_the_data),
		cmocka_unit_test(memberlist_refuses_documents_over_the_size_limit),
		cmocka_unit_test(memberlist_encode_refuses_what_decode_would),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
