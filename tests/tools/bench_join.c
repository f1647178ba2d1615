// SPDX-License-Identifier: Apache-2.0
/* Join service benchmark: the real conclave-joind binary (its own swtpm), nodes as in-process
 * join clients drawing from a pool of swtpms (each with its AK created before timing).
 * Measures (1) sequential join latency of one node: first join (activation) and rejoins;
 * (2) throughput with C client threads; (3) CPU per join of joind, of joind's swtpm, of the
 * nodes' swtpms and of the client process, from /proc and getrusage deltas; (4) baselines in
 * the same run: a mutual TLS 1.3 handshake on loopback with atls's settings, and a 4 KiB
 * write + fsync next to the store. Prints "key value" lines; scripts/bench-join makes the table.
 *
 * usage: bench_join [ROUNDS [CLIENTS [POOL [SECONDS]]]] */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "attest_fixture.h"
#include "joind_fixture.h"
#include "joind_proc.h"
#include "conclave/joinclient.h"
#include "conclave/kms.h"
#include "conclave/membership.h"
#include "conclave/util.h"

#define MAX_POOL    64
#define MAX_CLIENTS 256
#define MAX_SAMPLES 100000

struct node {
	struct fixture fx;
	uint8_t wg[32], uuid[16];
	char endpoint[32];
	int64_t id;
	int next_free; /* pool free list */
};

static const struct membership_config ranges = { "10.100.0.0/16", "fd00:100::/64", "10.244.0.0/16",
						 24, 0 };

static struct fixture joind_fx;
static struct node nodes[MAX_POOL];
static int pool_size;
static char dir[] = "/tmp/conclave-bench-join-XXXXXX";
static char db_path[PATH_MAX], recovery_path[PATH_MAX], policy_path[PATH_MAX], pub_path[PATH_MAX],
    ca_path[PATH_MAX], port_path[PATH_MAX], log_path[PATH_MAX];
static pid_t joind_pid = -1;
static uint16_t joind_port;
static atomic_int failures;

