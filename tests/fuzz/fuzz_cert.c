// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target: the certificates a node receives in JOIN_RESPONSE (the cluster CA's and
 * its own, DER) and an EK certificate with its chain from a peer's evidence. Input: u16
 * big-endian length of the first certificate, the first certificate, the second. Nothing may
 * crash; with an empty trust store no EK certificate may verify, and a node certificate may
 * pass only under the CA certificate that passed. */
#include <stdlib.h>
#include <string.h>

#include <openssl/x509_vfy.h>

#include "conclave/clusterca.h"
#include "conclave/evidence.h"
#include "conclave/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static X509_STORE *store;
	static const uint8_t wg[32];
	uint8_t id[CLUSTER_ID_LEN] = { 0 };
	struct blob first, second;
	int64_t node_id = 0;
	X509 *ek = NULL;
	size_t n;

	if (!store)
		store = X509_STORE_new();
	if (size < 2)
		return 0;
	n = (size_t)data[0] << 8 | data[1];
	if (n > size - 2)
		n = size - 2;
	first = (struct blob){ data + 2, n };
	second = (struct blob){ data + 2 + n, size - 2 - n };

	/* The CA's identity is what joind's quote bound; here the one a fuzzer would have to
	 * hit is fixed, so the node check below runs on CA certificates that parse. */
	(void)cluster_ca_check(first.p, first.len, id, NULL);
	if (cluster_node_cert_check(first.p, first.len, second.p, second.len, wg, &node_id, NULL) ==
		0 &&
	    node_id <= 0)
		abort();
	if (ekcert_verify(store, &first, &second, second.len ? 1 : 0, &ek, NULL) == 0)
		abort();
	X509_free(ek);
	return 0;
}
