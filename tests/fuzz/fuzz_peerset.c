// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the peer-set document of JOIN_RESPONSE (from the network): anything the
 * decoder accepts must encode back to the identical bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/joinclient.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct join_info j = { 0 };
	struct diag d;
	uint8_t *back = NULL;
	size_t len = 0;

	if (peerset_decode(data, size, &j, &d) == 0) {
		if (peerset_encode(j.generation, &j.self, j.peers, j.n_peers, &back, &len) != 0 ||
		    len != size || memcmp(back, data, size) != 0)
			abort();
		free(back);
	}
	join_info_clear(&j);
	return 0;
}
