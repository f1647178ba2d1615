// SPDX-License-Identifier: Apache-2.0
/* replay-log TCTI EVENTLOG: extend every measured event's SHA-256 digest of a TCG2 event log
 * into the TPM behind TCTI, so a host swtpm ends up with the PCRs of the boot that wrote it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/eventlog.h"
#include "conclave/tpm.h"
#include "conclave/util.h"

static int replay(struct tpm *t, const struct eventlog *log, const char *path)
{
	size_t n = 0;

	for (size_t i = 0; i < log->n_events; i++) {
		const struct eventlog_event *ev = &log->events[i];
		const struct eventlog_digest *dg;
		struct diag d = { 0 };

		if (ev->type == EV_NO_ACTION)
			continue;
		dg = eventlog_event_digest(ev, TPM_ALG_SHA256);
		if (!dg || dg->size != 32) {
			fprintf(stderr,
				"replay-log: %s: event at offset %zu has no SHA-256 digest\n", path,
				ev->offset);
			return -1;
		}
		if (tpm_pcr_extend(t, ev->pcr, dg->bytes, &d) < 0) {
			fprintf(stderr, "replay-log: %s: event at offset %zu: %s\n", path,
				ev->offset, d.msg);
			return -1;
		}
		n++;
	}
	printf("replay-log: extended %zu events from %s\n", n, path);
	return 0;
}

int main(int argc, char **argv)
{
	struct eventlog log = { 0 };
	struct tpm *t = NULL;
	struct diag d = { 0 };
	uint8_t *buf = NULL;
	size_t len;
	int ret, status = 1;

	if (argc != 3) {
		fprintf(stderr, "usage: %s TCTI EVENTLOG_FILE\n", argv[0]);
		return 2;
	}
	ret = read_file(argv[2], EVENTLOG_MAX_SIZE, &buf, &len);
	if (ret < 0) {
		fprintf(stderr, "replay-log: reading %s: %s\n", argv[2], strerror(-ret));
		return 1;
	}
	if (eventlog_parse(buf, len, &log, &d) < 0) {
		fprintf(stderr, "replay-log: %s: %s\n", argv[2], d.msg);
		goto out;
	}
	/* PCR 0 of a log that started at another locality begins at a value a host swtpm,
	 * reset at locality 0, cannot take: replaying would silently give a different PCR 0. */
	if (log.startup_locality != 0) {
		fprintf(stderr,
			"replay-log: %s: StartupLocality is %u; a locality-0 swtpm cannot "
			"reproduce its PCR 0\n",
			argv[2], log.startup_locality);
		goto out;
	}
	if (tpm_open(argv[1], &t, &d) < 0) {
		fprintf(stderr, "replay-log: %s\n", d.msg);
		goto out;
	}
	if (replay(t, &log, argv[2]) == 0)
		status = 0;
out:
	tpm_close(t);
	eventlog_free(&log);
	free(buf);
	return status;
}