/* ---- clocks ------------------------------------------------------------------------------ */

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Percentile (0..100) of v, sorted in place; nearest rank. */
static double pct(double *v, int n, double p)
{
	int k;

	if (n <= 0)
		return 0;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	k = (int)((p / 100.0) * n + 0.999999) - 1;
	return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

/* CPU time (user + system) of a process in µs, from /proc/PID/stat; -1 if unreadable. */
static double proc_cpu_us(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	/* After ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
	 * utime(14) stime(15). */
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static pid_t swtpm_pid(const struct swtpm *t)
{
	char path[PATH_MAX + 16];
	uint8_t *buf = NULL;
	size_t len;
	pid_t pid = -1;

	snprintf(path, sizeof(path), "%s/swtpm.pid", t->dir);
	if (read_file(path, 64, &buf, &len) == 0) {
		pid = (pid_t)strtol((char *)buf, NULL, 10);
		free(buf);
	}
	return pid;
}

static double self_cpu_us(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 +
	       (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

/* Every CPU account the benchmark reports, read at once. */
struct cpu {
	double wall, joind, joind_tpm, node_tpm, client;
};

static struct cpu cpu_now(void)
{
	struct cpu c = { .wall = now_us(),
			 .joind = proc_cpu_us(joind_pid),
			 .joind_tpm = proc_cpu_us(swtpm_pid(&joind_fx.tpm)),
			 .client = self_cpu_us() };

	for (int i = 0; i < pool_size; i++)
		c.node_tpm += proc_cpu_us(swtpm_pid(&nodes[i].fx.tpm));
	return c;
}

static void print_cpu(const char *prefix, struct cpu a, struct cpu b, int joins)
{
	printf("%s_joind_cpu_us %.1f\n", prefix, (b.joind - a.joind) / joins);
	printf("%s_joind_tpm_us %.1f\n", prefix, (b.joind_tpm - a.joind_tpm) / joins);
	printf("%s_node_tpm_us %.1f\n", prefix, (b.node_tpm - a.node_tpm) / joins);
	printf("%s_client_cpu_us %.1f\n", prefix, (b.client - a.client) / joins);
}

/* ---- the join service -------------------------------------------------------------------- */

static int joind_start(int workers)
{
	const struct joind_args a = {
		.port_file = port_path,
		.log_file = log_path,
		.tcti = joind_fx.tpm.tcti,
		.ak_state = joind_fx.ak_state,
		.event_log = joind_fx.log_path,
		.ek_chain = joind_fx.tpm.issuer,
		.node_policy = policy_path,
		.policy_key = pub_path,
		.ca = ca_path,
		.db = db_path,
		.recovery = recovery_path,
		.overlay_v4 = ranges.overlay_v4,
		.overlay_v6 = ranges.overlay_v6,
		.pod_pool = ranges.pod_pool,
		.workers = workers,
		.no_rate_limit = true,
	};
	const char *why = NULL;

	joind_pid = joind_proc_start(&a, 20000, &joind_port, &why);
	if (joind_pid < 0)
		fprintf(stderr, "bench-join: %s (log: %s)\n", why, log_path);
	return joind_pid < 0 ? -1 : 0;
}

/* ---- nodes ------------------------------------------------------------------------------- */

static atomic_int conc_phase, n_failed; /* failures under load are counted apart */

static int node_join(struct node *n)
{
	struct joinclient_config c = {
		.host = "127.0.0.1",
		.port = joind_port,
		.connect_timeout_ms = 5000,
		.timeout_ms = 10000,
		.cp_policy = &joind_fx.policy,
		.cp_ca = joind_fx.ca,
		.attest = { .tcti = n->fx.tpm.tcti,
			    .ak_state = n->fx.ak_state,
			    .pcr_mask = NODE_QUOTE_PCRS,
			    .event_log = n->fx.log_path,
			    .ek_chain = n->fx.tpm.issuer },
		.wg_pubkey = n->wg,
		.disk_uuid = n->uuid,
		.endpoints = { n->endpoint },
		.n_endpoints = 1,
	};
	struct join_info j = { 0 };
	struct diag d = { { 0 } };
	int ret = joinclient_join(&c, &j, &d);

	if (ret == 0 && (!j.disk_key || j.disk_key->len != KMS_DISK_KEY_LEN ||
			 (n->id && j.view.self.node_id != n->id)))
		ret = -EPROTO;
	if (ret == 0 && !n->id)
		n->id = j.view.self.node_id;
	if (ret < 0 && (atomic_load(&conc_phase) ? atomic_load(&n_failed)
						 : atomic_fetch_add(&failures, 1)) < 3)
		fprintf(stderr, "join of %s failed (%d): %s\n", n->endpoint, ret, d.msg);
	join_info_clear(&j);
	return ret;
}

/* ---- concurrent clients ------------------------------------------------------------------ */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static int pool_head = -1;
static double run_until;
static double samples[MAX_SAMPLES];
static atomic_int n_samples, n_joins;

/* A node joins from one client at a time: two concurrent joins of one TPM would race on the
 * counters rule (the later quote may commit first and the earlier one is then refused). */
static struct node *pool_take(void)
{
	struct node *n;

	pthread_mutex_lock(&pool_lock);
	while (pool_head < 0)
		pthread_cond_wait(&pool_cond, &pool_lock);
	n = &nodes[pool_head];
	pool_head = n->next_free;
	pthread_mutex_unlock(&pool_lock);
	return n;
}

static void pool_put(struct node *n)
{
	pthread_mutex_lock(&pool_lock);
	n->next_free = pool_head;
	pool_head = (int)(n - nodes);
	pthread_cond_signal(&pool_cond);
	pthread_mutex_unlock(&pool_lock);
}

static void *client_thread(void *arg)
{
	while (now_us() < run_until) {
		struct node *n = pool_take();
		double t0 = now_us();
		int ret = node_join(n), k;

		if (ret == 0) {
			k = atomic_fetch_add(&n_samples, 1);
			if (k < MAX_SAMPLES)
				samples[k] = now_us() - t0;
			atomic_fetch_add(&n_joins, 1);
		} else {
			atomic_fetch_add(&n_failed, 1);
		}
		pool_put(n);
	}
	return NULL;
}

/* ---- baselines --------------------------------------------------------------------------- */

static int accept_any(int ok, X509_STORE_CTX *x)
{
	return 1;
}

/* A context configured as atls configures its own (TLS 1.3 only, P-256 ECDHE, ECDSA P-256
 * self-signed certificate, mutual authentication, no resumption). */
static SSL_CTX *tls_ctx(bool server)
{
	SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();

	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"bench", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_sign(x, key, EVP_sha256());
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
	SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
	SSL_CTX_set_num_tickets(c, 0);
	SSL_CTX_set1_groups_list(c, "P-256:X25519");
	SSL_CTX_set1_sigalgs_list(c, "ECDSA+SHA256");
	SSL_CTX_use_certificate(c, x);
	SSL_CTX_use_PrivateKey(c, key);
	X509_free(x);
	EVP_PKEY_free(key);
	return c;
}

struct tls_server {
	int lfd, rounds;
	SSL_CTX *ctx;
};

static void *tls_server_thread(void *arg)
{
	struct tls_server *s = arg;

	for (int i = 0; i < s->rounds; i++) {
		int fd = accept(s->lfd, NULL, NULL);
		SSL *ssl = SSL_new(s->ctx);
		char b;

		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) != 1 || SSL_write(ssl, "x", 1) != 1)
			atomic_fetch_add(&failures, 1);
		(void)SSL_read(ssl, &b, 1); /* the client's close */
		SSL_free(ssl);
		close(fd);
	}
	return NULL;
}

/* New TCP connection + mutual TLS 1.3 handshake + one byte each way, both ends in this process. */
static void bench_tls(int rounds)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	struct tls_server s = { .rounds = rounds, .ctx = tls_ctx(true) };
	SSL_CTX *cc = tls_ctx(false);
	double *t = calloc((size_t)rounds, sizeof(*t)), c0, w0;
	pthread_t th;

	s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!t || bind(s.lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s.lfd, 16) < 0 ||
	    getsockname(s.lfd, (struct sockaddr *)&a, &alen) < 0 ||
	    pthread_create(&th, NULL, tls_server_thread, &s) != 0) {
		fprintf(stderr, "TLS baseline: cannot listen\n");
		exit(1);
	}
	c0 = self_cpu_us();
	w0 = now_us();
	for (int i = 0; i < rounds; i++) {
		double t0 = now_us();
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		SSL *ssl = SSL_new(cc);
		char b;

		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			atomic_fetch_add(&failures, 1);
		SSL_set_fd(ssl, fd);
		if (SSL_connect(ssl) != 1 || SSL_read(ssl, &b, 1) != 1 ||
		    SSL_write(ssl, "y", 1) != 1)
			atomic_fetch_add(&failures, 1);
		SSL_shutdown(ssl);
		SSL_free(ssl);
		close(fd);
		t[i] = now_us() - t0;
	}
	pthread_join(th, NULL);
	printf("tls_cpu_us %.1f\n", (self_cpu_us() - c0) / rounds); /* both ends */
	printf("tls_wall_total_us %.1f\n", (now_us() - w0) / rounds);
	printf("tls_us %.1f\n", pct(t, rounds, 50));
	close(s.lfd);
	SSL_CTX_free(s.ctx);
	SSL_CTX_free(cc);
	free(t);
}

