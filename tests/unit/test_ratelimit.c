// SPDX-License-Identifier: Apache-2.0
/* joind's per-source rate limit: bursts, refill over (synthetic) time, one bucket per IPv4
 * address or IPv6 /64, a full table that neither grows nor forgets a hot source. */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "conclave/ratelimit.h"

#define SEC 1000000000ull
#define T0  (1000 * SEC) /* an arbitrary monotonic start */

static struct sockaddr_in v4(const char *ip)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(12345) };

	assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return a;
}

static struct sockaddr_in6 v6(const char *ip)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(12345) };

	assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
	return a;
}

static bool allow4(struct ratelimit *rl, const char *ip, uint64_t now)
{
	struct sockaddr_in a = v4(ip);

	return ratelimit_allow(rl, (const struct sockaddr *)&a, sizeof(a), now);
}

static bool allow6(struct ratelimit *rl, const char *ip, uint64_t now)
{
	struct sockaddr_in6 a = v6(ip);

	return ratelimit_allow(rl, (const struct sockaddr *)&a, sizeof(a), now);
}

/* How many of many attempts at one instant pass. */
static unsigned int passes4(struct ratelimit *rl, const char *ip, uint64_t now)
{
	unsigned int n = 0;

	for (int i = 0; i < 100; i++)
		n += allow4(rl, ip, now);
	return n;
}

static void burst_passes_then_attempts_are_refused(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 5, 64);

	assert_non_null(rl);
	for (int i = 0; i < 5; i++)
		assert_true(allow4(rl, "192.0.2.1", T0));
	assert_false(allow4(rl, "192.0.2.1", T0));
	assert_false(allow4(rl, "192.0.2.1", T0));
	ratelimit_free(rl);
}

static void tokens_refill_at_the_rate_up_to_the_burst(void **state)
{
	struct ratelimit *rl = ratelimit_new(2, 4, 64); /* one token every 0.5 s */

	assert_non_null(rl);
	assert_int_equal(passes4(rl, "192.0.2.1", T0), 4);
	assert_false(allow4(rl, "192.0.2.1", T0 + SEC / 4));
	assert_true(allow4(rl, "192.0.2.1", T0 + SEC / 2));
	assert_false(allow4(rl, "192.0.2.1", T0 + SEC / 2));
	assert_int_equal(passes4(rl, "192.0.2.1", T0 + SEC / 2 + 3 * SEC / 2), 3);
	/* A long silence refills to the burst, no further. */
	assert_int_equal(passes4(rl, "192.0.2.1", T0 + 3600 * SEC), 4);
	ratelimit_free(rl);
}

static void a_clock_going_back_refills_nothing(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 2, 64);

	assert_non_null(rl);
	assert_int_equal(passes4(rl, "192.0.2.1", T0), 2);
	assert_false(allow4(rl, "192.0.2.1", T0 - 100 * SEC));
	assert_false(allow4(rl, "192.0.2.1", T0));
	assert_true(allow4(rl, "192.0.2.1", T0 + SEC));
	ratelimit_free(rl);
}

static void each_ipv4_address_has_its_own_bucket(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 3, 64);

	assert_non_null(rl);
	assert_int_equal(passes4(rl, "192.0.2.1", T0), 3);
	assert_int_equal(passes4(rl, "192.0.2.2", T0), 3);
	assert_int_equal(passes4(rl, "198.51.100.1", T0), 3);
	assert_false(allow4(rl, "192.0.2.1", T0));
	ratelimit_free(rl);
}

static void ports_do_not_separate_buckets(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 2, 64);
	struct sockaddr_in a = v4("192.0.2.1");

	assert_non_null(rl);
	for (int i = 0; i < 2; i++) {
		a.sin_port = htons((uint16_t)(1000 + i));
		assert_true(ratelimit_allow(rl, (const struct sockaddr *)&a, sizeof(a), T0));
	}
	a.sin_port = htons(2000);
	assert_false(ratelimit_allow(rl, (const struct sockaddr *)&a, sizeof(a), T0));
	ratelimit_free(rl);
}

static void ipv6_addresses_in_one_slash_64_share_a_bucket(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 3, 64);

	assert_non_null(rl);
	assert_true(allow6(rl, "2001:db8:1:2::1", T0));
	assert_true(allow6(rl, "2001:db8:1:2::ffff", T0));
	assert_true(allow6(rl, "2001:db8:1:2:abcd:ef01:2345:6789", T0));
	assert_false(allow6(rl, "2001:db8:1:2:ffff:ffff:ffff:ffff", T0));
	/* Neighbouring /64s, above and below, are other buckets. */
	assert_true(allow6(rl, "2001:db8:1:3::1", T0));
	assert_true(allow6(rl, "2001:db8:1:1::1", T0));
	assert_true(allow6(rl, "2001:db8:2:2::1", T0));
	ratelimit_free(rl);
}

/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: they must not share one /64. */
static void ipv4_mapped_ipv6_sources_are_bucketed_as_ipv4(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 2, 64);

	assert_non_null(rl);
	assert_true(allow6(rl, "::ffff:192.0.2.1", T0));
	assert_true(allow6(rl, "::ffff:192.0.2.1", T0));
	assert_false(allow6(rl, "::ffff:192.0.2.1", T0));
	assert_false(allow4(rl, "192.0.2.1", T0)); /* the same client either way */
	assert_true(allow6(rl, "::ffff:192.0.2.2", T0));
	assert_true(allow4(rl, "192.0.2.3", T0));
	ratelimit_free(rl);
}

