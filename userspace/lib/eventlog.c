// SPDX-License-Identifier: Apache-2.0
/* TCG2 crypto-agile event log (TCG PC Client PFP 1.05+, section 10): a legacy SHA-1 record
 * carrying the Spec ID event, then TCG_PCR_EVENT2 records whose digest sizes come only from the
 * Spec ID table. The log crosses a trust boundary, so every read is bounded and every refusal
 * names the byte offset it happened at. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conclave/bytes.h"
#include "conclave/eventlog.h"
#include "conclave/util.h"

#define SPEC_ID_SIGNATURE	   "Spec ID Event03" /* 16 bytes with its NUL */
#define STARTUP_LOCALITY_SIGNATURE "StartupLocality" /* 16 bytes with its NUL */
#define SIGNATURE_LEN		   16
#define LEGACY_DIGEST_LEN	   20 /* the first record is a SHA-1 TCG_PCR_EVENT */
#define EVENTS_INITIAL		   64

/* Algorithms whose digest size is fixed by their definition; the Spec ID table must agree. */
static const struct {
	uint16_t alg;
	uint16_t size;
	const char *name; /* OpenSSL name, for replay */
} known_algs[] = {
	{ TPM_ALG_SHA1, 20, "SHA1" },
	{ TPM_ALG_SHA256, 32, "SHA256" },
	{ TPM_ALG_SHA384, 48, "SHA384" },
	{ TPM_ALG_SHA512, 64, "SHA512" },
	{ 0x0012, 32, "SM3" },
	{ 0x0027, 32, "SHA3-256" },
	{ 0x0028, 48, "SHA3-384" },
	{ 0x0029, 64, "SHA3-512" },
};

/* A bounded reader whose offsets are reported relative to the start of the whole log. */
struct cursor {
	struct reader r;
	size_t base; /* log offset of r.p[0] */
	struct diag *d;
};

static size_t cur_off(const struct cursor *c)
{
	return c->base + c->r.off;
}

static int truncated(const struct cursor *c, const char *what, size_t need)
{
	diag_set(c->d, "offset %zu: truncated %s (need %zu bytes, have %zu)", cur_off(c), what,
		 need, reader_left(&c->r));
	return -EBADMSG;
}

static int get_bytes(struct cursor *c, size_t n, const char *what, const uint8_t **out)
{
	if (rd_bytes(&c->r, n, out) < 0)
		return truncated(c, what, n);
	return 0;
}

static int get_le32(struct cursor *c, const char *what, uint32_t *v)
{
	if (rd_le32(&c->r, v) < 0)
		return truncated(c, what, 4);
	return 0;
}

static int get_le16(struct cursor *c, const char *what, uint16_t *v)
{
	if (rd_le16(&c->r, v) < 0)
		return truncated(c, what, 2);
	return 0;
}

static int get_u8(struct cursor *c, const char *what, uint8_t *v)
{
	if (rd_u8(&c->r, v) < 0)
		return truncated(c, what, 1);
	return 0;
}

static int known_size(uint16_t alg)
{
	for (size_t i = 0; i < ARRAY_SIZE(known_algs); i++)
		if (known_algs[i].alg == alg)
			return known_algs[i].size;
	return -1;
}

