// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the node channel framing: decode arbitrary text; whatever decodes must
 * encode back to exactly the input (the format has one canonical form). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const labels[] = { "EVIDENCE", "CHALLENGE" };
	struct diag d;
	uint8_t *out;
	char *text;
	size_t len, tlen;

	for (size_t i = 0; i < 2; i++) {
		if (frame_decode((const char *)data, size, labels[i], 1u << 16, &out, &len, &d) <
		    0) {
			if (strncmp(d.msg, "line ", 5) != 0)
				__builtin_trap();
			continue;
		}
		if (frame_encode(labels[i], out, len, &text, &tlen) < 0)
			__builtin_trap();
		if (tlen != size || memcmp(text, data, size) != 0)
			__builtin_trap();
		free(text);
		free(out);
	}
	return 0;
}