static void ipv4_and_ipv6_do_not_collide(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 1, 64);

	assert_non_null(rl);
	/* 0.0.0.0 and ::/64 have the same address bytes in their keys. */
	assert_true(allow4(rl, "0.0.0.0", T0));
	assert_true(allow6(rl, "::1", T0));
	assert_true(allow6(rl, "0:0:0:1::1", T0));
	ratelimit_free(rl);
}

static void unknown_families_and_short_addresses_are_refused(void **state)
{
	struct ratelimit *rl = ratelimit_new(100, 100, 64);
	struct sockaddr_un un = { .sun_family = AF_UNIX, .sun_path = "/run/x" };
	struct sockaddr_in a = v4("192.0.2.1");
	struct sockaddr_in6 b = v6("2001:db8::1");

	assert_non_null(rl);
	assert_false(ratelimit_allow(rl, (const struct sockaddr *)&un, sizeof(un), T0));
	assert_false(ratelimit_allow(rl, (const struct sockaddr *)&a, sizeof(a) - 1, T0));
	assert_false(ratelimit_allow(rl, (const struct sockaddr *)&b, sizeof(b) - 1, T0));
	assert_false(ratelimit_allow(rl, (const struct sockaddr *)&a, 0, T0));
	assert_false(ratelimit_allow(rl, NULL, sizeof(a), T0));
	assert_false(ratelimit_allow(NULL, (const struct sockaddr *)&a, sizeof(a), T0));
	assert_true(ratelimit_allow(rl, (const struct sockaddr *)&a, sizeof(a), T0));
	ratelimit_free(rl);
}

static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	return mallinfo2().uordblks;
#else
	return 0;
#endif
}

/* 200000 sources through a 64-slot table: memory stays put, and a source that keeps
 * knocking stays limited (it is never the least recently seen one in its window). */
static void full_table_neither_grows_nor_forgets_a_hot_source(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 3, 64);
	unsigned int hot_passed = 0;
	size_t before;

	assert_non_null(rl);
	before = heap_in_use();
	for (uint32_t i = 0; i < 200000; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(0x0a000000 + i) };
		struct sockaddr_in6 b = v6("2001:db8::1");

		memcpy(&b.sin6_addr.s6_addr[4], &i, sizeof(i)); /* a /64 of its own */
		/* Every newcomer gets its burst... */
		assert_true(
		    ratelimit_allow(rl, (const struct sockaddr *)(i % 2 ? (void *)&a : (void *)&b),
				    i % 2 ? sizeof(a) : sizeof(b), T0));
		/* ...and the hot source, between every few of them, gets only its own. */
		if (i % 4 == 0)
			hot_passed += allow4(rl, "203.0.113.7", T0);
	}
	assert_int_equal(hot_passed, 3);
	assert_int_equal(heap_in_use(), before);
	ratelimit_free(rl);
}

static void a_table_of_one_slot_still_limits(void **state)
{
	struct ratelimit *rl = ratelimit_new(1, 2, 1);

	assert_non_null(rl);
	assert_int_equal(passes4(rl, "192.0.2.1", T0), 2);
	/* Another source takes the only bucket; the first comes back with a fresh one. */
	assert_int_equal(passes4(rl, "192.0.2.2", T0), 2);
	assert_int_equal(passes4(rl, "192.0.2.1", T0), 2);
	ratelimit_free(rl);
}

static void bad_arguments_give_null(void **state)
{
	errno = 0;
	assert_null(ratelimit_new(0, 5, 64));
	assert_int_equal(errno, EINVAL);
	assert_null(ratelimit_new(-1, 5, 64));
	assert_null(ratelimit_new(NAN, 5, 64));
	assert_null(ratelimit_new(INFINITY, 5, 64));
	assert_null(ratelimit_new(1, 0.5, 64));
	assert_null(ratelimit_new(1, NAN, 64));
	assert_null(ratelimit_new(1, INFINITY, 64));
	assert_null(ratelimit_new(1, 5, 0));
	assert_null(ratelimit_new(1, 5, (1u << 24) + 1));
	ratelimit_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(burst_passes_then_attempts_are_refused),
		cmocka_unit_test(tokens_refill_at_the_rate_up_to_the_burst),
		cmocka_unit_test(a_clock_going_back_refills_nothing),
		cmocka_unit_test(each_ipv4_address_has_its_own_bucket),
		cmocka_unit_test(ports_do_not_separate_buckets),
		cmocka_unit_test(ipv6_addresses_in_one_slash_64_share_a_bucket),
		cmocka_unit_test(ipv4_mapped_ipv6_sources_are_bucketed_as_ipv4),
		cmocka_unit_test(ipv4_and_ipv6_do_not_collide),
		cmocka_unit_test(unknown_families_and_short_addresses_are_refused),
		cmocka_unit_test(full_table_neither_grows_nor_forgets_a_hot_source),
		cmocka_unit_test(a_table_of_one_slot_still_limits),
		cmocka_unit_test(bad_arguments_give_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
