// SPDX-License-Identifier: Apache-2.0
/* Hostile clients against the real conclave-joind while a legitimate node keeps joining:
 * garbage, slowloris (a TLS record dribbled a byte at a time), truncated TLS hellos, oversized
 * frames after a real TLS handshake, and 1,000 idle ("half-open") connections. Each attack
 * runs from many source addresses (127.1.x.y, so the per-address rate limit is not what
 * stops it) until the legitimate node has completed LEGIT_JOINS joins through it; the node
 * retries with backoff like an agent. joind's resident memory is sampled throughout. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "joind_fixture.h"
#include "conclave/util.h"
#include "conclave/wire.h"

#define LEGIT_JOINS   3	   /* per attack, while it runs */
#define JOIN_ATTEMPTS 40   /* per join, 100 ms apart at most: an agent retries for ever */
#define HALF_OPEN     1000 /* idle connections held at once */
#define SLOWLORIS     64
#define RSS_BOUND_KB  (128 * 1024) /* growth over the run's own start, generous */

static struct jcluster cl;
static struct jnode nodes[1];
static long rss_start_kb, rss_max_kb;
static atomic_bool attacking;
static atomic_uint src_next;

#define check(cond, ...) JCHECK(&cl, cond, __VA_ARGS__)

static void sample_rss(void)
{
	long kb = proc_rss_kb(cl.pid);

	if (kb > rss_max_kb)
		rss_max_kb = kb;
}

