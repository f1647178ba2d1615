// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the state disk's header check (luks2.h): the bytes are the start of a
 * disk the host controls. Half the inputs go in as they are (binary header parsing, checksum
 * refusal); the other half are resealed first, so that mutations reach the metadata checks
 * behind the checksums; inputs starting with '{' are metadata JSON alone. Anything accepted must
 * be exactly the layout we write. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/luks2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void accepted(const struct luks2_info *info)
{
	if (info->has_token != 0 && info->has_token != 1)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[LUKS2_HEADER_BYTES];
	uint8_t node[32] = { 0x22 };
	struct luks2_expect e = { NULL, node };
	struct luks2_info info;
	struct diag d = { { 0 } };

	if (size > 0 && data[0] == '{') {
		if (luks2_check_json((const char *)data, size, &e, &info, &d) == 0)
			accepted(&info);
		return 0;
	}
	if (luks2_check(data, size, &e, &info, &d) == 0)
		accepted(&info);
	if (size < 1 + LUKS2_HDR_SIZE || !(data[0] & 1))
		return 0;
	/* Resealed: the first copy from the input, mirrored into the second. */
	memset(buf, 0, sizeof(buf));
	memcpy(buf, data + 1, LUKS2_HDR_SIZE);
	memcpy(buf + LUKS2_HDR_SIZE, buf, LUKS2_HDR_SIZE);
	memcpy(buf + LUKS2_HDR_SIZE, "SKUL\xba\xbe", 6);
	memset(buf + LUKS2_HDR_SIZE + 256, 0, 8);
	buf[LUKS2_HDR_SIZE + 256 + 6] = LUKS2_HDR_SIZE >> 8;
	luks2_header_seal(buf);
	luks2_header_seal(buf + LUKS2_HDR_SIZE);
	if (luks2_check(buf, sizeof(buf), &e, &info, &d) == 0)
		accepted(&info);
	return 0;
}
