// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the member list `conclavectl verify` receives (from the network):
 * anything the decoder accepts must encode back to the identical bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/clusterca.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct memberlist l;
	struct diag d;
	uint8_t *back = NULL;
	size_t len = 0;

	if (memberlist_decode(data, size, &l, &d) == 0) {
		if (memberlist_encode(&l, &back, &len) != 0 || len != size ||
		    memcmp(back, data, size) != 0)
			abort();
		free(back);
	}
	memberlist_free(&l);
	return 0;
}
