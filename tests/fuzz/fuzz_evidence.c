// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target: the evidence and challenge decoders. Decoding must never crash, and a
 * decoded document must survive an encode/decode round trip unchanged. */
#include <stdlib.h>
#include <string.h>

#include "conclave/evidence.h"

static int blob_eq(struct blob a, struct blob b)
{
	return a.len == b.len && (a.len == 0 || !memcmp(a.p, b.p, a.len));
}

static void round_trip_evidence(const struct evidence *ev)
{
	struct evidence again;
	uint8_t *buf;
	size_t len;

	if (evidence_encode(ev, &buf, &len) < 0)
		abort();
	if (evidence_decode(buf, len, &again, NULL) < 0)
		abort();
	if (!blob_eq(ev->quote, again.quote) || !blob_eq(ev->signature, again.signature) ||
	    !blob_eq(ev->ak_public, again.ak_public) || !blob_eq(ev->ek_cert, again.ek_cert) ||
	    !blob_eq(ev->event_log, again.event_log) ||
	    !blob_eq(ev->activation, again.activation) || ev->n_chain != again.n_chain ||
	    ev->pcr_mask != again.pcr_mask || memcmp(ev->pcrs, again.pcrs, sizeof(ev->pcrs)))
		abort();
	for (size_t i = 0; i < ev->n_chain; i++)
		if (!blob_eq(ev->ek_chain[i], again.ek_chain[i]))
			abort();
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag d;
	struct evidence ev;
	struct challenge ch;

	if (evidence_decode(data, size, &ev, &d) == 0)
		round_trip_evidence(&ev);
	if (challenge_decode(data, size, &ch, &d) == 0) {
		uint8_t *buf;
		size_t len;
		struct challenge again;

		if (challenge_encode(&ch, &buf, &len) < 0 ||
		    challenge_decode(buf, len, &again, NULL) < 0 ||
		    !blob_eq(ch.id_object, again.id_object) ||
		    !blob_eq(ch.ak_name, again.ak_name) ||
		    !blob_eq(ch.encrypted_secret, again.encrypted_secret))
			abort();
		free(buf);
	}
	return 0;
}
