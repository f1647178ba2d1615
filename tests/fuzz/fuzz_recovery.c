// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the recovery-file parser (operator input): anything it accepts must
 * write back to the identical bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conclave/kms.h"
#include "conclave/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const struct kms *k, const uint8_t *data, size_t size)
{
	char path[64];
	uint8_t *back;
	size_t len;

	snprintf(path, sizeof(path), "/tmp/fuzz-recovery-%d", (int)getpid());
	unlink(path);
	if (kms_recovery_write(k, path, NULL) != 0)
		abort();
	if (read_file(path, 4096, &back, &len) != 0)
		abort();
	unlink(path);
	if (len != size || memcmp(back, data, size) != 0)
		abort();
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kms *k = NULL;
	struct diag d;

	if (kms_recovery_parse(data, size, &k, &d) == 0) {
		round_trip(k, data, size);
		kms_free(k);
	}
	return 0;
}
