// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the peer-set snapshot of JOIN_RESPONSE (from the network): anything the
 * decoder accepts must encode back to the identical bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/peerset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peerset ps = { 0 };
	struct diag d;
	uint8_t *back = NULL;
	size_t len = 0;

	if (peerset_decode(data, size, &ps, &d) == 0) {
		if (peerset_encode(ps.generation, &ps.self, ps.peers, ps.n_peers, &back, &len) != 0 ||
		    len != size || memcmp(back, data, size) != 0)
			abort();
		free(back);
	}
	peerset_clear(&ps);
	return 0;
}