static void bench_fsync(int rounds)
{
	char path[PATH_MAX + 16], block[4096];
	double *t = calloc((size_t)rounds, sizeof(*t));
	int fd;

	snprintf(path, sizeof(path), "%s/fsync-baseline", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || !t) {
		fprintf(stderr, "fsync baseline: cannot open %s\n", path);
		exit(1);
	}
	memset(block, 0x5a, sizeof(block));
	for (int i = 0; i < rounds; i++) {
		double t0 = now_us();

		block[0] = (char)i;
		if (pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block) || fsync(fd) < 0)
			atomic_fetch_add(&failures, 1);
		t[i] = now_us() - t0;
	}
	printf("fsync_us %.1f\n", pct(t, rounds, 50));
	close(fd);
	unlink(path);
	free(t);
}

/* ---- set-up ------------------------------------------------------------------------------ */

/* The node policy, and every pool node's EK root (each swtpm has its own CA). */
static int write_trust(void)
{
	char prefix[PATH_MAX];
	FILE *out;
	int ret = 0;

	snprintf(prefix, sizeof(prefix), "%s/policy", dir);
	snprintf(pub_path, sizeof(pub_path), "%s.pub", prefix);
	if (signed_policy_write(&nodes[0].fx.policy, prefix, policy_path) < 0)
		return -EIO;
	out = fopen(ca_path, "we");
	if (!out)
		return -errno;
	for (int i = 0; i < pool_size && ret == 0; i++)
		ret = file_append(out, nodes[i].fx.tpm.ca);
	return fclose(out) == 0 ? ret : -EIO;
}

static void print_log_tail(size_t max)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (read_file(log_path, 1u << 22, &buf, &len) == 0 && len) {
		fprintf(stderr, "--- conclave-joind log (tail):\n%.*s\n",
			(int)(len > max ? max : len), (char *)buf + (len > max ? len - max : 0));
	}
	free(buf);
}

