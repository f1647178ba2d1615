// SPDX-License-Identifier: Apache-2.0
/* PE/COFF parsing and the Authenticode image hash, following EDK2's measurement of PE images
 * (SecurityPkg/Tcg/Tcg2Dxe/MeasureBootPeCoff.c) so that the hash equals the PCR 4 digest. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conclave/pe.h"

#define DOS_LFANEW_OFF	    0x3c
#define COFF_HEADER_LEN	    20
#define SECTION_HEADER_LEN  40
#define OPT_MAGIC_PE32	    0x10b
#define OPT_MAGIC_PE32PLUS  0x20b
#define OPT_CHECKSUM_OFF    64
#define OPT_DIRS_PE32	    96 /* NumberOfRvaAndSizes sits 4 bytes before the directories */
#define OPT_DIRS_PE32PLUS   112
#define PE_MAX_DIRS	    16
#define PE_MAX_SECTION_LOAD (512u << 20) /* refuse to materialise larger sections */

static int bad(struct diag *d, size_t off, const char *what)
{
	diag_set(d, "offset %zu: %s", off, what);
	return -EBADMSG;
}

static uint16_t le16_at(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32_at(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* [off, off + n) lies inside a buffer of len bytes, without overflow. */
static bool within(uint64_t off, uint64_t n, size_t len)
{
	return off <= len && n <= len - off;
}

static int parse_sections(const uint8_t *buf, size_t len, size_t table, struct pe_image *pe,
			  struct diag *d)
{
	if (!within(table, (uint64_t)pe->n_sections * SECTION_HEADER_LEN, len))
		return bad(d, table, "section table runs past the end of the file");
	for (uint16_t i = 0; i < pe->n_sections; i++) {
		const uint8_t *h = buf + table + (size_t)i * SECTION_HEADER_LEN;
		struct pe_section *s = &pe->sections[i];
		size_t off = table + (size_t)i * SECTION_HEADER_LEN;

		memcpy(s->name, h, 8);
		s->name[8] = '\0';
		s->virtual_size = le32_at(h + 8);
		s->virtual_address = le32_at(h + 12);
		s->raw_size = le32_at(h + 16);
		s->raw_offset = le32_at(h + 20);
		if (s->raw_size && !within(s->raw_offset, s->raw_size, len))
			return bad(d, off, "section raw data lies outside the file");
		if ((uint64_t)s->virtual_address + s->virtual_size > pe->size_of_image)
			return bad(d, off, "section extends beyond SizeOfImage");
	}
	return 0;
}

int pe_parse(const uint8_t *buf, size_t len, struct pe_image *pe, struct diag *d)
{
	uint32_t lfanew, dirs_off, n_dirs;
	uint16_t opt_size;
	size_t opt;

	memset(pe, 0, sizeof(*pe));
	pe->buf = buf;
	pe->len = len;
	if (len < DOS_LFANEW_OFF + 4 || buf[0] != 'M' || buf[1] != 'Z')
		return bad(d, 0, "no MZ (DOS) header");
	lfanew = le32_at(buf + DOS_LFANEW_OFF);
	if (!within(lfanew, 4 + COFF_HEADER_LEN + 2, len))
		return bad(d, DOS_LFANEW_OFF, "e_lfanew points past the end of the file");
	if (memcmp(buf + lfanew, "PE\0\0", 4) != 0)
		return bad(d, lfanew, "no PE signature");
	pe->machine = le16_at(buf + lfanew + 4);
	pe->n_sections = le16_at(buf + lfanew + 6);
	opt_size = le16_at(buf + lfanew + 20);
	if (pe->n_sections > PE_MAX_SECTIONS)
		return bad(d, lfanew + 6, "more than 96 sections");
	opt = (size_t)lfanew + 4 + COFF_HEADER_LEN;
	if (!within(opt, opt_size, len))
		return bad(d, opt, "optional header runs past the end of the file");
	if (opt_size < 2)
		return bad(d, lfanew + 20, "no optional header");
	pe->magic = le16_at(buf + opt);
	if (pe->magic == OPT_MAGIC_PE32)
		dirs_off = OPT_DIRS_PE32;
	else if (pe->magic == OPT_MAGIC_PE32PLUS)
		dirs_off = OPT_DIRS_PE32PLUS;
	else
		return bad(d, opt, "optional header magic is neither PE32 nor PE32+");
	if (opt_size < dirs_off)
		return bad(d, lfanew + 20, "optional header too short");
	pe->section_align = le32_at(buf + opt + 32);
	pe->file_align = le32_at(buf + opt + 36);
	pe->size_of_image = le32_at(buf + opt + 56);
	pe->size_of_headers = le32_at(buf + opt + 60);
	pe->checksum_off = (uint32_t)(opt + OPT_CHECKSUM_OFF);
	n_dirs = le32_at(buf + opt + dirs_off - 4);
	if (n_dirs > PE_MAX_DIRS)
		return bad(d, opt + dirs_off - 4, "NumberOfRvaAndSizes above 16");
	if ((uint64_t)dirs_off + (uint64_t)n_dirs * 8 > opt_size)
		return bad(d, opt + dirs_off - 4, "data directories exceed the optional header");
	pe->n_dirs = n_dirs;
	if (n_dirs > PE_DIR_SECURITY) {
		pe->security_off = (uint32_t)(opt + dirs_off + PE_DIR_SECURITY * 8);
		pe->cert_offset = le32_at(buf + pe->security_off);
		pe->cert_size = le32_at(buf + pe->security_off + 4);
		if (pe->cert_size && !within(pe->cert_offset, pe->cert_size, len))
			return bad(d, pe->security_off, "certificate table lies outside the file");
	}
	if (pe->size_of_headers > len)
		return bad(d, opt + 60, "SizeOfHeaders exceeds the file size");
	if (pe->size_of_headers < opt + opt_size)
		return bad(d, opt + 60, "SizeOfHeaders does not cover the optional header");
	return parse_sections(buf, len, opt + opt_size, pe, d);
}

static int hash_range(EVP_MD_CTX *ctx, const struct pe_image *pe, uint64_t from, uint64_t to)
{
	if (to < from || !within(from, to - from, pe->len))
		return -EBADMSG;
	return EVP_DigestUpdate(ctx, pe->buf + from, (size_t)(to - from)) == 1 ? 0 : -EIO;
}

/* Section indices ordered by PointerToRawData; insertion sort, stable, as EDK2 does. */
static void sort_by_raw_offset(const struct pe_image *pe, uint16_t order[PE_MAX_SECTIONS])
{
	for (uint16_t i = 0; i < pe->n_sections; i++) {
		uint16_t pos = i;

		while (pos > 0 &&
		       pe->sections[i].raw_offset < pe->sections[order[pos - 1]].raw_offset) {
			order[pos] = order[pos - 1];
			pos--;
		}
		order[pos] = i;
	}
}

static int hash_image(EVP_MD_CTX *ctx, const struct pe_image *pe, struct diag *d)
{
	uint16_t order[PE_MAX_SECTIONS];
	uint64_t hashed, cert;
	int ret;

	/* Headers, skipping CheckSum and (when present) the certificate-table entry. */
	ret = hash_range(ctx, pe, 0, pe->checksum_off);
	if (ret == 0 && pe->n_dirs <= PE_DIR_SECURITY)
		ret = hash_range(ctx, pe, pe->checksum_off + 4, pe->size_of_headers);
	else if (ret == 0) {
		ret = hash_range(ctx, pe, pe->checksum_off + 4, pe->security_off);
		if (ret == 0)
			ret = hash_range(ctx, pe, pe->security_off + 8, pe->size_of_headers);
	}
	if (ret < 0)
		return bad(d, pe->checksum_off, "headers end before CheckSum or the directories");
	hashed = pe->size_of_headers;
	sort_by_raw_offset(pe, order);
	for (uint16_t i = 0; i < pe->n_sections; i++) {
		const struct pe_section *s = &pe->sections[order[i]];

		if (s->raw_size == 0)
			continue;
		ret = hash_range(ctx, pe, s->raw_offset, (uint64_t)s->raw_offset + s->raw_size);
		if (ret < 0)
			return ret;
		hashed += s->raw_size;
	}
	/* EDK2 hashes the extra data starting at offset "bytes hashed so far", which is the end
	 * of the last section for every well-formed image. */
	if (pe->len > hashed) {
		cert = pe->n_dirs > PE_DIR_SECURITY ? pe->cert_size : 0;
		if (pe->len < hashed + cert)
			return bad(d, pe->security_off,
				   "certificate table overlaps the sections' data");
		ret = hash_range(ctx, pe, hashed, pe->len - cert);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int pe_authenticode_sha256(const struct pe_image *pe, uint8_t out[32], struct diag *d)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	int ret = -ENOMEM;

	if (!ctx)
		return ret;
	ret = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
	if (ret == 0)
		ret = hash_image(ctx, pe, d);
	if (ret == 0 && (EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != 32))
		ret = -EIO;
	EVP_MD_CTX_free(ctx);
	return ret;
}

const struct pe_section *pe_find_section(const struct pe_image *pe, const char *name)
{
	for (uint16_t i = 0; i < pe->n_sections; i++)
		if (!strncmp(pe->sections[i].name, name, 8))
			return &pe->sections[i];
	return NULL;
}

int pe_section_load(const struct pe_image *pe, const struct pe_section *s, uint8_t **out,
		    size_t *len)
{
	size_t n = s->virtual_size, copy = s->raw_size < n ? s->raw_size : n;
	uint8_t *p;

	if (n > PE_MAX_SECTION_LOAD)
		return -EFBIG;
	if (copy && !within(s->raw_offset, copy, pe->len))
		return -EBADMSG;
	p = calloc(1, n ? n : 1);
	if (!p)
		return -ENOMEM;
	if (copy)
		memcpy(p, pe->buf + s->raw_offset, copy);
	*out = p;
	*len = n;
	return 0;
}