/* Position of alg in the Spec ID table, or -1. */
static int table_index(const struct eventlog *log, uint16_t alg)
{
	for (uint32_t i = 0; i < log->n_algs; i++)
		if (log->algs[i] == alg)
			return (int)i;
	return -1;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

/* One {algorithmId, digestSize} entry of the Spec ID table. */
static int parse_alg_entry(struct cursor *c, struct eventlog *log, uint32_t i)
{
	size_t at = cur_off(c);
	uint16_t alg, size;
	int ret, want;

	ret = get_le16(c, "Spec ID algorithm id", &alg);
	if (ret < 0)
		return ret;
	ret = get_le16(c, "Spec ID digest size", &size);
	if (ret < 0)
		return ret;
	if (table_index(log, alg) >= 0) {
		diag_set(c->d, "offset %zu: algorithm 0x%04x listed twice in the Spec ID table", at,
			 alg);
		return -EBADMSG;
	}
	if (size == 0 || size > EVENTLOG_MAX_DIGEST) {
		diag_set(c->d, "offset %zu: digest size %u of algorithm 0x%04x is outside 1..%d",
			 at, size, alg, EVENTLOG_MAX_DIGEST);
		return -EBADMSG;
	}
	want = known_size(alg);
	if (want >= 0 && want != size) {
		diag_set(c->d,
			 "offset %zu: Spec ID table gives algorithm 0x%04x %u bytes, it has %d", at,
			 alg, size, want);
		return -EBADMSG;
	}
	log->algs[i] = alg;
	log->alg_sizes[i] = size;
	log->n_algs = i + 1;
	return 0;
}

/* TCG_EfiSpecIDEventStruct, which must fill the event data exactly. */
static int parse_spec_id(struct cursor *c, struct eventlog *log)
{
	const uint8_t *sig, *vendor;
	uint32_t platform_class, n_algs;
	uint8_t minor, major, errata, uintn, vendor_len;
	size_t at;
	int ret;

	at = cur_off(c);
	ret = get_bytes(c, SIGNATURE_LEN, "Spec ID signature", &sig);
	if (ret < 0)
		return ret;
	if (memcmp(sig, SPEC_ID_SIGNATURE, SIGNATURE_LEN) != 0) {
		diag_set(c->d,
			 "offset %zu: Spec ID signature is not \"%s\" (not a crypto-agile log)", at,
			 SPEC_ID_SIGNATURE);
		return -EBADMSG;
	}
	if ((ret = get_le32(c, "Spec ID platform class", &platform_class)) < 0 ||
	    (ret = get_u8(c, "Spec ID version", &minor)) < 0)
		return ret;
	at = cur_off(c);
	if ((ret = get_u8(c, "Spec ID version", &major)) < 0 ||
	    (ret = get_u8(c, "Spec ID errata", &errata)) < 0)
		return ret;
	if (major != 2) {
		diag_set(c->d, "offset %zu: Spec ID major version %u, expected 2", at, major);
		return -EBADMSG;
	}
	at = cur_off(c);
	if ((ret = get_u8(c, "Spec ID uintn size", &uintn)) < 0)
		return ret;
	if (uintn != 1 && uintn != 2) {
		diag_set(c->d, "offset %zu: Spec ID uintn size %u is neither 1 nor 2", at, uintn);
		return -EBADMSG;
	}
	at = cur_off(c);
	if ((ret = get_le32(c, "Spec ID algorithm count", &n_algs)) < 0)
		return ret;
	if (n_algs == 0 || n_algs > EVENTLOG_MAX_ALGS) {
		diag_set(c->d, "offset %zu: Spec ID lists %u algorithms, expected 1..%d", at,
			 n_algs, EVENTLOG_MAX_ALGS);
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < n_algs; i++) {
		ret = parse_alg_entry(c, log, i);
		if (ret < 0)
			return ret;
	}
	if ((ret = get_u8(c, "Spec ID vendor info size", &vendor_len)) < 0 ||
	    (ret = get_bytes(c, vendor_len, "Spec ID vendor info", &vendor)) < 0)
		return ret;
	if (reader_left(&c->r) != 0) {
		diag_set(c->d, "offset %zu: %zu bytes left over after the Spec ID event",
			 cur_off(c), reader_left(&c->r));
		return -EBADMSG;
	}
	return 0;
}

/* Record 0: a legacy TCG_PCR_EVENT on PCR 0, EV_NO_ACTION, zero SHA-1 digest, Spec ID data. */
static int parse_header(struct cursor *c, struct eventlog *log)
{
	const uint8_t *digest, *data;
	uint32_t pcr, type, size;
	struct cursor sub;
	size_t at;
	int ret;

	if ((ret = get_le32(c, "Spec ID record PCR index", &pcr)) < 0 ||
	    (ret = get_le32(c, "Spec ID record event type", &type)) < 0 ||
	    (ret = get_bytes(c, LEGACY_DIGEST_LEN, "Spec ID record digest", &digest)) < 0)
		return ret;
	if (pcr != 0 || type != EV_NO_ACTION || !all_zero(digest, LEGACY_DIGEST_LEN)) {
		diag_set(c->d, "offset 0: first record is not a Spec ID event (PCR %u, type 0x%x)",
			 pcr, type);
		return -EBADMSG;
	}
	if ((ret = get_le32(c, "Spec ID record event size", &size)) < 0)
		return ret;
	at = cur_off(c);
	if ((ret = get_bytes(c, size, "Spec ID event", &data)) < 0)
		return ret;
	sub = (struct cursor){ .r = reader_init(data, size), .base = at, .d = c->d };
	return parse_spec_id(&sub, log);
}

/* TPML_DIGEST_VALUES: exactly the Spec ID table's algorithms, each once, sized by the table. */
static int parse_digests(struct cursor *c, const struct eventlog *log, struct eventlog_event *ev)
{
	uint32_t count;
	size_t at = cur_off(c);
	int ret;

	if ((ret = get_le32(c, "digest count", &count)) < 0)
		return ret;
	if (count != log->n_algs) {
		diag_set(c->d, "offset %zu: event carries %u digests, the Spec ID table lists %u",
			 at, count, log->n_algs);
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < count; i++) {
		struct eventlog_digest *dg = &ev->digests[i];
		const uint8_t *bytes;
		uint16_t alg;
		int t;

		at = cur_off(c);
		if ((ret = get_le16(c, "digest algorithm", &alg)) < 0)
			return ret;
		t = table_index(log, alg);
		if (t < 0) {
			diag_set(c->d,
				 "offset %zu: unknown algorithm 0x%04x (not in the Spec ID table)",
				 at, alg);
			return -ENOTSUP;
		}
		if (eventlog_event_digest(ev, alg)) {
			diag_set(c->d, "offset %zu: algorithm 0x%04x appears twice in one event",
				 at, alg);
			return -EBADMSG;
		}
		if ((ret = get_bytes(c, log->alg_sizes[t], "digest", &bytes)) < 0)
			return ret;
		dg->alg = alg;
		dg->size = log->alg_sizes[t];
		memcpy(dg->bytes, bytes, dg->size);
		ev->n_digests = i + 1;
	}
	return 0;
}

/* The StartupLocality EV_NO_ACTION on PCR 0 sets PCR 0's initial value; only once, and before
 * anything extends PCR 0, or the replay would not be what the TPM did. */
static int note_startup_locality(const struct cursor *c, struct eventlog *log,
				 const struct eventlog_event *ev, bool *seen, bool pcr0_extended)
{
	if (ev->pcr != 0 || ev->data_len < SIGNATURE_LEN ||
	    memcmp(ev->data, STARTUP_LOCALITY_SIGNATURE, SIGNATURE_LEN) != 0)
		return 0;
	if (ev->data_len != SIGNATURE_LEN + 1) {
		diag_set(c->d, "offset %zu: StartupLocality event of %u bytes, expected %d",
			 ev->offset, ev->data_len, SIGNATURE_LEN + 1);
		return -EBADMSG;
	}
	if (*seen || pcr0_extended) {
		diag_set(c->d, "offset %zu: StartupLocality event %s", ev->offset,
			 *seen ? "repeated" : "after PCR 0 was extended");
		return -EBADMSG;
	}
	*seen = true;
	log->startup_locality = ev->data[SIGNATURE_LEN];
	return 0;
}

/* One TCG_PCR_EVENT2 record. */
static int parse_event(struct cursor *c, const struct eventlog *log, struct eventlog_event *ev)
{
	size_t at;
	int ret;

	memset(ev, 0, sizeof(*ev));
	ev->offset = cur_off(c);
	if ((ret = get_le32(c, "event PCR index", &ev->pcr)) < 0)
		return ret;
	if (ev->pcr >= PCR_COUNT) {
		diag_set(c->d, "offset %zu: PCR index %u is not below %d", ev->offset, ev->pcr,
			 PCR_COUNT);
		return -EBADMSG;
	}
	if ((ret = get_le32(c, "event type", &ev->type)) < 0)
		return ret;
	if ((ret = parse_digests(c, log, ev)) < 0)
		return ret;
	at = cur_off(c);
	if ((ret = get_le32(c, "event size", &ev->data_len)) < 0)
		return ret;
	if (ev->data_len > EVENTLOG_MAX_EVENT_DATA) {
		diag_set(c->d, "offset %zu: event data of %u bytes exceeds the limit of %u", at,
			 ev->data_len, EVENTLOG_MAX_EVENT_DATA);
		return -EFBIG;
	}
	return get_bytes(c, ev->data_len, "event data", &ev->data);
}

/* Room for one more event: grows geometrically, never past EVENTLOG_MAX_EVENTS. */
static int reserve_event(struct eventlog *log, size_t *cap, size_t at, struct diag *d)
{
	struct eventlog_event *p;
	size_t n;

	if (log->n_events < *cap)
		return 0;
	if (log->n_events >= EVENTLOG_MAX_EVENTS) {
		diag_set(d, "offset %zu: more than %d events", at, EVENTLOG_MAX_EVENTS);
		return -EFBIG;
	}
	n = *cap ? *cap * 2 : EVENTS_INITIAL;
	if (n > EVENTLOG_MAX_EVENTS)
		n = EVENTLOG_MAX_EVENTS;
	p = realloc(log->events, n * sizeof(*p));
	if (!p) {
		diag_set(d, "offset %zu: out of memory for %zu events", at, n);
		return -ENOMEM;
	}
	log->events = p;
	*cap = n;
	return 0;
}

static int parse_events(struct cursor *c, struct eventlog *log)
{
	bool locality_seen = false, pcr0_extended = false;
	size_t cap = 0;
	int ret;

	while (reader_left(&c->r) > 0) {
		struct eventlog_event *ev;

		ret = reserve_event(log, &cap, cur_off(c), c->d);
		if (ret < 0)
			return ret;
		ev = &log->events[log->n_events];
		ret = parse_event(c, log, ev);
		if (ret == 0 && ev->type == EV_NO_ACTION)
			ret = note_startup_locality(c, log, ev, &locality_seen, pcr0_extended);
		if (ret < 0)
			return ret;
		if (ev->type != EV_NO_ACTION && ev->pcr == 0)
			pcr0_extended = true;
		log->n_events++;
	}
	return 0;
}

int eventlog_parse(const uint8_t *buf, size_t len, struct eventlog *log, struct diag *d)
{
	struct cursor c = { .r = reader_init(buf, len), .base = 0, .d = d };
	int ret;

	memset(log, 0, sizeof(*log));
	if (len > EVENTLOG_MAX_SIZE) {
		diag_set(d, "offset %u: log of %zu bytes exceeds the limit of %u",
			 EVENTLOG_MAX_SIZE, len, EVENTLOG_MAX_SIZE);
		return -EFBIG;
	}
	ret = parse_header(&c, log);
	if (ret == 0)
		ret = parse_events(&c, log);
	if (ret < 0)
		eventlog_free(log);
	return ret;
}

void eventlog_free(struct eventlog *log)
{
	if (!log)
		return;
	free(log->events);
	memset(log, 0, sizeof(*log));
}

const struct eventlog_digest *eventlog_event_digest(const struct eventlog_event *ev, uint16_t alg)
{
	for (uint32_t i = 0; i < ev->n_digests && i < EVENTLOG_MAX_ALGS; i++)
		if (ev->digests[i].alg == alg)
			return &ev->digests[i];
	return NULL;
}

static const char *openssl_name(uint16_t alg)
{
	for (size_t i = 0; i < ARRAY_SIZE(known_algs); i++)
		if (known_algs[i].alg == alg)
			return known_algs[i].name;
	return NULL;
}

/* PCR[i] = H(PCR[i] || digest) for every event except EV_NO_ACTION. */
static int extend_all(const struct eventlog *log, uint16_t alg, EVP_MD *md, size_t size,
		      uint8_t pcrs[PCR_COUNT][EVENTLOG_MAX_DIGEST])
{
	uint8_t cat[2 * EVENTLOG_MAX_DIGEST];

	for (size_t i = 0; i < log->n_events; i++) {
		const struct eventlog_event *ev = &log->events[i];
		const struct eventlog_digest *dg;

		if (ev->type == EV_NO_ACTION)
			continue;
		dg = eventlog_event_digest(ev, alg);
		if (!dg || dg->size != size || ev->pcr >= PCR_COUNT)
			return -EBADMSG; /* parse guarantees this; only a hand-made log gets here */
		memcpy(cat, pcrs[ev->pcr], size);
		memcpy(cat + size, dg->bytes, size);
		if (!EVP_Digest(cat, 2 * size, pcrs[ev->pcr], NULL, md, NULL))
			return -EIO;
	}
	return 0;
}

int eventlog_replay(const struct eventlog *log, uint16_t alg,
		    uint8_t pcrs[PCR_COUNT][EVENTLOG_MAX_DIGEST], size_t *size)
{
	const char *name = openssl_name(alg);
	EVP_MD *md;
	int t, ret;

	t = table_index(log, alg);
	if (t < 0)
		return -ENOENT;
	if (!name)
		return -ENOTSUP;
	md = EVP_MD_fetch(NULL, name, NULL);
	if (!md)
		return -ENOTSUP;
	if ((size_t)EVP_MD_get_size(md) != log->alg_sizes[t]) {
		EVP_MD_free(md);
		return -ENOTSUP;
	}
	memset(pcrs, 0, PCR_COUNT * sizeof(pcrs[0]));
	pcrs[0][log->alg_sizes[t] - 1] = log->startup_locality;
	*size = log->alg_sizes[t];
	ret = extend_all(log, alg, md, *size, pcrs);
	EVP_MD_free(md);
	return ret;
}

long eventlog_first_difference(const struct eventlog *log, uint32_t pcr, uint16_t alg,
			       const uint8_t (*ref)[EVENTLOG_MAX_DIGEST], size_t n_ref,
			       size_t *ref_index)
{
	size_t j = 0, dummy;

	if (!ref_index)
		ref_index = &dummy;
	for (size_t i = 0; i < log->n_events; i++) {
		const struct eventlog_event *ev = &log->events[i];
		const struct eventlog_digest *dg;

		if (ev->pcr != pcr || ev->type == EV_NO_ACTION)
			continue;
		*ref_index = j;
		if (j == n_ref)
			return (long)i; /* an event the reference does not have */
		dg = eventlog_event_digest(ev, alg);
		if (!dg || memcmp(dg->bytes, ref[j], dg->size) != 0)
			return (long)i;
		j++;
	}
	*ref_index = j;
	return j < n_ref ? -2 : -1;
}

static const char *const pfp_names[] = {
	[0x00] = "EV_PREBOOT_CERT",
	[0x01] = "EV_POST_CODE",
	[0x03] = "EV_NO_ACTION",
	[0x04] = "EV_SEPARATOR",
	[0x05] = "EV_ACTION",
	[0x06] = "EV_EVENT_TAG",
	[0x07] = "EV_S_CRTM_CONTENTS",
	[0x08] = "EV_S_CRTM_VERSION",
	[0x09] = "EV_CPU_MICROCODE",
	[0x0a] = "EV_PLATFORM_CONFIG_FLAGS",
	[0x0b] = "EV_TABLE_OF_DEVICES",
	[0x0c] = "EV_COMPACT_HASH",
	[0x0d] = "EV_IPL",
	[0x0e] = "EV_IPL_PARTITION_DATA",
	[0x0f] = "EV_NONHOST_CODE",
	[0x10] = "EV_NONHOST_CONFIG",
	[0x11] = "EV_NONHOST_INFO",
	[0x12] = "EV_OMIT_BOOT_DEVICE_EVENTS",
};

#define EV_EFI_EVENT_BASE 0x80000000u

static const char *const efi_names[] = {
	[0x01] = "EV_EFI_VARIABLE_DRIVER_CONFIG",
	[0x02] = "EV_EFI_VARIABLE_BOOT",
	[0x03] = "EV_EFI_BOOT_SERVICES_APPLICATION",
	[0x04] = "EV_EFI_BOOT_SERVICES_DRIVER",
	[0x05] = "EV_EFI_RUNTIME_SERVICES_DRIVER",
	[0x06] = "EV_EFI_GPT_EVENT",
	[0x07] = "EV_EFI_ACTION",
	[0x08] = "EV_EFI_PLATFORM_FIRMWARE_BLOB",
	[0x09] = "EV_EFI_HANDOFF_TABLES",
	[0x0a] = "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
	[0x0b] = "EV_EFI_HANDOFF_TABLES2",
	[0x0c] = "EV_EFI_VARIABLE_BOOT2",
	[0x10] = "EV_EFI_HCRTM_EVENT",
	[0xe0] = "EV_EFI_VARIABLE_AUTHORITY",
	[0xe1] = "EV_EFI_SPDM_FIRMWARE_BLOB",
	[0xe2] = "EV_EFI_SPDM_FIRMWARE_CONFIG",
};

const char *eventlog_type_name(uint32_t type)
{
	if (type < ARRAY_SIZE(pfp_names))
		return pfp_names[type];
	if (type >= EV_EFI_EVENT_BASE && type - EV_EFI_EVENT_BASE < ARRAY_SIZE(efi_names))
		return efi_names[type - EV_EFI_EVENT_BASE];
	return NULL;
}
