/* SPDX-License-Identifier: Apache-2.0 */
/* Per-source connection rate limit for joind: a token bucket per client address in a fixed-size
 * table (no allocation per client, so a flood of source addresses cannot grow memory; when the
 * table is full the least recently seen bucket is reused). IPv6 clients are bucketed by /64,
 * IPv4-mapped IPv6 ones as IPv4. Not thread-safe: one thread (joind's accept loop) uses it. */
#ifndef CONCLAVE_RATELIMIT_H
#define CONCLAVE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct ratelimit;

/* rate tokens per second, burst tokens at most, table of slots buckets (rate > 0, burst >= 1,
 * 1 <= slots <= 2^24). NULL with errno on bad args (EINVAL), ENOMEM, or no randomness. */
struct ratelimit *ratelimit_new(double rate, double burst, unsigned int slots);
void ratelimit_free(struct ratelimit *rl);

/* Take one token for addr at time now_ns (CLOCK_MONOTONIC): true = allowed; false also for a
 * family other than AF_INET/AF_INET6 or a len too short for it. */
bool ratelimit_allow(struct ratelimit *rl, const struct sockaddr *addr, socklen_t len,
		     uint64_t now_ns);

#endif
