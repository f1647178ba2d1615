/* SPDX-License-Identifier: Apache-2.0 */
/* TCG2 crypto-agile UEFI event log (TCG PC Client PFP): parse, replay per bank, compare.
 * Input is untrusted: every length is bounded, every error names the byte offset and reason. */
#ifndef CONCLAVE_EVENTLOG_H
#define CONCLAVE_EVENTLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"

#define PCR_COUNT		24
#define EVENTLOG_MAX_SIZE	(1u << 20) /* larger logs are refused as oversized */
#define EVENTLOG_MAX_EVENTS	8192
#define EVENTLOG_MAX_EVENT_DATA (1u << 16)
#define EVENTLOG_MAX_ALGS	8
#define EVENTLOG_MAX_DIGEST	64

#define EV_NO_ACTION 0x00000003u
#define EV_SEPARATOR 0x00000004u
#define EV_EVENT_TAG 0x00000006u

#define TPM_ALG_SHA1   0x0004
#define TPM_ALG_SHA256 0x000b
#define TPM_ALG_SHA384 0x000c
#define TPM_ALG_SHA512 0x000d

struct eventlog_digest {
	uint16_t alg;
	uint16_t size;
	uint8_t bytes[EVENTLOG_MAX_DIGEST];
};

struct eventlog_event {
	size_t offset; /* byte offset of the record in the log */
	uint32_t pcr;
	uint32_t type;
	uint32_t n_digests;
	struct eventlog_digest digests[EVENTLOG_MAX_ALGS];
	const uint8_t *data; /* points into the buffer given to eventlog_parse */
	uint32_t data_len;
};

struct eventlog {
	uint32_t n_algs; /* from the Spec ID event */
	uint16_t algs[EVENTLOG_MAX_ALGS];
	uint16_t alg_sizes[EVENTLOG_MAX_ALGS];
	uint8_t startup_locality; /* from a StartupLocality EV_NO_ACTION on PCR 0, else 0 */
	size_t n_events;	  /* crypto-agile events after the Spec ID header */
	struct eventlog_event *events;
};

/* Parse a whole log. The buffer must outlive the result (events point into it).
 * -EBADMSG (truncated/inconsistent), -EFBIG (oversized) or -ENOTSUP (unknown algorithm),
 * with d->msg = "offset N: reason". */
int eventlog_parse(const uint8_t *buf, size_t len, struct eventlog *log, struct diag *d);

void eventlog_free(struct eventlog *log);

/* Digest of alg carried by ev, or NULL. */
const struct eventlog_digest *eventlog_event_digest(const struct eventlog_event *ev, uint16_t alg);

/* Replay every extending event into pcrs[] for bank alg (digest size in *size).
 * PCR 0 starts at the StartupLocality value; EV_NO_ACTION never extends. -ENOENT if the
 * log has no such bank. */
int eventlog_replay(const struct eventlog *log, uint16_t alg,
		    uint8_t pcrs[PCR_COUNT][EVENTLOG_MAX_DIGEST], size_t *size);

/* Index (into log->events) of the first event on pcr whose alg digest differs from the
 * reference sequence ref[0..n_ref) of digests for that PCR (in order), or whose count
 * differs; -1 if they are the same. *ref_index gets the position in ref. */
long eventlog_first_difference(const struct eventlog *log, uint32_t pcr, uint16_t alg,
			       const uint8_t (*ref)[EVENTLOG_MAX_DIGEST], size_t n_ref,
			       size_t *ref_index);

/* Human name of an event type ("EV_SEPARATOR", ...) or NULL. */
const char *eventlog_type_name(uint32_t type);

#endif
