// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the TPM2_ActivateCredential response parser: the bytes come from the
 * TPM's transport, which a host controls for a virtual TPM. Accepted input must describe a
 * credential that fits its buffer. */
#include <stdint.h>
#include <stdlib.h>

#include "conclave/tpm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	TPM2B_DIGEST info;
	TSS2_RC rc;

	if (tpm_activate_response(data, size, &rc, &info) == 0 &&
	    (rc != TSS2_RC_SUCCESS || info.size > sizeof(info.buffer)))
		abort();
	return 0;
}
