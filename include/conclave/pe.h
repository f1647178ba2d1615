/* SPDX-License-Identifier: Apache-2.0 */
/* PE/COFF images (UEFI applications, UKIs, EFI-stub kernels): the headers and section table,
 * the Authenticode SHA-256 that UEFI firmware measures into PCR 4, and sections as they appear
 * once loaded. Input is untrusted: every offset is bounded; errors name the offset and field. */
#ifndef CONCLAVE_PE_H
#define CONCLAVE_PE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"

#define PE_MAX_SECTIONS 96 /* the PE/COFF limit */
#define PE_DIR_SECURITY 4  /* data directory index of the certificate table */

struct pe_section {
	char name[9];		  /* the 8-byte short name, NUL-terminated */
	uint32_t virtual_size;	  /* bytes the section occupies once loaded */
	uint32_t virtual_address; /* RVA */
	uint32_t raw_size;	  /* SizeOfRawData: bytes in the file */
	uint32_t raw_offset;	  /* PointerToRawData */
};

struct pe_image {
	const uint8_t *buf; /* the whole file; must outlive the struct */
	size_t len;
	uint16_t machine;
	uint16_t magic;	       /* 0x10b PE32, 0x20b PE32+ */
	uint32_t checksum_off; /* file offset of OptionalHeader.CheckSum */
	uint32_t n_dirs;       /* NumberOfRvaAndSizes (capped at 16) */
	uint32_t security_off; /* file offset of the certificate table directory entry, 0 if none */
	uint32_t cert_offset;  /* certificate table (a file offset, not an RVA) */
	uint32_t cert_size;
	uint32_t size_of_headers;
	uint32_t section_align;
	uint32_t file_align;
	uint32_t size_of_image;
	uint16_t n_sections;
	struct pe_section sections[PE_MAX_SECTIONS];
};

/* Parse the DOS stub, PE signature, COFF and optional headers and the section table. Checks
 * that headers and every section's raw data lie inside the file. -EBADMSG with d->msg =
 * "offset N: reason" on malformed input. */
int pe_parse(const uint8_t *buf, size_t len, struct pe_image *pe, struct diag *d);

/* The Authenticode SHA-256 exactly as EDK2 measures a PE image (PE/COFF spec, "Calculating the
 * PE Image Hash"): headers without CheckSum and the certificate-table entry, sections in
 * PointerToRawData order, then any bytes after them except the certificate table. */
int pe_authenticode_sha256(const struct pe_image *pe, uint8_t out[32], struct diag *d);

/* The first section whose short name equals name, or NULL. */
const struct pe_section *pe_find_section(const struct pe_image *pe, const char *name);

/* A section as a loader maps it: virtual_size bytes, the raw data followed by zeros where
 * virtual_size exceeds raw_size. *out is malloc'ed (at least 1 byte, even when *len is 0). */
int pe_section_load(const struct pe_image *pe, const struct pe_section *s, uint8_t **out,
		    size_t *len);

#endif
