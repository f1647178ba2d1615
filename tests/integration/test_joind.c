// SPDX-License-Identifier: Apache-2.0
/* The join service end to end: the real conclave-joind binary as a child process with its own
 * swtpm, and nodes as in-process join clients, each with its own swtpm. Joins, rejoins after a
 * TPM reset, a rejoin claiming another disk, hostile connections, a full worker pool, a joind
 * killed mid-join and restarted on the same store, and a node that booted something else. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <openssl/pem.h>

#include "attest_fixture.h"
#include "joind_fixture.h"
#include "joind_proc.h"
#include "conclave/joinclient.h"
#include "conclave/kms.h"
#include "conclave/membership.h"
#include "conclave/tpm.h"
#include "conclave/util.h"

#define N_NODES	     5 /* A, B, C join; D booted something else; E is joining when joind dies */
#define NODE_BAD_PCR 3
#define NODE_KILLED  4
#define WORKERS	     4
#define JOIND_MS     test_ms(2000) /* joind's per-message deadline */
#define KILL_ROUNDS  4

struct node {
	struct fixture fx;
	uint8_t wg[32];
	uint8_t uuid[16];
	char endpoint[32];
	int64_t id; /* from its first successful join; 0 before */
	uint8_t key[KMS_DISK_KEY_LEN];
};

static const struct membership_config ranges = { "10.100.0.0/16", "fd00:100::/64", "10.244.0.0/16",
						 24, 0 };

static struct fixture joind_fx;
static struct node nodes[N_NODES];
static char dir[] = "/tmp/conclave-joind-XXXXXX";
static char db_path[PATH_MAX], recovery_path[PATH_MAX], policy_path[PATH_MAX], pub_path[PATH_MAX],
    ca_path[PATH_MAX], port_path[PATH_MAX], log_path[PATH_MAX];
static pid_t joind_pid = -1;
static uint16_t joind_port;

/* ---- context on failure ------------------------------------------------------------------ */

