// SPDX-License-Identifier: Apache-2.0
/* Measurement prediction for a UKI booted by OVMF (see measure.h for what lands where). The
 * rules mirror, and only claim to mirror, the components of the node image: EDK2's PE image
 * measurement, systemd-stub 252 (src/boot/efi/stub.c, measure.c) and the Linux 6.1 EFI stub
 * (drivers/firmware/efi/libstub efi_convert_cmdline, efi_load_initrd). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conclave/measure.h"
#include "conclave/verify.h"

#define MAX_EVENTS     (POLICY_MAX_REFERENCE)
#define FIRST_STUB_PCR 9 /* the reference log is used for PCRs below this */

/* systemd 252 src/boot/efi/uki.h unified_sections[], in measurement order; .pcrsig is never
 * measured (it holds signatures of the measurements themselves). */
static const char *const stub_sections[] = {
	".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey",
};

static int sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -EIO;
}

struct events {
	struct policy_ref_event *ev;
	size_t n, max;
	struct diag *d;
};

static int add(struct events *e, uint32_t pcr, uint32_t type, const uint8_t digest[32])
{
	if (e->n == e->max) {
		diag_set(e->d, "more than %zu predicted events", e->max);
		return -E2BIG;
	}
	e->ev[e->n] = (struct policy_ref_event){ .pcr = pcr, .type = type };
	memcpy(e->ev[e->n].digest, digest, 32);
	e->n++;
	return 0;
}

int measure_stub_version(const struct pe_image *uki, unsigned int *major)
{
	static const char tag[] = "systemd-stub ";
	const struct pe_section *s = pe_find_section(uki, ".sdmagic");
	uint8_t *data = NULL;
	size_t len;
	char *p, *end;
	unsigned long v;

	if (!s || pe_section_load(uki, s, &data, &len) < 0)
		return -ENOENT;
	data[len ? len - 1 : 0] = '\0';
	p = memmem(data, len, tag, sizeof(tag) - 1);
	if (!p) {
		free(data);
		return -ENOENT;
	}
	v = strtoul(p + sizeof(tag) - 1, &end, 10);
	free(data);
	if (end == p + sizeof(tag) - 1 || v == 0 || v > 100000)
		return -ENOENT;
	*major = (unsigned int)v;
	return 0;
}

int measure_uki_sections(const struct pe_image *uki, struct policy_ref_event *ev, size_t max,
			 size_t *n, struct diag *d)
{
	struct events e = { ev, 0, max, d };
	uint8_t digest[32], *data;
	size_t len;
	int ret;

	for (size_t i = 0; i < sizeof(stub_sections) / sizeof(stub_sections[0]); i++) {
		const struct pe_section *s = pe_find_section(uki, stub_sections[i]);

		if (!s || s->virtual_size == 0) /* the stub skips empty sections */
			continue;
		/* the name, ASCII with its NUL; then the section's bytes as loaded */
		ret = sha256(stub_sections[i], strlen(stub_sections[i]) + 1, digest);
		if (ret == 0)
			ret = add(&e, 11, EV_IPL, digest);
		if (ret < 0)
			return ret;
		ret = pe_section_load(uki, s, &data, &len);
		if (ret < 0)
			return diag_set(d, "section %s: cannot load (%s)", s->name, strerror(-ret)),
			       ret;
		ret = sha256(data, len, digest);
		free(data);
		if (ret == 0)
			ret = add(&e, 11, EV_IPL, digest);
		if (ret < 0)
			return ret;
	}
	*n = e.n;
	return 0;
}

int measure_load_options_digest(const uint8_t *cmdline, size_t len, uint8_t out[32])
{
	uint8_t *wide;
	size_t n = 0;
	int ret;

	while (n < len && cmdline[n])
		n++;
	wide = calloc(n + 1, 2);
	if (!wide)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (cmdline[i] > 0x7f) {
			free(wide);
			return -EINVAL;
		}
		wide[2 * i] = cmdline[i];
	}
	ret = sha256(wide, 2 * (n + 1), out);
	free(wide);
	return ret;
}

