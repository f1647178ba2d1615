// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target: the verifier on an evidence document from a peer. Beyond the document's
 * own decoder (fuzz_evidence) this reaches the TPM structures unmarshalled from it (the AK's
 * TPMT_PUBLIC, the quote's TPMS_ATTEST, the TPMT_SIGNATURE), the EK certificate and chain,
 * the event log replay and the policy comparison. Nothing here can pass: the trust store is
 * empty. Every input must give a verdict, never a crash, and a verdict that did not pass. */
#include <stdlib.h>
#include <string.h>

#include <openssl/x509_vfy.h>

#include "conclave/evidence.h"
#include "conclave/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static X509_STORE *store;
	static struct policy policy = { .version = 1 };
	static const uint8_t qdata[32];
	struct node_record known = { .known = true, .ak_name_len = 34, .clock = 1 };
	struct verify_params p = { .policy = &policy, .qdata = qdata, .qlen = sizeof(qdata) };
	struct evidence ev;
	struct verdict v;

	if (!store) {
		setenv("TSS2_LOG", "all+none", 1); /* tss2-mu's warnings about what it refuses */
		store = X509_STORE_new();
		for (int i = 0; i < 24; i += 3) {
			policy.pcrs[i].set = true;
			memset(policy.pcrs[i].expected, i, sizeof(policy.pcrs[i].expected));
		}
	}
	p.ca = store;
	if (evidence_decode(data, size, &ev, NULL) < 0)
		return 0;
	/* First contact, then as a node the verifier knows (AK name, counters to compare). */
	if (verify_evidence(&ev, &p, &v) == 0 && v.ok)
		abort();
	evidence_node_id(&ev, known.node_id);
	p.node = &known;
	if (verify_evidence(&ev, &p, &v) == 0 && v.ok)
		abort();
	node_record_clear(&known);
	return 0;
}
