/* SPDX-License-Identifier: Apache-2.0 */
/* Connections waiting for their first TLS record, in joind's accept loop (docs/joind.md).
 * A worker thread is a scarce thing (a fixed pool, each held for a whole handshake); a
 * connection gets one only once its complete first record, a TLS handshake record (the
 * ClientHello), has arrived. Until then it costs one descriptor and one slot of a fixed table:
 * idle ("half-open") connections, clients that dribble bytes, truncated hellos and anything
 * that is not TLS never reach a worker. The kernel tells when the record is complete
 * (SO_RCVLOWAT), so waiting costs no CPU. Not thread-safe: the accept loop owns it. */
#ifndef CONCLAVE_PENDING_H
#define CONCLAVE_PENDING_H

#include <stddef.h>
#include <stdint.h>

#define PENDING_DEFAULT_MAX 1024
#define PENDING_RECORD_MAX  (16384 + 256) /* a TLS record's largest length field */

struct pending;

struct pending_stats {
	uint64_t handed;  /* complete first record: given to ready() */
	uint64_t garbage; /* not a TLS handshake record: closed */
	uint64_t closed;  /* the client closed (or reset) before its record was complete */
	uint64_t expired; /* no complete record within the deadline: closed */
	uint64_t evicted; /* the oldest, closed to make room when the table was full */
};

/* A table of max connections (1..65536), each allowed timeout_ms for its first record. */
struct pending *pending_new(size_t max, int timeout_ms);
/* Close every waiting connection and free. */
void pending_free(struct pending *p);

/* Take an accepted (blocking or not) socket; when the table is full the oldest waiting
 * connection is closed to make room (a flood of idle connections ages out, new clients get in). */
void pending_add(struct pending *p, int fd);

/* Poll the listening socket lfd and every waiting connection up to timeout_ms. Connections whose
 * first record is complete are handed to ready(arg, fd) (SO_RCVLOWAT reset; the bytes are still
 * unread); bad, closed and expired ones are closed. Returns 1 when lfd is readable, 0 if not,
 * -errno if poll failed. */
int pending_poll(struct pending *p, int lfd, int timeout_ms, void (*ready)(void *arg, int fd),
		 void *arg);

/* Waiting connections now; totals since pending_new. */
size_t pending_count(const struct pending *p);
const struct pending_stats *pending_stats(const struct pending *p);

#endif