/* PCR 9: what the kernel's EFI stub measures when systemd-stub starts it. */
static int kernel_stub_events(const struct pe_image *uki, struct events *e)
{
	const struct pe_section *cmd = pe_find_section(uki, ".cmdline");
	const struct pe_section *initrd = pe_find_section(uki, ".initrd");
	uint8_t digest[32], *data;
	size_t len;
	int ret;

	if (cmd && cmd->virtual_size) {
		ret = pe_section_load(uki, cmd, &data, &len);
		if (ret < 0)
			return diag_set(e->d, "cannot load .cmdline"), ret;
		ret = measure_load_options_digest(data, len, digest);
		free(data);
		if (ret == -EINVAL)
			return diag_set(e->d, ".cmdline is not ASCII"), ret;
		if (ret == 0)
			ret = add(e, 9, EV_EVENT_TAG, digest);
		if (ret < 0)
			return ret;
	}
	if (initrd && initrd->virtual_size) {
		ret = pe_section_load(uki, initrd, &data, &len);
		if (ret < 0)
			return diag_set(e->d, "cannot load .initrd"), ret;
		ret = sha256(data, len, digest);
		free(data);
		if (ret == 0)
			ret = add(e, 9, EV_EVENT_TAG, digest);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* The Authenticode hashes of the UKI and of the kernel in its .linux section. */
static int image_hashes(const struct pe_image *uki, uint8_t apps[2][32], struct diag *d)
{
	const struct pe_section *linux_sec = pe_find_section(uki, ".linux");
	struct pe_image *kernel;
	uint8_t *data;
	size_t len;
	int ret;

	ret = pe_authenticode_sha256(uki, apps[0], d);
	if (ret < 0)
		return diag_prefix(d, "UKI"), ret;
	if (!linux_sec || !linux_sec->virtual_size)
		return diag_set(d, "the image has no .linux section: not a UKI"), -EINVAL;
	ret = pe_section_load(uki, linux_sec, &data, &len);
	if (ret < 0)
		return diag_set(d, "cannot load .linux: %s", strerror(-ret)), ret;
	kernel = malloc(sizeof(*kernel));
	ret = kernel ? pe_parse(data, len, kernel, d) : -ENOMEM;
	if (ret == 0)
		ret = pe_authenticode_sha256(kernel, apps[1], d);
	if (ret < 0 && ret != -ENOMEM)
		diag_prefix(d, "the kernel in .linux is not a PE image the firmware can load");
	free(kernel);
	free(data);
	return ret;
}

/* Firmware events (PCRs 0-8) from the reference boot; its two applications in PCR 4 (that
 * boot's UKI and kernel) become ours. */
static int firmware_events(const struct eventlog *ref, const uint8_t apps[2][32], struct events *e)
{
	size_t n_apps = 0;
	int ret;

	for (size_t i = 0; i < ref->n_events; i++)
		n_apps += ref->events[i].pcr == 4 &&
			  ref->events[i].type == EV_EFI_BOOT_SERVICES_APPLICATION;
	if (n_apps != 2) {
		diag_set(e->d,
			 "reference log: PCR 4 has %zu EFI applications, expected 2 (a UKI and "
			 "its kernel): record the reference with a UKI boot",
			 n_apps);
		return -EINVAL;
	}
	n_apps = 0;
	for (size_t i = 0; i < ref->n_events; i++) {
		const struct eventlog_event *ev = &ref->events[i];
		const struct eventlog_digest *dg = eventlog_event_digest(ev, TPM_ALG_SHA256);

		if (ev->type == EV_NO_ACTION || ev->pcr >= FIRST_STUB_PCR)
			continue;
		if (!dg) {
			diag_set(e->d, "reference log: event %zu has no SHA-256 digest", i);
			return -EINVAL;
		}
		if (ev->pcr == 4 && ev->type == EV_EFI_BOOT_SERVICES_APPLICATION)
			ret = add(e, 4, ev->type, apps[n_apps++]);
		else
			ret = add(e, ev->pcr, ev->type, dg->bytes);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int replay(const struct policy_ref_event *ev, size_t n, uint8_t startup_locality,
		  uint8_t pcrs[POLICY_PCR_COUNT][32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ret = 0;

	if (!ctx)
		return -ENOMEM;
	memset(pcrs, 0, POLICY_PCR_COUNT * 32);
	pcrs[0][31] = startup_locality;
	for (size_t i = 0; i < n && ret == 0; i++) {
		uint8_t *p = pcrs[ev[i].pcr];

		if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
		    EVP_DigestUpdate(ctx, p, 32) != 1 ||
		    EVP_DigestUpdate(ctx, ev[i].digest, 32) != 1 ||
		    EVP_DigestFinal_ex(ctx, p, NULL) != 1)
			ret = -EIO;
	}
	EVP_MD_CTX_free(ctx);
	return ret;
}

static int predict(const struct pe_image *uki, const struct eventlog *ref, struct policy *out,
		   struct diag *d)
{
	struct events e = { .max = MAX_EVENTS, .d = d };
	uint8_t apps[2][32], pcrs[POLICY_PCR_COUNT][32];
	unsigned int stub;
	size_t n11;
	int ret;

	if (measure_stub_version(uki, &stub) < 0)
		return diag_set(d, "no systemd-stub version in .sdmagic: not a systemd UKI"),
		       -EINVAL;
	if (stub != MEASURE_SYSTEMD_STUB_VERSION)
		return diag_set(d,
				"systemd-stub %u: only the measurements of systemd-stub %d are "
				"known to this tool",
				stub, MEASURE_SYSTEMD_STUB_VERSION),
		       -ENOTSUP;
	ret = image_hashes(uki, apps, d);
	if (ret < 0)
		return ret;
	e.ev = calloc(e.max, sizeof(*e.ev));
	if (!e.ev)
		return -ENOMEM;
	ret = firmware_events(ref, apps, &e);
	if (ret == 0) {
		ret = measure_uki_sections(uki, e.ev + e.n, e.max - e.n, &n11, d);
		e.n += ret == 0 ? n11 : 0;
	}
	if (ret == 0)
		ret = kernel_stub_events(uki, &e);
	if (ret == 0)
		ret = replay(e.ev, e.n, ref->startup_locality, pcrs);
	if (ret < 0) {
		free(e.ev);
		return ret;
	}
	memset(out, 0, sizeof(*out));
	out->version = 1;
	for (unsigned int i = 0; i < POLICY_PCR_COUNT; i++) {
		if (!(LOG_COVERED_PCRS & (1u << i)))
			continue;
		out->pcrs[i].set = true;
		memcpy(out->pcrs[i].expected, pcrs[i], 32);
	}
	out->reference = e.ev;
	out->n_reference = e.n;
	return 0;
}

int measure_predict(const uint8_t *image, size_t len, const struct eventlog *ref,
		    struct policy *out, struct diag *d)
{
	struct pe_image *uki = malloc(sizeof(*uki));
	int ret;

	if (!uki)
		return -ENOMEM;
	ret = pe_parse(image, len, uki, d);
	if (ret < 0)
		diag_prefix(d, "UKI");
	else
		ret = predict(uki, ref, out, d);
	free(uki);
	return ret;
}
