// SPDX-License-Identifier: Apache-2.0
/* joind's table of connections waiting for their TLS hello (userspace/lib/pending.c), over
 * real loopback TCP: what is handed to a worker, what is closed and why. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "joind_fixture.h"
#include "conclave/pending.h"

static int lfd = -1;
static int handed[8], n_handed;

static void ready(void *arg, int fd)
{
	handed[n_handed++] = fd;
}

/* A connected pair: *client ours to write, the server end accepted. */
static void pair(int *client, int *server)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
	*client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(*client, (struct sockaddr *)&a, sizeof(a)), 0);
	*server = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*server >= 0);
}

/* Poll until the table has changed or a second passed. */
static void poll_some(struct pending *p, int rounds)
{
	for (int i = 0; i < rounds; i++)
		assert_true(pending_poll(p, lfd, 100, ready, NULL) >= 0);
}

/* The other end closed: EOF, or a reset when it closed with our bytes unread. */
static bool closed_by_peer(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);

	return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void not_tls_is_closed_at_once(void **state)
{
	struct pending *p = pending_new(8, 10000);
	int c, s;

	pair(&c, &s);
	assert_int_equal(write(c, "GET / HTTP/1.0\r\n\r\n", 18), 18);
	pending_add(p, s);
	poll_some(p, 2);
	assert_int_equal(pending_stats(p)->garbage, 1);
	assert_int_equal(pending_count(p), 0);
	assert_true(closed_by_peer(c));
	close(c);
	pending_free(p);
}

static void complete_hello_is_handed_over_unread(void **state)
{
	struct pending *p = pending_new(8, 10000);
	uint8_t hello[4096], back[4096];
	size_t len = tls_client_hello(hello, sizeof(hello));
	int c, s;

	assert_true(len > 5);
	pair(&c, &s);
	n_handed = 0;
	pending_add(p, s);
	assert_int_equal(write(c, hello, 3), 3); /* a first crumb: not yet */
	poll_some(p, 2);
	assert_int_equal(n_handed, 0);
	assert_int_equal(pending_count(p), 1);
	assert_int_equal(write(c, hello + 3, len - 3), (ssize_t)(len - 3));
	poll_some(p, 2);
	assert_int_equal(n_handed, 1);
	assert_int_equal(handed[0], s);
	assert_int_equal(pending_count(p), 0);
	/* The worker's TLS library reads the hello itself. */
	assert_int_equal(recv(s, back, sizeof(back), MSG_DONTWAIT), (ssize_t)len);
	assert_memory_equal(back, hello, len);
	close(s);
	close(c);
	pending_free(p);
}

static void half_a_hello_then_close_is_dropped_at_once(void **state)
{
	struct pending *p = pending_new(8, 10000);
	uint8_t hello[4096];
	size_t len = tls_client_hello(hello, sizeof(hello));
	int c, s;

	pair(&c, &s);
	n_handed = 0;
	pending_add(p, s);
	assert_int_equal(write(c, hello, len / 2), (ssize_t)(len / 2));
	poll_some(p, 2);
	assert_int_equal(pending_count(p), 1); /* waiting for the rest */
	shutdown(c, SHUT_WR);
	poll_some(p, 1); /* one round: it never will be complete */
	assert_int_equal(pending_stats(p)->closed, 1);
	assert_int_equal(pending_count(p), 0);
	assert_int_equal(n_handed, 0);
	close(c);
	pending_free(p);
}

static void silent_connection_expires_at_the_deadline(void **state)
{
	struct pending *p = pending_new(8, 200);
	int c, s;

	pair(&c, &s);
	pending_add(p, s);
	poll_some(p, 5); /* 5 x 100 ms, twice the deadline */
	assert_int_equal(pending_stats(p)->expired, 1);
	assert_int_equal(pending_count(p), 0);
	assert_true(closed_by_peer(c));
	close(c);
	pending_free(p);
}

static void full_table_pushes_out_the_oldest(void **state)
{
	struct pending *p = pending_new(2, 10000);
	int c[3], s[3];

	for (int i = 0; i < 3; i++) {
		pair(&c[i], &s[i]);
		pending_add(p, s[i]);
	}
	assert_int_equal(pending_count(p), 2);
	assert_int_equal(pending_stats(p)->evicted, 1);
	assert_true(closed_by_peer(c[0]));
	for (int i = 0; i < 3; i++)
		close(c[i]);
	pending_free(p);
}

static int setup(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 16) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	close(lfd);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(not_tls_is_closed_at_once),
		cmocka_unit_test(complete_hello_is_handed_over_unread),
		cmocka_unit_test(half_a_hello_then_close_is_dropped_at_once),
		cmocka_unit_test(silent_connection_expires_at_the_deadline),
		cmocka_unit_test(full_table_pushes_out_the_oldest),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
