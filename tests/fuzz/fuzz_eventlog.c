// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the TCG2 event log: parse, replay every bank, and compare each PCR's
 * events with themselves, which must report no difference. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/eventlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The log's own extending digests on pcr; *last gets the index of the last such event. */
static size_t own_reference(const struct eventlog *log, uint32_t pcr, uint16_t alg,
			    uint8_t (*ref)[EVENTLOG_MAX_DIGEST], long *last)
{
	size_t n = 0;

	for (size_t i = 0; i < log->n_events; i++) {
		const struct eventlog_event *ev = &log->events[i];
		const struct eventlog_digest *dg;

		if (ev->pcr != pcr || ev->type == EV_NO_ACTION)
			continue;
		dg = eventlog_event_digest(ev, alg);
		if (!dg)
			__builtin_trap(); /* parse must enforce every bank on every event */
		memcpy(ref[n++], dg->bytes, dg->size);
		*last = (long)i;
	}
	return n;
}

static void compare_with_itself(const struct eventlog *log, uint32_t pcr, uint16_t alg)
{
	uint8_t(*ref)[EVENTLOG_MAX_DIGEST] = calloc(log->n_events + 1, sizeof(*ref));
	const uint8_t(*cref)[EVENTLOG_MAX_DIGEST] = (const uint8_t(*)[EVENTLOG_MAX_DIGEST])ref;
	size_t n, at;
	long last = -1;

	if (!ref)
		return;
	n = own_reference(log, pcr, alg, ref, &last);
	if (eventlog_first_difference(log, pcr, alg, cref, n, &at) != -1 || at != n)
		__builtin_trap();
	if (n > 0 && eventlog_first_difference(log, pcr, alg, cref, n - 1, &at) != last)
		__builtin_trap();
	if (eventlog_first_difference(log, pcr, alg, cref, n + 1, &at) != -2 || at != n)
		__builtin_trap();
	free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t pcrs[PCR_COUNT][EVENTLOG_MAX_DIGEST];
	struct eventlog log;
	struct diag d;
	size_t len;

	if (eventlog_parse(data, size, &log, &d) < 0) {
		if (strncmp(d.msg, "offset ", 7) != 0)
			__builtin_trap();
		return 0;
	}
	/* A log may lack the SHA-256 bank (its Spec ID table decides): compare only banks it has.
	 */
	bool has_sha256 = eventlog_replay(&log, TPM_ALG_SHA256, pcrs, &len) == 0;

	for (uint32_t i = 0; i < log.n_algs; i++)
		eventlog_replay(&log, log.algs[i], pcrs, &len);
	for (size_t i = 0; i < log.n_events; i++)
		eventlog_type_name(log.events[i].type);
	if (has_sha256)
		compare_with_itself(&log, size ? data[size - 1] % PCR_COUNT : 0, TPM_ALG_SHA256);
	if (log.n_algs > 0)
		compare_with_itself(&log, size % PCR_COUNT, log.algs[0]);
	eventlog_free(&log);
	return 0;
}