static void cleanup(void)
{
	char cmd[PATH_MAX + 16];

	if (joind_pid > 0) {
		kill(joind_pid, SIGTERM);
		waitpid(joind_pid, NULL, 0);
		joind_pid = -1;
	}
	for (int i = 0; i < pool_size; i++)
		fixture_stop(&nodes[i].fx);
	fixture_stop(&joind_fx);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static int clamp(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

int main(int argc, char **argv)
{
	int rounds = clamp(argc > 1 ? atoi(argv[1]) : 200, 10, MAX_SAMPLES);
	int clients = clamp(argc > 2 ? atoi(argv[2]) : 50, 1, MAX_CLIENTS);
	double seconds = argc > 4 ? atof(argv[4]) : 10;
	static double lat[MAX_SAMPLES];
	double first[MAX_POOL], setup0 = now_us();
	_cleanup_kms_ struct kms *k = NULL;
	pthread_t th[MAX_CLIENTS];
	struct diag d = { { 0 } };
	struct cpu a, b;
	int n;

	pool_size = clamp(argc > 3 ? atoi(argv[3]) : 8, 1, MAX_POOL);
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		return 1;
	snprintf(db_path, sizeof(db_path), "%s/members.db", dir);
	snprintf(recovery_path, sizeof(recovery_path), "%s/recovery", dir);
	snprintf(policy_path, sizeof(policy_path), "%s/node-policy.json", dir);
	snprintf(ca_path, sizeof(ca_path), "%s/ek-roots.pem", dir);
	snprintf(port_path, sizeof(port_path), "%s/port", dir);
	snprintf(log_path, sizeof(log_path), "%s/joind.log", dir);
	/* TPM provisioning and AK creation: before any timing. */
	if (fixture_start(&joind_fx) < 0)
		goto fail;
	for (int i = 0; i < pool_size; i++) {
		if (fixture_start(&nodes[i].fx) < 0)
			goto fail;
		memset(nodes[i].wg, 0x10 + i, sizeof(nodes[i].wg));
		memset(nodes[i].uuid, 0xa0 + i, sizeof(nodes[i].uuid));
		snprintf(nodes[i].endpoint, sizeof(nodes[i].endpoint), "192.0.2.%d:51820", i + 1);
		nodes[i].next_free = pool_head;
		pool_head = i;
	}
	if (kms_new_random(&k, &d) < 0 || kms_recovery_write(k, recovery_path, &d) < 0 ||
	    write_trust() < 0 || joind_start(clamp(clients + 8, 8, 1024)) < 0) {
		fprintf(stderr, "bench: set-up failed: %s\n", d.msg);
		goto fail;
	}
	printf("setup_s %.1f\n", (now_us() - setup0) / 1e6);
	printf("pool %d\nclients %d\nrounds %d\n", pool_size, clients, rounds);

	/* (1a) First joins (EK unknown: credential activation), one node after another. */
	for (int i = 0; i < pool_size; i++) {
		double t0 = now_us();

		if (node_join(&nodes[i]) < 0)
			goto fail;
		first[i] = now_us() - t0;
	}
	printf("first_join_max_us %.1f\n", pct(first, pool_size, 100));
	printf("first_join_us %.1f\n", pct(first, pool_size, 50));

	/* (1b) Rejoins of one node, sequential: each a new TCP + TLS session, both attestations. */
	a = cpu_now();
	for (int i = 0; i < rounds; i++) {
		double t0 = now_us();

		if (node_join(&nodes[0]) < 0)
			goto fail;
		lat[i] = now_us() - t0;
	}
	b = cpu_now();
	print_cpu("seq", a, b, rounds);
	printf("rejoin_p99_us %.1f\n", pct(lat, rounds, 99));
	printf("rejoin_us %.1f\n", pct(lat, rounds, 50));

	/* (2) Throughput: C client threads, each taking a free pool node per join. */
	run_until = now_us() + seconds * 1e6;
	atomic_store(&conc_phase, 1);
	a = cpu_now();
	for (int i = 0; i < clients; i++)
		if (pthread_create(&th[i], NULL, client_thread, NULL) != 0)
			goto fail;
	for (int i = 0; i < clients; i++)
		pthread_join(th[i], NULL);
	b = cpu_now();
	atomic_store(&conc_phase, 0);
	n = atomic_load(&n_joins);
	if (n == 0)
		goto fail;
	printf("conc_joins %d\nconc_failed %d\n", n, atomic_load(&n_failed));
	if (atomic_load(&n_failed))
		print_log_tail(1500);
	printf("conc_joins_per_s %.1f\n", n / ((b.wall - a.wall) / 1e6));
	print_cpu("conc", a, b, n);
	printf("conc_lat_p99_us %.1f\n", pct(samples, n < MAX_SAMPLES ? n : MAX_SAMPLES, 99));
	printf("conc_lat_us %.1f\n", pct(samples, n < MAX_SAMPLES ? n : MAX_SAMPLES, 50));

	/* (4) Baselines, same run. */
	bench_tls(200);
	bench_fsync(200);

	printf("failures %d\n", atomic_load(&failures));
	cleanup();
	return atomic_load(&failures) ? 1 : 0;
fail:
	printf("failures %d\n", atomic_load(&failures) + 1);
	print_log_tail(3000);
	cleanup();
	return 1;
}
