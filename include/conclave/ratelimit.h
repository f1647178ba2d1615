/* SPDX-License-Identifier: Apache-2.0 */
/* Per-source connection rate limit for joind: a token bucket per client address in a fixed-size
 * table (no allocation per client, so a flood of source addresses cannot grow memory; when the
 * table is full the least recently seen bucket is reused). IPv6 clients are bucketed by /64. */
#ifndef CONCLAVE_RATELIMIT_H
#define CONCLAVE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct ratelimit;

/* rate tokens per second, burst tokens at most, table of slots buckets. NULL on bad args/ENOMEM. */
struct ratelimit *ratelimit_new(double rate, double burst, unsigned int slots);
void ratelimit_free(struct ratelimit *rl);

/* Take one token for addr at time now_ns (CLOCK_MONOTONIC): true = allowed. */
bool ratelimit_allow(struct ratelimit *rl, const struct sockaddr *addr, socklen_t len,
		     uint64_t now_ns);

#endif