/* A TCP connection to joind from the next of 60,000 loopback addresses, or -1. */
static int hostile_connect(bool nonblock)
{
	unsigned int i = atomic_fetch_add(&src_next, 1) % 60000;
	struct sockaddr_in src = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(0x7f010000u + 1 + i) };
	struct sockaddr_in dst = { .sin_family = AF_INET,
				   .sin_port = htons(cl.port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
	    (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- the legitimate node ------------------------------------------------------------------ */

struct legit {
	int joins, retries, gave_up;
	char last_error[256];
};

/* LEGIT_JOINS joins, each retried (100 ms apart) until it succeeds or JOIN_ATTEMPTS ran out. */
static void legit_joins(struct legit *l)
{
	for (int n = 0; n < LEGIT_JOINS; n++) {
		int ret = -1;

		for (int a = 0; a < JOIN_ATTEMPTS && ret < 0; a++) {
			struct join_info j;
			struct diag d;
			const char *why;

			sample_rss();
			ret = jcluster_join(&cl, &nodes[0], &j, &d);
			if (ret == 0 && !jnode_same_as_first_join(&nodes[0], &j, &why)) {
				snprintf(l->last_error, sizeof(l->last_error), "%s", why);
				ret = -EBADMSG;
				a = JOIN_ATTEMPTS;
			} else if (ret < 0) {
				snprintf(l->last_error, sizeof(l->last_error), "%s", d.msg);
				l->retries++;
				usleep(100000);
			}
			join_info_clear(&j);
		}
		if (ret < 0) {
			l->gave_up++;
			return;
		}
		l->joins++;
	}
}

/* Run attack in a thread until the legitimate node is done; check the outcome. never_refused:
 * the attack's connections never reach a worker (they never complete a TLS hello), so not one
 * of the node's attempts may find the workers taken. */
static void under_attack(void *(*attack)(void *), void *arg, const char *what, bool never_refused)
{
	struct legit l = { 0 };
	pthread_t t;

	atomic_store(&attacking, true);
	check(pthread_create(&t, NULL, attack, arg) == 0, "pthread_create");
	usleep(300000); /* the attack is under way before the first join */
	legit_joins(&l);
	atomic_store(&attacking, false);
	pthread_join(t, NULL);
	sample_rss();
	print_message("# %s: %d legitimate joins, %d retries; joind RSS %ld kB (start %ld kB)\n",
		      what, l.joins, l.retries, rss_max_kb, rss_start_kb);
	check(kill(cl.pid, 0) == 0, "joind died under %s", what);
	check(l.joins == LEGIT_JOINS, "%s: the legitimate node gave up after %d retries: %s", what,
	      l.retries, l.last_error);
	check(!never_refused || l.retries == 0,
	      "%s: the legitimate node had to retry %d times (the attack took workers): %s", what,
	      l.retries, l.last_error);
	check(rss_max_kb - rss_start_kb < RSS_BOUND_KB, "%s: joind grew from %ld to %ld kB", what,
	      rss_start_kb, rss_max_kb);
}

/* ---- attacks ------------------------------------------------------------------------------ */

static void *garbage(void *arg)
{
	uint8_t junk[4096];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 131 + 7);
	while (atomic_load(&attacking)) {
		int fd = hostile_connect(false);

		if (fd < 0)
			continue;
		/* Half of them look like a TLS handshake record with a lying length. */
		junk[0] = (src_next & 1) ? 0x16 : 'G';
		junk[1] = 3;
		(void)!write(fd, junk, sizeof(junk));
		close(fd);
	}
	return NULL;
}

static void *slowloris(void *arg)
{
	static const uint8_t hello_start[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01 };
	int fds[SLOWLORIS];
	size_t sent[SLOWLORIS] = { 0 };

	for (int i = 0; i < SLOWLORIS; i++)
		fds[i] = hostile_connect(false);
	while (atomic_load(&attacking)) {
		for (int i = 0; i < SLOWLORIS; i++) {
			uint8_t b = sent[i] < sizeof(hello_start) ? hello_start[sent[i]] : 0x41;

			if (fds[i] < 0 || send(fds[i], &b, 1, MSG_NOSIGNAL) != 1) {
				if (fds[i] >= 0)
					close(fds[i]);
				fds[i] = hostile_connect(false); /* closed on us: come back */
				sent[i] = 0;
				continue;
			}
			sent[i]++;
		}
		usleep(100000);
	}
	for (int i = 0; i < SLOWLORIS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return NULL;
}

static void *truncated_tls(void *arg)
{
	uint8_t hello[4096];
	size_t len = tls_client_hello(hello, sizeof(hello));
	int stalled[32], n_stalled = 0;

	if (len == 0)
		return NULL;
	while (atomic_load(&attacking)) {
		int fd = hostile_connect(false);

		if (fd < 0)
			continue;
		(void)!write(fd, hello, len / 2);
		/* Every other one stays, half a hello sent, until the attack ends. */
		if (n_stalled < (int)ARRAY_SIZE(stalled) && (src_next & 1))
			stalled[n_stalled++] = fd;
		else
			close(fd);
		usleep(2000);
	}
	while (n_stalled > 0)
		close(stalled[--n_stalled]);
	return NULL;
}

/* A complete TLS 1.3 handshake (joind asks for a certificate: a throwaway one), then a frame
 * header that claims the largest body a length field can hold, or a body past the limit. */
static void *oversized_frames(void *arg)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	EVP_PKEY *key = EVP_EC_gen("P-256"); /* what joind accepts: ECDSA with SHA-256 */
	X509 *cert = X509_new();

	X509_set_version(cert, 2);
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_set_pubkey(cert, key);
	X509_sign(cert, key, EVP_sha256());
	SSL_CTX_use_certificate(ctx, cert);
	SSL_CTX_use_PrivateKey(ctx, key);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	while (atomic_load(&attacking)) {
		uint8_t hdr[WIRE_HEADER_SIZE] = { 'C', 'N',	   'C',	 'L',  0,    WIRE_VERSION,
						  0,   WIRE_HELLO, 0xff, 0xff, 0xff, 0xff };
		int fd = hostile_connect(false);
		SSL *ssl;

		if (fd < 0)
			continue;
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_connect(ssl) == 1) {
			if (src_next & 1)
				hdr[8] = 0; /* 16 MiB: still far past a HELLO's limit */
			SSL_write(ssl, hdr, sizeof(hdr));
			{
				char b[64];

				(void)SSL_read(ssl, b, sizeof(b)); /* until joind closes */
			}
		}
		SSL_free(ssl);
		close(fd);
	}
	X509_free(cert);
	EVP_PKEY_free(key);
	SSL_CTX_free(ctx);
	return NULL;
}

static void *half_open(void *arg)
{
	int *fds = calloc(HALF_OPEN, sizeof(int));
	int n = 0;

	while (fds && atomic_load(&attacking)) {
		/* Keep HALF_OPEN idle connections; replace those joind closed. */
		for (int i = 0; i < n; i++) {
			struct pollfd p = { .fd = fds[i], .events = POLLIN };

			if (poll(&p, 1, 0) == 1) {
				close(fds[i]);
				fds[i] = hostile_connect(true);
			}
		}
		while (n < HALF_OPEN && (fds[n] = hostile_connect(true)) >= 0)
			n++;
		usleep(100000);
	}
	while (fds && n > 0)
		close(fds[--n]);
	free(fds);
	return NULL;
}

/* ---- scenarios ---------------------------------------------------------------------------- */

static void joins_go_on_through_garbage(void **state)
{
	under_attack(garbage, NULL, "garbage", false);
}

static void joins_go_on_through_slowloris(void **state)
{
	under_attack(slowloris, NULL, "slowloris", true);
}

static void joins_go_on_through_truncated_tls_hellos(void **state)
{
	under_attack(truncated_tls, NULL, "truncated TLS hellos", true);
}

static void joins_go_on_through_oversized_frames(void **state)
{
	under_attack(oversized_frames, NULL, "oversized frames", false);
}

static void joins_go_on_through_a_thousand_half_open_connections(void **state)
{
	under_attack(half_open, NULL, "1000 half-open connections", true);
}

static void joind_logs_what_it_closed_and_holds_no_descriptors_after(void **state)
{
	char *log = jcluster_log_tail(&cl, 1u << 20);
	int fds = proc_fd_count(cl.pid);

	check(log && strstr(log, "closed before a complete TLS hello"),
	      "joind does not report the connections it closed before their hello");
	check(log && strstr(log, "exceeds the limit"), "joind does not name the oversized frame");
	free(log);
	usleep(2500000); /* joind's deadline (2 s) for anything still waiting */
	check(proc_fd_count(cl.pid) <= fds, "joind holds %d descriptors, %d before",
	      proc_fd_count(cl.pid), fds);
	print_message("# joind holds %d descriptors after the attacks\n", proc_fd_count(cl.pid));
	check(jcluster_stop(&cl, SIGTERM) == 0, "joind did not stop cleanly after the attacks");
}

static int group_setup(void **state)
{
	struct join_info j;
	struct diag d;
	const char *why;
	struct rlimit r;

	signal(SIGPIPE, SIG_IGN);
	/* The attacker side needs descriptors too. */
	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
	if (jcluster_setup(&cl, "hostile", nodes, ARRAY_SIZE(nodes)) < 0)
		return -1;
	if (jcluster_start(&cl, &why) < 0) {
		fprintf(stderr, "joind: %s\n", why);
		return -1;
	}
	if (jcluster_join(&cl, &nodes[0], &j, &d) < 0 ||
	    !jnode_same_as_first_join(&nodes[0], &j, &why)) {
		fprintf(stderr, "first join: %s\n", d.msg);
		return -1;
	}
	join_info_clear(&j);
	rss_start_kb = rss_max_kb = proc_rss_kb(cl.pid);
	return 0;
}

static int group_teardown(void **state)
{
	jcluster_teardown(&cl);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(joins_go_on_through_garbage),
		cmocka_unit_test(joins_go_on_through_slowloris),
		cmocka_unit_test(joins_go_on_through_truncated_tls_hellos),
		cmocka_unit_test(joins_go_on_through_oversized_frames),
		cmocka_unit_test(joins_go_on_through_a_thousand_half_open_connections),
		cmocka_unit_test(joind_logs_what_it_closed_and_holds_no_descriptors_after),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
