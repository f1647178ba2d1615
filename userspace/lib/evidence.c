// SPDX-License-Identifier: Apache-2.0
/* Evidence and challenge documents: one tag-length-value container, two schemas. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/bytes.h"
#include "conclave/evidence.h"
#include "conclave/util.h"

struct field_rule {
	const char *name;
	size_t max;
	bool required;
	bool repeatable;
};

static const struct field_rule evidence_rules[EV_TAG_MAX] = {
	[EV_TAG_QUOTE] = { "quote", 1024, true, false },
	[EV_TAG_SIGNATURE] = { "signature", 1024, true, false },
	[EV_TAG_AK_PUBLIC] = { "AK public", 1024, true, false },
	[EV_TAG_EK_CERT] = { "EK certificate", 8192, true, false },
	[EV_TAG_EK_CHAIN] = { "EK chain certificate", 8192, false, true },
	[EV_TAG_PCRS] = { "PCR values", 4 + 24 * 32, true, false },
	[EV_TAG_EVENT_LOG] = { "event log", 1u << 20, false, false },
	[EV_TAG_ACTIVATION] = { "activation proof", 32, false, false },
};

static const struct field_rule challenge_rules[CH_TAG_MAX] = {
	[CH_TAG_ID_OBJECT] = { "credential blob", 2 + 256, true, false },
	[CH_TAG_ENCRYPTED_SECRET] = { "encrypted secret", 2 + 512, true, false },
	[CH_TAG_AK_NAME] = { "AK name", 2 + 64, true, false },
};

struct schema {
	const char *what;
	const char magic[4];
	const struct field_rule *rules;
	unsigned int n_rules;
};

static const struct schema evidence_schema = { "evidence", "CEVD", evidence_rules, EV_TAG_MAX };
static const struct schema challenge_schema = { "challenge", "CCHL", challenge_rules, CH_TAG_MAX };

/* Called once per decoded field; the callback stores it into its document. */
typedef int (*field_fn)(void *doc, uint16_t tag, struct blob b, struct diag *d);

static int tlv_decode(const struct schema *s, const uint8_t *buf, size_t len, void *doc,
		      field_fn fn, struct diag *d)
{
	struct reader r = reader_init(buf, len);
	unsigned int seen[16] = { 0 };
	const uint8_t *magic;
	uint16_t version, count;

	if (len > EVIDENCE_MAX_SIZE) {
		diag_set(d, "%s of %zu bytes exceeds the limit of %u", s->what, len,
			 EVIDENCE_MAX_SIZE);
		return -EFBIG;
	}
	if (rd_bytes(&r, 4, &magic) < 0 || rd_be16(&r, &version) < 0 || rd_be16(&r, &count) < 0) {
		diag_set(d, "offset 0: truncated %s header (%zu bytes)", s->what, len);
		return -EBADMSG;
	}
	if (memcmp(magic, s->magic, 4)) {
		diag_set(d, "offset 0: not a conclave %s document (bad magic)", s->what);
		return -EBADMSG;
	}
	if (version != EVIDENCE_VERSION) {
		diag_set(d, "offset 4: %s version %u is not supported (expected %u)", s->what,
			 version, EVIDENCE_VERSION);
		return -ENOTSUP;
	}
	for (unsigned int i = 0; i < count; i++) {
		size_t off = r.off;
		uint16_t tag;
		uint32_t flen;
		struct blob b;
		int ret;

		if (rd_be16(&r, &tag) < 0 || rd_be32(&r, &flen) < 0) {
			diag_set(d, "offset %zu: truncated field header (field %u of %u)", off,
				 i + 1, count);
			return -EBADMSG;
		}
		if (tag == 0 || tag >= s->n_rules) {
			diag_set(d, "offset %zu: unknown field tag %u", off, tag);
			return -EBADMSG;
		}
		if (flen > s->rules[tag].max) {
			diag_set(d, "offset %zu: %s of %u bytes exceeds the limit of %zu", off,
				 s->rules[tag].name, flen, s->rules[tag].max);
			return -EBADMSG;
		}
		if (seen[tag] && !s->rules[tag].repeatable) {
			diag_set(d, "offset %zu: %s appears twice", off, s->rules[tag].name);
			return -EBADMSG;
		}
		if (rd_bytes(&r, flen, &b.p) < 0) {
			diag_set(d, "offset %zu: %s truncated (need %u bytes, have %zu)", off,
				 s->rules[tag].name, flen, reader_left(&r));
			return -EBADMSG;
		}
		b.len = flen;
		seen[tag]++;
		ret = fn(doc, tag, b, d);
		if (ret < 0) {
			diag_prefix(d, "offset %zu: %s", off, s->rules[tag].name);
			return ret;
		}
	}
	if (reader_left(&r)) {
		diag_set(d, "offset %zu: %zu trailing bytes after the last field", r.off,
			 reader_left(&r));
		return -EBADMSG;
	}
	for (unsigned int tag = 1; tag < s->n_rules; tag++)
		if (s->rules[tag].required && !seen[tag]) {
			diag_set(d, "%s lacks its %s", s->what, s->rules[tag].name);
			return -EBADMSG;
		}
	return 0;
}

