// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the PE parser: parse, hash as the firmware would, load every section,
 * and run the UKI section measurement over whatever parses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/measure.h"
#include "conclave/pe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pe_image pe;
	struct policy_ref_event ev[32];
	struct diag d;
	unsigned int stub;
	uint8_t h[32], *sec;
	size_t n;

	if (pe_parse(data, size, &pe, &d) < 0) {
		if (strncmp(d.msg, "offset ", 7) != 0)
			__builtin_trap();
		return 0;
	}
	if (pe.n_sections > PE_MAX_SECTIONS || pe.size_of_headers > size)
		__builtin_trap();
	pe_authenticode_sha256(&pe, h, &d);
	for (uint16_t i = 0; i < pe.n_sections; i++) {
		/* keep allocations proportionate: sections may claim up to 512 MiB */
		if (pe.sections[i].virtual_size > 4 * size + 65536)
			continue;
		if (pe_section_load(&pe, &pe.sections[i], &sec, &n) == 0) {
			if (n != pe.sections[i].virtual_size)
				__builtin_trap();
			free(sec);
		}
	}
	measure_stub_version(&pe, &stub);
	for (uint16_t i = 0; i < pe.n_sections; i++)
		if (pe.sections[i].virtual_size > 4 * size + 65536)
			return 0;
	measure_uki_sections(&pe, ev, 32, &n, &d);
	return 0;
}
