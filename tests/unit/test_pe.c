// SPDX-License-Identifier: Apache-2.0
/* Unit tests for PE parsing, the Authenticode hash and the UKI measurement prediction.
 * Independent references: osslsigncode's digest of the installed systemd stub, signed at
 * setup with a throwaway key (tests/tools/sign-stub), and digests observed in
 * real OVMF + swtpm boot logs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "conclave/eventlog.h"
#include "conclave/measure.h"
#include "conclave/pe.h"
#include "conclave/util.h"
#include "swtpm_harness.h"

/* The installed systemd stub, signed afresh by osslsigncode with a throwaway key, and
 * osslsigncode's "Calculated message digest" of it (tests/tools/sign-stub, run at setup). */
static char signed_dir[64], signed_stub[128], signed_digest[65];
/* Debian's 6.1.0-56 kernel: osslsigncode's digest, and PCR 4's second application in
 * tests/data/eventlogs/eventlog-uki.bin (the kernel inside the UKI that was booted). */
#define KERNEL_61056_DIGEST "6b1bf35c3bee9918250f593a6fff889c75c1e239cd2fe9e5bb0cd3de9dcb8e51"
/* LOADED_IMAGE::LoadOptions digest from a real boot of a UKI with this .cmdline. */
#define NODE_CMDLINE	    "console=ttyS0 panic=-1 loglevel=4"
#define NODE_CMDLINE_DIGEST "67d05a28a260accb023505bb8a960730189fa5d64bca4335d738e041c04657ef"

static void assert_hex(const uint8_t d[32], const char *want)
{
	char hex[65];

	hex_encode(d, 32, hex);
	assert_string_equal(hex, want);
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
	assert_int_equal(EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL), 1);
}

static uint8_t *load(const char *rel, size_t *len)
{
	char path[4096];
	uint8_t *buf = NULL;

	assert_int_equal(read_file(test_path(rel, path, sizeof(path)), 1u << 26, &buf, len), 0);
	return buf;
}

/* ---- a synthetic PE32+ builder ------------------------------------------------------------ */

#define HDRS	0x400
#define OPT	(0x40 + 4 + 20)
#define OPTSIZE 240
#define TABLE	(OPT + OPTSIZE)
#define SECDIR	(OPT + 112 + 4 * 8)