static void tlv_field(struct writer *w, uint16_t tag, struct blob b)
{
	if (!b.p)
		return;
	wr_be16(w, tag);
	wr_be32(w, (uint32_t)b.len);
	wr_bytes(w, b.p, b.len);
}

/* Finish a document: patch the field count into the header. */
static int tlv_finish(struct writer *w, uint16_t count, uint8_t **out, size_t *len)
{
	if (w->failed) {
		writer_free(w);
		return -ENOMEM;
	}
	w->p[6] = (uint8_t)(count >> 8);
	w->p[7] = (uint8_t)count;
	*out = w->p;
	*len = w->len;
	return 0;
}

static void tlv_start(struct writer *w, const struct schema *s)
{
	wr_bytes(w, s->magic, 4);
	wr_be16(w, EVIDENCE_VERSION);
	wr_be16(w, 0);
}

static uint16_t count_fields(const struct blob *fields, size_t n)
{
	uint16_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += fields[i].p != NULL;
	return c;
}

static int pcrs_field(struct evidence *ev, struct blob b, struct diag *d)
{
	struct reader r = reader_init(b.p, b.len);
	const uint8_t *v;

	if (rd_be32(&r, &ev->pcr_mask) < 0 || ev->pcr_mask & 0xff000000u) {
		diag_set(d, "bad PCR mask");
		return -EBADMSG;
	}
	for (unsigned int i = 0; i < 24; i++) {
		if (!(ev->pcr_mask & (1u << i)))
			continue;
		if (rd_bytes(&r, 32, &v) < 0) {
			diag_set(d, "value of PCR %u missing", i);
			return -EBADMSG;
		}
		memcpy(ev->pcrs[i], v, 32);
	}
	if (reader_left(&r)) {
		diag_set(d, "%zu bytes beyond the PCRs in the mask", reader_left(&r));
		return -EBADMSG;
	}
	return 0;
}

static int evidence_field(void *doc, uint16_t tag, struct blob b, struct diag *d)
{
	struct evidence *ev = doc;

	switch (tag) {
	case EV_TAG_QUOTE: ev->quote = b; break;
	case EV_TAG_SIGNATURE: ev->signature = b; break;
	case EV_TAG_AK_PUBLIC: ev->ak_public = b; break;
	case EV_TAG_EK_CERT: ev->ek_cert = b; break;
	case EV_TAG_EK_CHAIN:
		if (ev->n_chain == EVIDENCE_MAX_CHAIN) {
			diag_set(d, "more than %d chain certificates", EVIDENCE_MAX_CHAIN);
			return -EBADMSG;
		}
		ev->ek_chain[ev->n_chain++] = b;
		break;
	case EV_TAG_PCRS: return pcrs_field(ev, b, d);
	case EV_TAG_EVENT_LOG: ev->event_log = b; break;
	case EV_TAG_ACTIVATION:
		if (b.len != 32) {
			diag_set(d, "must be 32 bytes, not %zu", b.len);
			return -EBADMSG;
		}
		ev->activation = b;
		break;
	}
	return 0;
}

