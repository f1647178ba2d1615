// SPDX-License-Identifier: Apache-2.0
/* Per-source token buckets in a fixed table. A source hashes (SipHash-2-4 under a key drawn at
 * ratelimit_new, so a client cannot choose addresses that collide) to a window of up to
 * RL_WINDOW consecutive slots; its bucket lives somewhere in that window. A source that has no
 * bucket takes a free slot in its window, or else the least recently seen one. */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "conclave/ratelimit.h"

#define RL_WINDOW    8
#define RL_MAX_SLOTS (1u << 24)

/* The source, as bucketed: family tag and the IPv4 address or the IPv6 /64 prefix. */
struct rl_key {
	uint8_t b[9];
};

struct rl_bucket {
	struct rl_key key;
	bool used;
	double tokens;
	uint64_t last_ns; /* of the last refill */
	uint64_t seen;	  /* rl->clock at the last attempt: LRU order even when now_ns ties */
};

struct ratelimit {
	double rate, burst;
	unsigned int slots, window;
	uint64_t k0, k1;
	uint64_t clock;
	struct rl_bucket *table;
};

static uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPROUND(v0, v1, v2, v3)                                          \
	do {                                                              \
		v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32); \
		v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;                    \
		v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;                    \
		v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32); \
	} while (0)

/* SipHash-2-4 of up to 15 bytes (all a key needs). */
static uint64_t siphash(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len)
{
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
	uint64_t m = 0, last = (uint64_t)len << 56;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		m = 0;
		for (int j = 0; j < 8; j++)
			m |= (uint64_t)in[i + j] << (8 * j);
		v3 ^= m;
		SIPROUND(v0, v1, v2, v3);
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	for (size_t j = 0; i + j < len; j++)
		last |= (uint64_t)in[i + j] << (8 * j);
	v3 ^= last;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	v0 ^= last;
	v2 ^= 0xff;
	for (int r = 0; r < 4; r++)
		SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

struct ratelimit *ratelimit_new(double rate, double burst, unsigned int slots)
{
	struct ratelimit *rl;
	uint8_t key[16];

	if (!isfinite(rate) || rate <= 0 || !isfinite(burst) || burst < 1 || slots == 0 ||
	    slots > RL_MAX_SLOTS) {
		errno = EINVAL;
		return NULL;
	}
	if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
		return NULL;
	rl = calloc(1, sizeof(*rl));
	if (!rl)
		return NULL;
	rl->table = calloc(slots, sizeof(*rl->table));
	if (!rl->table) {
		free(rl);
		return NULL;
	}
	rl->rate = rate;
	rl->burst = burst;
	rl->slots = slots;
	rl->window = slots < RL_WINDOW ? slots : RL_WINDOW;
	memcpy(&rl->k0, key, 8);
	memcpy(&rl->k1, key + 8, 8);
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (!rl)
		return;
	free(rl->table);
	free(rl);
}

/* An IPv4-mapped IPv6 source (a dual-stack listener's IPv4 client) is bucketed as IPv4: by
 * /64 all of IPv4 would share one bucket. */
static bool source_key(const struct sockaddr *addr, socklen_t len, struct rl_key *k)
{
	memset(k, 0, sizeof(*k));
	if (len < (socklen_t)sizeof(sa_family_t))
		return false;
	if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;

		k->b[0] = 4;
		memcpy(&k->b[1], &in->sin_addr, 4);
		return true;
	}
	if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;

		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			k->b[0] = 4;
			memcpy(&k->b[1], &in6->sin6_addr.s6_addr[12], 4);
		} else {
			k->b[0] = 6;
			memcpy(&k->b[1], &in6->sin6_addr.s6_addr[0], 8);
		}
		return true;
	}
	return false;
}

static struct rl_bucket *find_bucket(struct ratelimit *rl, const struct rl_key *k, uint64_t now_ns)
{
	unsigned int start =
	    (unsigned int)(siphash(rl->k0, rl->k1, k->b, sizeof(k->b)) % rl->slots);
	struct rl_bucket *victim = &rl->table[start];

	for (unsigned int i = 0; i < rl->window; i++) {
		struct rl_bucket *b = &rl->table[(start + i) % rl->slots];

		if (b->used && memcmp(&b->key, k, sizeof(*k)) == 0)
			return b;
		/* The first free slot, else the least recently seen. */
		if (victim->used && (!b->used || b->seen < victim->seen))
			victim = b;
	}
	*victim =
	    (struct rl_bucket){ .key = *k, .used = true, .tokens = rl->burst, .last_ns = now_ns };
	return victim;
}

bool ratelimit_allow(struct ratelimit *rl, const struct sockaddr *addr, socklen_t len,
		     uint64_t now_ns)
{
	struct rl_bucket *b;
	struct rl_key k;

	if (!rl || !addr || !source_key(addr, len, &k))
		return false;
	b = find_bucket(rl, &k, now_ns);
	b->seen = ++rl->clock;
	/* A clock that went back (CLOCK_MONOTONIC should not) refills nothing. */
	if (now_ns > b->last_ns) {
		b->tokens += rl->rate * (double)(now_ns - b->last_ns) / 1e9;
		if (b->tokens > rl->burst)
			b->tokens = rl->burst;
		b->last_ns = now_ns;
	}
	if (b->tokens < 1)
		return false;
	b->tokens -= 1;
	return true;
}