struct sec {
	const char *name;
	const void *data;
	uint32_t len;	/* raw bytes */
	uint32_t vsize; /* 0: same as len */
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

/* Sections are laid out in the file in reverse table order (so the table is not sorted by
 * raw offset), then `trailer` bytes of 0xee, then cert_len bytes of certificate table. */
static uint8_t *build_pe(const struct sec *s, int n, size_t trailer, size_t cert_len, size_t *len)
{
	size_t off = HDRS, total, raw[8];
	uint32_t rva = 0x1000;
	uint8_t *p;

	for (int i = n - 1; i >= 0; i--) {
		raw[i] = off;
		off += (s[i].len + 0x1ff) & ~0x1ffu;
	}
	total = off + trailer + cert_len;
	p = calloc(1, total);
	assert_non_null(p);
	p[0] = 'M';
	p[1] = 'Z';
	put32(p + 0x3c, 0x40);
	memcpy(p + 0x40, "PE\0\0", 4);
	put16(p + 0x44, 0x8664);
	put16(p + 0x46, (uint16_t)n);
	put32(p + 0x48, 0x12345678); /* TimeDateStamp: hashed */
	put16(p + 0x54, OPTSIZE);
	put16(p + OPT, 0x20b);
	put32(p + OPT + 32, 0x1000);
	put32(p + OPT + 36, 0x200);
	put32(p + OPT + 60, HDRS);
	put32(p + OPT + 64, 0xdeadbeef); /* CheckSum: not hashed */
	put32(p + OPT + 108, 16);
	for (int i = 0; i < n; i++) {
		uint8_t *h = p + TABLE + 40 * i;
		uint32_t vs = s[i].vsize ? s[i].vsize : s[i].len;

		strncpy((char *)h, s[i].name, 8);
		put32(h + 8, vs);
		put32(h + 12, rva);
		put32(h + 16, (s[i].len + 0x1ff) & ~0x1ffu);
		put32(h + 20, (uint32_t)raw[i]);
		memcpy(p + raw[i], s[i].data, s[i].len);
		rva += (vs + 0xfff) & ~0xfffu;
	}
	put32(p + OPT + 56, rva); /* SizeOfImage */
	memset(p + off, 0xee, trailer);
	if (cert_len) {
		put32(p + SECDIR, (uint32_t)(off + trailer));
		put32(p + SECDIR + 4, (uint32_t)cert_len);
		memset(p + off + trailer, 0xcc, cert_len);
	}
	*len = total;
	return p;
}

/* ---- PE and Authenticode ------------------------------------------------------------------ */

static int sign_stub(void **state)
{
	char tool[4096], cmd[8192], path[128];
	uint8_t *digest;
	size_t len;

	snprintf(signed_dir, sizeof(signed_dir), "/tmp/conclave-pe-XXXXXX");
	if (!mkdtemp(signed_dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "'%s' '%s'",
		 test_path("tests/tools/sign-stub", tool, sizeof(tool)), signed_dir);
	snprintf(signed_stub, sizeof(signed_stub), "%s/signed.efi", signed_dir);
	snprintf(path, sizeof(path), "%s/signed.digest", signed_dir);
	if (system(cmd) != 0 || read_file(path, 65, &digest, &len) < 0)
		return -1;
	memcpy(signed_digest, digest, 64);
	signed_digest[64] = '\0';
	free(digest);
	return 0;
}

static int remove_signed(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", signed_dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void authenticode_matches_osslsigncode_on_a_signed_stub(void **state)
{
	struct pe_image pe;
	struct diag d = { { 0 } };
	uint8_t h[32], *buf;
	size_t len;

	assert_int_equal(read_file(signed_stub, 1u << 26, &buf, &len), 0);
	assert_int_equal(pe_parse(buf, len, &pe, &d), 0);
	assert_true(pe.cert_size > 0);
	assert_int_equal(pe.cert_offset + pe.cert_size, len);
	assert_int_equal(pe_authenticode_sha256(&pe, h, &d), 0);
	assert_hex(h, signed_digest);
	free(buf);
}

static void stripping_the_signature_keeps_the_hash(void **state)
{
	struct pe_image pe;
	struct diag d = { { 0 } };
	uint8_t h[32], *buf;
	size_t len;

	assert_int_equal(read_file(signed_stub, 1u << 26, &buf, &len), 0);
	assert_int_equal(pe_parse(buf, len, &pe, &d), 0);
	/* drop the certificate table, its directory entry and the CheckSum: nothing hashed */
	len = pe.cert_offset;
	memset(buf + pe.security_off, 0, 8);
	memset(buf + pe.checksum_off, 0, 4);
	assert_int_equal(pe_parse(buf, len, &pe, &d), 0);
	assert_int_equal(pe.cert_size, 0);
	assert_int_equal(pe_authenticode_sha256(&pe, h, &d), 0);
	assert_hex(h, signed_digest);
	free(buf);
}

static void authenticode_hashes_the_spec_ranges_of_a_crafted_image(void **state)
{
	static const char a[] = "first section", b[] = "second, longer section data";
	const struct sec s[] = { { ".text", a, sizeof(a), 0 }, { ".data", b, sizeof(b), 0 } };
	struct pe_image pe;
	struct diag d = { { 0 } };
	uint8_t h[32], want[32], *buf;
	size_t len, off_a, off_b, end;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	buf = build_pe(s, 2, 100, 64, &len);
	assert_int_equal(pe_parse(buf, len, &pe, &d), 0);
	assert_int_equal(pe_authenticode_sha256(&pe, h, &d), 0);
	/* by hand: headers without CheckSum and the certificate entry; .data (lower raw offset)
	 * before .text; the 100 trailing bytes; not the certificate table */
	off_b = HDRS;
	off_a = HDRS + 0x200;
	end = off_a + 0x200;
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, buf, OPT + 64);
	EVP_DigestUpdate(ctx, buf + OPT + 68, SECDIR - (OPT + 68));
	EVP_DigestUpdate(ctx, buf + SECDIR + 8, HDRS - (SECDIR + 8));
	EVP_DigestUpdate(ctx, buf + off_b, 0x200);
	EVP_DigestUpdate(ctx, buf + off_a, 0x200);
	EVP_DigestUpdate(ctx, buf + end, 100);
	EVP_DigestFinal_ex(ctx, want, NULL);
	EVP_MD_CTX_free(ctx);
	assert_memory_equal(h, want, 32);
	/* the CheckSum and the certificate's bytes do not matter; the timestamp does */
	buf[OPT + 64] ^= 0xff;
	buf[len - 1] ^= 0xff;
	assert_int_equal(pe_authenticode_sha256(&pe, h, &d), 0);
	assert_memory_equal(h, want, 32);
	buf[0x48] ^= 0xff;
	assert_int_equal(pe_authenticode_sha256(&pe, h, &d), 0);
	assert_memory_not_equal(h, want, 32);
	free(buf);
}

static void debian_kernel_hash_matches_the_boot_log(void **state)
{
	static const char kernel[] = "/boot/vmlinuz-6.1.0-56-amd64";
	struct pe_image pe;
	struct diag d = { { 0 } };
	uint8_t h[32], *buf = NULL;
	size_t len;

	if (access(kernel, R_OK) != 0)
		skip(); /* the fixture's kernel is not installed on this machine */
	assert_int_equal(read_file(kernel, 1u << 26, &buf, &len), 0);
	assert_int_equal(pe_parse(buf, len, &pe, &d), 0);
	assert_int_equal(pe_authenticode_sha256(&pe, h, &d), 0);
	assert_hex(h, KERNEL_61056_DIGEST);
	free(buf);
}

static void section_loads_zero_filled_to_its_virtual_size(void **state)
{
	static const char a[] = "abc";
	const struct sec s[] = { { ".osrel", a, 3, 0 }, { ".big", a, 3, 0x2000 } };
	struct pe_image pe;
	struct diag d = { { 0 } };
	uint8_t *buf, *data;
	size_t len, n;

	buf = build_pe(s, 2, 0, 0, &len);
	assert_int_equal(pe_parse(buf, len, &pe, &d), 0);
	assert_null(pe_find_section(&pe, ".initrd"));
	assert_int_equal(pe_section_load(&pe, pe_find_section(&pe, ".osrel"), &data, &n), 0);
	assert_int_equal(n, 3); /* VirtualSize, not the 0x200 of raw data */
	assert_memory_equal(data, "abc", 3);
	free(data);
	assert_int_equal(pe_section_load(&pe, pe_find_section(&pe, ".big"), &data, &n), 0);
	assert_int_equal(n, 0x2000);
	assert_memory_equal(data, "abc", 3);
	for (size_t i = 0x200; i < n; i++)
		assert_int_equal(data[i], 0);
	free(data);
	free(buf);
}

static void malformed_images_are_refused_with_an_offset(void **state)
{
	static const char a[] = "x";
	const struct sec s[] = { { ".text", a, 1, 0 } };
	struct pe_image pe;
	struct diag d = { { 0 } };
	uint8_t *buf;
	size_t len;

	buf = build_pe(s, 1, 0, 0, &len);
	assert_int_equal(pe_parse(buf, 10, &pe, &d), -EBADMSG);
	assert_string_equal(d.msg, "offset 0: no MZ (DOS) header");
	put32(buf + 0x3c, 0x7fffffff);
	assert_int_equal(pe_parse(buf, len, &pe, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "e_lfanew"));
	put32(buf + 0x3c, 0x40);
	put32(buf + TABLE + 20, (uint32_t)len); /* section data past the end */
	assert_int_equal(pe_parse(buf, len, &pe, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "outside the file"));
	put32(buf + TABLE + 20, HDRS);
	put32(buf + SECDIR, 0x10);
	put32(buf + SECDIR + 4, (uint32_t)len); /* certificate table past the end */
	assert_int_equal(pe_parse(buf, len, &pe, &d), -EBADMSG);
	put32(buf + SECDIR + 4, 0);
	put16(buf + OPT, 0x107); /* ROM image magic */
	assert_int_equal(pe_parse(buf, len, &pe, &d), -EBADMSG);
	assert_non_null(strstr(d.msg, "magic"));
	free(buf);
}

/* ---- the UKI prediction ---------------------------------------------------------------- */

static const char kernel_blob[] = "not a real kernel";

/* A tiny UKI: sections in file order .initrd, .linux, .cmdline, .osrel, .sdmagic (the
 * stub measures them in its own order). */
static uint8_t *build_uki(const char *stub, size_t *len)
{
	static const char cmd[] = NODE_CMDLINE, osrel[] = "ID=conclave\n", initrd[] = "070701";
	uint8_t *inner, *uki;
	size_t inner_len;
	const struct sec k[] = { { ".text", kernel_blob, sizeof(kernel_blob), 0 } };

	inner = build_pe(k, 1, 0, 0, &inner_len);
	{
		const struct sec s[] = {
			{ ".sdmagic", stub, (uint32_t)strlen(stub), 0 },
			{ ".osrel", osrel, sizeof(osrel) - 1, 0 },
			{ ".cmdline", cmd, sizeof(cmd) - 1, 0 },
			{ ".linux", inner, (uint32_t)inner_len, 0 },
			{ ".initrd", initrd, sizeof(initrd) - 1, 0 },
		};

		uki = build_pe(s, 5, 0, 0, len);
	}
	free(inner);
	return uki;
}

static void load_reference(struct eventlog *log, uint8_t **buf)
{
	size_t len;
	struct diag d = { { 0 } };

	*buf = load("tests/data/eventlogs/eventlog-uki.bin", &len);
	assert_int_equal(eventlog_parse(*buf, len, log, &d), 0);
}

static void load_options_digest_matches_a_real_boot(void **state)
{
	uint8_t h[32];

	assert_int_equal(
	    measure_load_options_digest((const uint8_t *)NODE_CMDLINE, strlen(NODE_CMDLINE), h), 0);
	assert_hex(h, NODE_CMDLINE_DIGEST);
	assert_int_equal(measure_load_options_digest((const uint8_t *)"caf\xc3\xa9", 5, h),
			 -EINVAL);
}

static void uki_sections_are_measured_in_stub_order_name_then_data(void **state)
{
	static const char *const order[] = { ".linux", ".osrel", ".cmdline", ".initrd" };
	struct policy_ref_event ev[16];
	struct pe_image pe;
	struct diag d = { { 0 } };
	uint8_t *uki, h[32];
	size_t len, n;

	uki = build_uki("#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####", &len);
	assert_int_equal(pe_parse(uki, len, &pe, &d), 0);
	assert_int_equal(measure_uki_sections(&pe, ev, 16, &n, &d), 0);
	assert_int_equal(n, 8); /* .sdmagic is not measured */
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(ev[2 * i].pcr, 11);
		assert_int_equal(ev[2 * i].type, EV_IPL);
		sha256(order[i], strlen(order[i]) + 1, h);
		assert_memory_equal(ev[2 * i].digest, h, 32);
	}
	sha256(NODE_CMDLINE, strlen(NODE_CMDLINE), h); /* the section as loaded: no padding */
	assert_memory_equal(ev[5].digest, h, 32);
	free(uki);
}

static void prediction_swaps_the_reference_applications_for_this_image(void **state)
{
	struct eventlog ref;
	struct policy p;
	struct pe_image pe;
	struct diag d = { { 0 } };
	uint8_t *uki, *refbuf, h[32];
	size_t len, n4 = 0, n9 = 0;

	load_reference(&ref, &refbuf);
	uki = build_uki("#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####", &len);
	assert_int_equal(measure_predict(uki, len, &ref, &p, &d), 0);
	assert_int_equal(pe_parse(uki, len, &pe, &d), 0);
	for (size_t i = 0; i < p.n_reference; i++) {
		const struct policy_ref_event *e = &p.reference[i];

		assert_true(e->pcr <= 11 && e->pcr != 10);
		if (e->pcr == 4 && e->type == EV_EFI_BOOT_SERVICES_APPLICATION && n4++ == 0) {
			assert_int_equal(pe_authenticode_sha256(&pe, h, &d), 0);
			assert_memory_equal(e->digest, h, 32); /* the UKI, not the reference's */
		}
		if (e->pcr == 9 && n9++ == 1) {
			sha256("070701", 6, h);
			assert_memory_equal(e->digest, h, 32); /* the initrd */
		}
	}
	assert_int_equal(n4, 2);
	assert_int_equal(n9, 2);
	/* firmware PCRs come from the reference boot's values */
	assert_hex(p.pcrs[0].expected,
		   "177e29c417b6b61c7cf46ed30b4468931f58642527a268b556254e39b941ec6a");
	assert_hex(p.pcrs[7].expected,
		   "65caf8dd1e0ea7a6347b635d2b379c93b9a1351edc2afc3ecda700e534eb3068");
	for (int i = 12; i <= 14; i++) {
		assert_true(p.pcrs[i].set);
		memset(h, 0, 32);
		assert_memory_equal(p.pcrs[i].expected, h, 32);
	}
	assert_false(p.pcrs[10].set);
	policy_free(&p);
	eventlog_free(&ref);
	free(refbuf);
	free(uki);
}

static void prediction_refuses_unknown_stubs_and_direct_boot_references(void **state)
{
	struct eventlog ref, direct;
	struct policy p;
	struct diag d = { { 0 } };
	uint8_t *uki, *refbuf, *dbuf;
	size_t len, dlen;

	load_reference(&ref, &refbuf);
	uki = build_uki("#### LoaderInfo: systemd-stub 255.4 ####", &len);
	assert_int_equal(measure_predict(uki, len, &ref, &p, &d), -ENOTSUP);
	assert_non_null(strstr(d.msg, "255"));
	free(uki);
	uki = build_uki("#### LoaderInfo: systemd-stub 252.39 ####", &len);
	dbuf = load("tests/data/eventlogs/eventlog-direct.bin", &dlen);
	assert_int_equal(eventlog_parse(dbuf, dlen, &direct, &d), 0);
	assert_int_equal(measure_predict(uki, len, &direct, &p, &d), -EINVAL);
	assert_non_null(strstr(d.msg, "UKI boot"));
	eventlog_free(&direct);
	eventlog_free(&ref);
	free(dbuf);
	free(refbuf);
	free(uki);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(authenticode_matches_osslsigncode_on_a_signed_stub),
		cmocka_unit_test(stripping_the_signature_keeps_the_hash),
		cmocka_unit_test(authenticode_hashes_the_spec_ranges_of_a_crafted_image),
		cmocka_unit_test(debian_kernel_hash_matches_the_boot_log),
		cmocka_unit_test(section_loads_zero_filled_to_its_virtual_size),
		cmocka_unit_test(malformed_images_are_refused_with_an_offset),
		cmocka_unit_test(load_options_digest_matches_a_real_boot),
		cmocka_unit_test(uki_sections_are_measured_in_stub_order_name_then_data),
		cmocka_unit_test(prediction_swaps_the_reference_applications_for_this_image),
		cmocka_unit_test(prediction_refuses_unknown_stubs_and_direct_boot_references),
	};

	return cmocka_run_group_tests(tests, sign_stub, remove_signed);
}