int evidence_decode(const uint8_t *buf, size_t len, struct evidence *ev, struct diag *d)
{
	memset(ev, 0, sizeof(*ev));
	return tlv_decode(&evidence_schema, buf, len, ev, evidence_field, d);
}

int evidence_encode(const struct evidence *ev, uint8_t **out, size_t *len)
{
	struct writer w = { 0 };
	uint8_t pcrbuf[4 + 24 * 32];
	struct blob pcrs = { pcrbuf, 4 };
	struct blob fields[] = { ev->quote, ev->signature, ev->ak_public, ev->ek_cert,
				 pcrs,	    ev->event_log, ev->activation };

	if (ev->n_chain > EVIDENCE_MAX_CHAIN)
		return -EINVAL;
	pcrbuf[0] = (uint8_t)(ev->pcr_mask >> 24);
	pcrbuf[1] = (uint8_t)(ev->pcr_mask >> 16);
	pcrbuf[2] = (uint8_t)(ev->pcr_mask >> 8);
	pcrbuf[3] = (uint8_t)ev->pcr_mask;
	for (unsigned int i = 0; i < 24; i++)
		if (ev->pcr_mask & (1u << i)) {
			memcpy(pcrbuf + pcrs.len, ev->pcrs[i], 32);
			pcrs.len += 32;
		}
	fields[4] = pcrs;
	tlv_start(&w, &evidence_schema);
	tlv_field(&w, EV_TAG_QUOTE, ev->quote);
	tlv_field(&w, EV_TAG_SIGNATURE, ev->signature);
	tlv_field(&w, EV_TAG_AK_PUBLIC, ev->ak_public);
	tlv_field(&w, EV_TAG_EK_CERT, ev->ek_cert);
	for (size_t i = 0; i < ev->n_chain; i++)
		tlv_field(&w, EV_TAG_EK_CHAIN, ev->ek_chain[i]);
	tlv_field(&w, EV_TAG_PCRS, pcrs);
	tlv_field(&w, EV_TAG_EVENT_LOG, ev->event_log);
	tlv_field(&w, EV_TAG_ACTIVATION, ev->activation);
	return tlv_finish(&w, (uint16_t)(count_fields(fields, ARRAY_SIZE(fields)) + ev->n_chain),
			  out, len);
}

static int challenge_field(void *doc, uint16_t tag, struct blob b, struct diag *d)
{
	struct challenge *ch = doc;

	if (tag == CH_TAG_ID_OBJECT)
		ch->id_object = b;
	else if (tag == CH_TAG_ENCRYPTED_SECRET)
		ch->encrypted_secret = b;
	else
		ch->ak_name = b;
	return 0;
}

int challenge_decode(const uint8_t *buf, size_t len, struct challenge *ch, struct diag *d)
{
	memset(ch, 0, sizeof(*ch));
	return tlv_decode(&challenge_schema, buf, len, ch, challenge_field, d);
}

int challenge_encode(const struct challenge *ch, uint8_t **out, size_t *len)
{
	struct writer w = { 0 };
	struct blob fields[] = { ch->id_object, ch->encrypted_secret, ch->ak_name };

	tlv_start(&w, &challenge_schema);
	tlv_field(&w, CH_TAG_ID_OBJECT, ch->id_object);
	tlv_field(&w, CH_TAG_ENCRYPTED_SECRET, ch->encrypted_secret);
	tlv_field(&w, CH_TAG_AK_NAME, ch->ak_name);
	return tlv_finish(&w, count_fields(fields, ARRAY_SIZE(fields)), out, len);
}
