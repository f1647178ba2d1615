// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the policy parsers: measurements JSON (with a to_json/parse round trip
 * that must reproduce the same policy) and signed envelopes checked against a fixed key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conclave/policy.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* RFC 8032 section 7.1 test 1 public key; the corpus envelope is signed with its private half,
 * so mutations reach the signature check and the payload parser. */
static const uint8_t fixed_pub[32] = {
	0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe,
	0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6,
	0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
};

static EVP_PKEY *pub;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, fixed_pub, sizeof(fixed_pub));
	if (!pub)
		abort();
	return 0;
}

static void assert_same(const struct policy *a, const struct policy *b)
{
	if (a->version != b->version || a->n_reference != b->n_reference)
		abort();
	for (size_t i = 0; i < POLICY_PCR_COUNT; i++) {
		const struct policy_pcr *x = &a->pcrs[i], *y = &b->pcrs[i];

		if (x->set != y->set || x->warn_only != y->warn_only ||
		    memcmp(x->expected, y->expected, sizeof(x->expected)))
			abort();
	}
	for (size_t i = 0; i < a->n_reference; i++) {
		const struct policy_ref_event *x = &a->reference[i], *y = &b->reference[i];

		if (x->pcr != y->pcr || x->type != y->type ||
		    memcmp(x->digest, y->digest, sizeof(x->digest)))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy p, q;
	struct diag d;
	char *json;

	if (policy_parse((const char *)data, size, &p, &d) == 0) {
		if (policy_to_json(&p, &json) != 0)
			abort();
		if (policy_parse(json, strlen(json), &q, &d) != 0)
			abort();
		assert_same(&p, &q);
		free(json);
		policy_free(&q);
		policy_free(&p);
	}
	if (policy_verify((const char *)data, size, pub, &p, &d) == 0)
		policy_free(&p);
	return 0;
}