static void print_joind_log(void)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (read_file(log_path, 1u << 20, &buf, &len) == 0) {
		char *tail = (char *)buf + (len > 4000 ? len - 4000 : 0), *save = NULL;

		print_message("# --- conclave-joind log (tail):\n");
		for (char *l = strtok_r(tail, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
			print_message("#   %s\n", l);
	}
	free(buf);
}

/* cmocka's fail() jumps out of the test; abort() only tells the analyzer it never returns. */
static void __attribute__((noreturn)) failed(void)
{
	print_joind_log();
	fail();
	abort();
}

#define check(cond, ...)                                                             \
	do {                                                                         \
		if (!(cond)) {                                                       \
			print_message("# %s:%d: %s\n# ", __FILE__, __LINE__, #cond); \
			print_message(__VA_ARGS__);                                  \
			print_message("\n");                                         \
			failed();                                                    \
		}                                                                    \
	} while (0)

/* ---- the join service process -------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void joind_start(void)
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
		.workers = WORKERS,
		.timeout_ms = JOIND_MS,
		.verbose = true,
	};
	const char *why = NULL;

	joind_pid = joind_proc_start(&a, 20000, &joind_port, &why);
	check(joind_pid > 0, "%s (log: %s)", why, log_path);
}

static void joind_stop(int sig)
{
	int status = 0;

	check(joind_pid > 0, "no joind to stop");
	kill(joind_pid, sig);
	check(waitpid(joind_pid, &status, 0) == joind_pid, "waitpid: %s", strerror(errno));
	joind_pid = -1;
	if (sig == SIGTERM)
		check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "conclave-joind did not stop cleanly on SIGTERM (status 0x%x)", status);
}

/* ---- nodes ------------------------------------------------------------------------------- */

static bool ak_per_boot; /* the next joins replace an unrecorded AK (a node's tmpfs record) */

static int node_join(struct node *n, const uint8_t *uuid, struct join_info *out, struct diag *d)
{
	struct joinclient_config c = {
		.host = "127.0.0.1",
		.port = joind_port,
		.connect_timeout_ms = test_ms(2000),
		.timeout_ms = test_ms(5000),
		.cp_policy = &joind_fx.policy,
		.cp_ca = joind_fx.ca,
		.attest = { .tcti = n->fx.tpm.tcti,
			    .ak_state = n->fx.ak_state,
			    .pcr_mask = NODE_QUOTE_PCRS,
			    .event_log = n->fx.log_path,
			    .ek_chain = n->fx.tpm.issuer,
			    .ak_per_boot = ak_per_boot },
		.wg_pubkey = n->wg,
		.disk_uuid = uuid ? uuid : n->uuid,
		.endpoints = { n->endpoint },
		.n_endpoints = 1,
	};

	memset(d, 0, sizeof(*d));
	return joinclient_join(&c, out, d);
}

/* A successful join's answer: the node's id and key are those of its first join. */
static void check_joined(struct node *n, const struct join_info *j)
{
	check(j->disk_key && j->disk_key->len == KMS_DISK_KEY_LEN, "no 32-byte disk key");
	if (!n->id) {
		n->id = j->view.self.node_id;
		memcpy(n->key, j->disk_key->data, KMS_DISK_KEY_LEN);
	}
	check(j->view.self.node_id == n->id, "%s: node id %lld, first join gave %lld", n->endpoint,
	      (long long)j->view.self.node_id, (long long)n->id);
	check(!memcmp(j->disk_key->data, n->key, KMS_DISK_KEY_LEN),
	      "%s: another disk key than at its first join", n->endpoint);
}

/* A join that must succeed. */
static void join_ok(struct node *n, struct join_info *j)
{
	struct diag d;
	int ret = node_join(n, NULL, j, &d);

	check(ret == 0, "join of %s failed (%d): %s", n->endpoint, ret, d.msg);
	check_joined(n, j);
}

static bool peers_include(const struct join_info *j, int64_t id)
{
	for (size_t i = 0; i < j->view.n_peers; i++)
		if (j->view.peers[i].node_id == id)
			return true;
	return false;
}

/* ---- scenarios --------------------------------------------------------------------------- */

static void three_nodes_join_with_distinct_ids_addresses_and_keys(void **state)
{
	struct join_info j[3];

	for (int i = 0; i < 3; i++)
		join_ok(&nodes[i], &j[i]);
	for (int a = 0; a < 3; a++)
		for (int b = a + 1; b < 3; b++) {
			check(j[a].view.self.node_id != j[b].view.self.node_id,
			      "nodes %d and %d share an id", a, b);
			check(strcmp(j[a].view.self.overlay_v4, j[b].view.self.overlay_v4) != 0 &&
				  strcmp(j[a].view.self.overlay_v6, j[b].view.self.overlay_v6) !=
				      0 &&
				  strcmp(j[a].view.self.pod_cidr, j[b].view.self.pod_cidr) != 0,
			      "nodes %d and %d share an address (%s / %s)", a, b,
			      j[a].view.self.overlay_v4, j[b].view.self.overlay_v4);
			check(memcmp(j[a].disk_key->data, j[b].disk_key->data, 32) != 0,
			      "nodes %d and %d got the same disk key", a, b);
		}
	/* Each sees the members before it, never itself. */
	check(j[2].view.n_peers == 2 && peers_include(&j[2], j[0].view.self.node_id) &&
		  peers_include(&j[2], j[1].view.self.node_id),
	      "third node's peer set has %zu peers", j[2].view.n_peers);
	check(j[1].view.n_peers == 1 && peers_include(&j[1], j[0].view.self.node_id),
	      "second node's peer set has %zu peers", j[1].view.n_peers);
	check(!memcmp(j[2].view.peers[0].wg_pubkey, j[0].view.self.wg_pubkey, 32) ||
		  !memcmp(j[2].view.peers[1].wg_pubkey, j[0].view.self.wg_pubkey, 32),
	      "peer set does not carry the first node's WireGuard key");
	check(j[2].view.generation > j[1].view.generation &&
		  j[1].view.generation > j[0].view.generation,
	      "generations %llu, %llu, %llu do not increase",
	      (unsigned long long)j[0].view.generation, (unsigned long long)j[1].view.generation,
	      (unsigned long long)j[2].view.generation);
	check(!strcmp(j[2].view.peers[0].endpoints, nodes[0].endpoint) ||
		  !strcmp(j[2].view.peers[1].endpoints, nodes[0].endpoint),
	      "peer set lacks the first node's endpoint %s", nodes[0].endpoint);
	for (int i = 0; i < 3; i++)
		join_info_clear(&j[i]);
}

static void node_rejoining_after_a_tpm_reset_gets_the_same_disk_key(void **state)
{
	struct join_info j;

	check(fixture_reboot(&nodes[0].fx) == 0, "swtpm restart failed");
	join_ok(&nodes[0], &j); /* same id and key, checked inside */
	check(j.view.n_peers == 2, "rejoined node sees %zu peers", j.view.n_peers);
	join_info_clear(&j);
}

/* A node whose AK record lived in memory reboots: the old AK is still in its TPM, the record is
 * gone. It makes a new AK, which joind activates again; same node, same disk key. */
static void node_rebooted_without_its_ak_record_rejoins_with_a_new_ak(void **state)
{
	char cmd[PATH_MAX + 32];
	struct join_info j;
	struct diag d;
	int ret;

	check(fixture_reboot(&nodes[0].fx) == 0, "swtpm restart failed");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'/*", nodes[0].fx.ak_state);
	check(system(cmd) == 0, "clearing the AK record");
	ret = node_join(&nodes[0], NULL, &j, &d);
	check(ret < 0 && strstr(d.msg, "not recorded"),
	      "without ak_per_boot the unrecorded AK must be refused: %d: %s", ret, d.msg);
	ak_per_boot = true;
	join_ok(&nodes[0], &j); /* same id and key, checked inside */
	ak_per_boot = false;
	join_info_clear(&j);
}

static void rejoin_claiming_another_disk_is_refused_without_a_key(void **state)
{
	static const uint8_t other_uuid[16] = { 0xde, 0xad, 0xbe, 0xef };
	struct join_info j;
	struct diag d;
	int ret = node_join(&nodes[1], other_uuid, &j, &d);

	check(ret == -EACCES, "rejoin with another disk returned %d: %s", ret, d.msg);
	check(strstr(d.msg, "different disk") != NULL, "refusal does not name the disk: %s", d.msg);
	check(j.disk_key == NULL, "a refused node holds a disk key");
	join_ok(&nodes[1], &j); /* its own disk still works */
	join_info_clear(&j);
}

static int connect_raw(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(joind_port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	check(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s",
	      strerror(errno));
	return fd;
}

static void garbage_and_silent_connections_do_not_stop_the_next_join(void **state)
{
	static const char garbage[] = "GET / HTTP/1.0\r\n\r\n\x16\x03\x01\xff\xff garbage";
	struct join_info j;
	int g = connect_raw(), silent = connect_raw();
	int64_t t0;

	check(write(g, garbage, sizeof(garbage)) == (ssize_t)sizeof(garbage), "write garbage");
	t0 = now_ms();
	join_ok(&nodes[2], &j);
	check(now_ms() - t0 < JOIND_MS, "join waited %lld ms behind the silent connection",
	      (long long)(now_ms() - t0));
	join_info_clear(&j);
	close(g);
	close(silent);
}

/* A connection takes a worker once its TLS hello is complete (before that it waits in the
 * acceptor, tests/integration/test_hostile.c): hellos that are never followed up hold them. */
static void connections_beyond_the_workers_are_closed_at_once(void **state)
{
	struct pollfd p[WORKERS + 1];
	uint8_t hello[4096];
	size_t len = tls_client_hello(hello, sizeof(hello));
	struct join_info j;
	int closed = -1, n;

	check(len > 0, "no TLS ClientHello");
	/* Connections are accepted in order: the last one finds every worker taken. */
	for (int i = 0; i <= WORKERS; i++) {
		p[i] = (struct pollfd){ .fd = connect_raw(), .events = POLLIN };
		check(write(p[i].fd, hello, len) == (ssize_t)len, "write hello");
		usleep(50000);
	}
	/* The workers answer their hellos (readable, with data); the extra one is closed (EOF). */
	(void)poll(&p[WORKERS], 1, JOIND_MS / 4);
	n = 0;
	for (int i = 0; i <= WORKERS; i++) {
		char c;
		ssize_t r = recv(p[i].fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

		if (r == 0 || (r < 0 && errno == ECONNRESET)) {
			closed = i;
			n++;
		}
	}
	check(n == 1 && closed == WORKERS,
	      "want only the extra connection closed at once: %d closed, last %d", n, closed);
	for (int i = 0; i <= WORKERS; i++)
		close(p[i].fd);
	usleep(200000); /* the workers see the peers close their handshakes */
	join_ok(&nodes[1], &j);
	join_info_clear(&j);
}

static void node_with_other_pcrs_is_refused_with_the_check_named(void **state)
{
	struct join_info j;
	struct diag d;
	int ret = node_join(&nodes[NODE_BAD_PCR], NULL, &j, &d);

	check(ret == -EACCES, "node with another kernel: join returned %d: %s", ret, d.msg);
	check(strstr(d.msg, "policy") && strstr(d.msg, "PCR 4"),
	      "refusal does not name the policy check and PCR 4: %s", d.msg);
	check(j.disk_key == NULL, "a refused node holds a disk key");
}

struct attempt {
	struct node *n;
	struct join_info j;
	struct diag d;
	int ret;
};

static void *join_thread(void *arg)
{
	struct attempt *a = arg;

	a->ret = node_join(a->n, NULL, &a->j, &a->d);
	return NULL;
}

static void killed_joind_restarts_and_the_interrupted_node_joins(void **state)
{
	static const int delays_ms[KILL_ROUNDS] = { 5, 60, 150, 300 };
	struct node *e = &nodes[NODE_KILLED];

	for (int round = 0; round < KILL_ROUNDS; round++) {
		struct attempt a = { .n = e };
		pthread_t t;
		int ret = -1;

		check(pthread_create(&t, NULL, join_thread, &a) == 0, "pthread_create");
		usleep((useconds_t)delays_ms[round] * 1000);
		joind_stop(SIGKILL);
		pthread_join(t, NULL);
		if (a.ret == 0)
			check_joined(e, &a.j); /* finished before the kill: must be consistent */
		join_info_clear(&a.j);
		joind_start();
		/* The node retries with backoff, as an agent would. */
		for (int attempt = 0, backoff = 50; attempt < 6 && ret < 0;
		     attempt++, backoff *= 2) {
			struct join_info j;
			struct diag d;

			ret = node_join(e, NULL, &j, &d);
			if (ret == 0)
				check_joined(e, &j);
			else
				print_message("# round %d attempt %d: %s\n", round, attempt, d.msg);
			join_info_clear(&j);
			if (ret < 0)
				usleep((useconds_t)backoff * 1000);
		}
		check(ret == 0, "round %d: the interrupted node never joined", round);
	}
}

/* Last: stop joind and read the store it leaves behind. */
static void store_holds_every_member_once_with_the_keys_handed_out(void **state)
{
	const int members[] = { 0, 1, 2, NODE_KILLED };
	_cleanup_kms_ struct kms *k = NULL;
	struct membership *m = NULL;
	struct peer *peers = NULL;
	struct diag d = { { 0 } };
	uint64_t gen;
	size_t n = 0;

	joind_stop(SIGTERM);
	check(membership_open(db_path, &ranges, &m, &d) == 0, "open store: %s", d.msg);
	check(membership_snapshot(m, &gen, &peers, &n, &d) == 0, "snapshot: %s", d.msg);
	check(n == ARRAY_SIZE(members), "store holds %zu members, want %zu", n,
	      ARRAY_SIZE(members));
	check(kms_recovery_read(recovery_path, &k, &d) == 0, "recovery: %s", d.msg);
	for (size_t i = 0; i < ARRAY_SIZE(members); i++) {
		struct node *nd = &nodes[members[i]];
		_cleanup_secret_ struct secret *key = NULL;
		uint8_t ek[32];
		int count = 0;

		for (size_t p = 0; p < n; p++)
			count += peers[p].node_id == nd->id;
		check(count == 1, "node %s (id %lld) appears %d times", nd->endpoint,
		      (long long)nd->id, count);
		check(membership_check_disk_key(m, nd->id, nd->uuid, ek, &d) == 0, "%s: %s",
		      nd->endpoint, d.msg);
		check(kms_disk_key(k, ek, nd->uuid, &key, &d) == 0, "%s", d.msg);
		check(!memcmp(key->data, nd->key, KMS_DISK_KEY_LEN),
		      "%s: the key handed out is not the KMS's key for its EK and disk",
		      nd->endpoint);
	}
	free(peers);
	membership_close(m);
}

/* ---- set-up ------------------------------------------------------------------------------ */

/* The node policy, and every node's EK root (each swtpm has its own CA: joind trusts them all). */
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
	for (int i = 0; i < N_NODES && ret == 0; i++)
		ret = file_append(out, nodes[i].fx.tpm.ca);
	return fclose(out) == 0 ? ret : -EIO;
}

static int group_setup(void **state)
{
	static const uint8_t other_pcr4[32] = { 0xba, 0xd0 };
	_cleanup_kms_ struct kms *k = NULL;
	struct tpm *t;
	struct diag d;

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		return -1;
	snprintf(db_path, sizeof(db_path), "%s/members.db", dir);
	snprintf(recovery_path, sizeof(recovery_path), "%s/recovery", dir);
	snprintf(policy_path, sizeof(policy_path), "%s/node-policy.json", dir);
	snprintf(ca_path, sizeof(ca_path), "%s/ek-roots.pem", dir);
	snprintf(port_path, sizeof(port_path), "%s/port", dir);
	snprintf(log_path, sizeof(log_path), "%s/joind.log", dir);
	if (fixture_start(&joind_fx) < 0)
		return -1;
	for (int i = 0; i < N_NODES; i++) {
		if (fixture_start(&nodes[i].fx) < 0)
			return -1;
		memset(nodes[i].wg, 0x10 + i, sizeof(nodes[i].wg));
		memset(nodes[i].uuid, 0xa0 + i, sizeof(nodes[i].uuid));
		snprintf(nodes[i].endpoint, sizeof(nodes[i].endpoint), "192.0.2.%d:51820", i + 1);
	}
	/* Node D booted another kernel: one more measurement in PCR 4. */
	if (tpm_open(nodes[NODE_BAD_PCR].fx.tpm.tcti, &t, &d) < 0)
		return -1;
	if (tpm_pcr_extend(t, 4, other_pcr4, &d) < 0)
		return -1;
	tpm_close(t);
	if (kms_new_random(&k, &d) < 0 || kms_recovery_write(k, recovery_path, &d) < 0 ||
	    write_trust() < 0)
		return -1;
	joind_start();
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	if (joind_pid > 0) {
		kill(joind_pid, SIGKILL);
		waitpid(joind_pid, NULL, 0);
	}
	for (int i = 0; i < N_NODES; i++)
		fixture_stop(&nodes[i].fx);
	fixture_stop(&joind_fx);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(three_nodes_join_with_distinct_ids_addresses_and_keys),
		cmocka_unit_test(node_rejoining_after_a_tpm_reset_gets_the_same_disk_key),
		cmocka_unit_test(node_rebooted_without_its_ak_record_rejoins_with_a_new_ak),
		cmocka_unit_test(rejoin_claiming_another_disk_is_refused_without_a_key),
		cmocka_unit_test(garbage_and_silent_connections_do_not_stop_the_next_join),
		cmocka_unit_test(connections_beyond_the_workers_are_closed_at_once),
		cmocka_unit_test(node_with_other_pcrs_is_refused_with_the_check_named),
		cmocka_unit_test(killed_joind_restarts_and_the_interrupted_node_joins),
		cmocka_unit_test(store_holds_every_member_once_with_the_keys_handed_out),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
