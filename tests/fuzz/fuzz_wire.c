// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target: the wire frame decoder. Decoding must never crash or read beyond the
 * input, the header check must agree with the full decoder, and a decoded message must
 * survive an encode/decode round trip unchanged. */
#include <stdlib.h>
#include <string.h>

#include "conclave/wire.h"

/* Equal bytes, and present in both or in neither (an empty text is still a field). */
static int blob_eq(struct blob a, struct blob b)
{
	if (!a.p || !b.p)
		return !a.p && !b.p;
	return a.len == b.len && (a.len == 0 || !memcmp(a.p, b.p, a.len));
}

static int same(const struct wire_msg *a, const struct wire_msg *b)
{
	if (a->type != b->type || a->proto_version != b->proto_version || a->role != b->role ||
	    a->code != b->code || a->flags != b->flags || a->generation != b->generation ||
	    a->op != b->op || a->node_id != b->node_id || a->n_endpoints != b->n_endpoints)
		return 0;
	for (size_t i = 0; i < a->n_endpoints; i++)
		if (!blob_eq(a->endpoints[i], b->endpoints[i]))
			return 0;
	return blob_eq(a->challenge, b->challenge) && blob_eq(a->evidence, b->evidence) &&
	       blob_eq(a->wg_pubkey, b->wg_pubkey) && blob_eq(a->disk_uuid, b->disk_uuid) &&
	       blob_eq(a->text, b->text) && blob_eq(a->node_name, b->node_name) &&
	       blob_eq(a->key_material, b->key_material) && blob_eq(a->peer_set, b->peer_set) &&
	       blob_eq(a->cluster_id, b->cluster_id) && blob_eq(a->policy, b->policy) &&
	       blob_eq(a->signature, b->signature) && blob_eq(a->members, b->members) &&
	       blob_eq(a->ca_cert, b->ca_cert) && blob_eq(a->node_cert, b->node_cert);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_msg m, again;
	struct diag d;
	uint8_t *buf;
	size_t len;
	uint16_t type;
	uint32_t body;

	if (size >= WIRE_HEADER_SIZE && wire_decode_header(data, &type, &body, &d) == 0 &&
	    body > wire_body_max(type))
		abort();
	if (wire_decode(data, size, &m, &d) < 0)
		return 0;
	/* Whatever decodes passed the header check, within its type's limit. */
	if (wire_decode_header(data, &type, &body, NULL) < 0 || size > wire_frame_max())
		abort();
	if (wire_encode(&m, &buf, &len, &d) < 0)
		abort();
	if (wire_decode(buf, len, &again, NULL) < 0 || !same(&m, &again) || len != size)
		abort();
	free(buf);
	return 0;
}
