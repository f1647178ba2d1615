// SPDX-License-Identifier: Apache-2.0
/* Load and soak: N simulated agents against the real conclave-joind for a while, joining,
 * holding their sessions and applying peer-set updates, while nodes leave and come back with a
 * new WireGuard key (an update for everyone), new nodes join late, and some are revoked (they
 * leave for good). Each agent is a thread with its own swtpm (its own EK: a node is its TPM)
 * doing what conclave-agent does with its session: joinclient_subscribe, joinclient_next,
 * reconnect and rejoin with backoff on any error. joind's resident memory and descriptors are
 * sampled from /proc throughout.
 *
 * At the end (churn stopped, every agent back and quiet): joind is stopped and its store read;
 * every agent's last view must equal it exactly (generation, itself, every other active member
 * with its key and endpoints): no update lost. joind's descriptors, less one per held session,
 * must not be more than at the start: no descriptor leak. Memory is reported; it must stay
 * within a generous bound of the run's own start (SOAK_RSS_BOUND_KB).
 * Prints TAP (4 tests) and "# key value" lines (scripts/soak-load turns them into a table).
 *
 * usage: soak_join [AGENTS [SECONDS]]   (defaults 200, 600) */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "joind_fixture.h"
#include "conclave/admin.h"
#include "conclave/util.h"

#define CHURN_MS	  500  /* one churn event this often */
#define LATE_SHARE	  10   /* % of agents that first join during the run */
#define REVOKE_SHARE	  5    /* % of agents revoked during the run, at most */
#define SAMPLE_MS	  2000 /* joind's RSS and descriptors */
#define QUIET_MS	  3000 /* all agents at one generation this long: the end is reached */
#define SETTLE_MAX_S	  120
#define SOAK_RSS_BOUND_KB (256 * 1024)

struct sagent {
	struct jnode *n;
	pthread_t thread;
	struct join_info info; /* the view: info.view */
	bool late, revoked;
	atomic_bool connected, leave, started;
	atomic_ullong generation;
	atomic_uint joins, updates, reconnects;
	char error[256];
};

static struct jcluster cl;
static struct jnode *nodes;
static struct sagent *agents;
static size_t n_agents;
static atomic_bool stopping;
static EVP_PKEY *operator_key;
static char operator_pub[PATH_MAX + 8];

static unsigned int rnd(unsigned int n)
{
	unsigned int v = 0;

	RAND_bytes((unsigned char *)&v, sizeof(v));
	return n ? v % n : 0;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

/* ---- an agent -------------------------------------------------------------------------------- */

static void *agent_main(void *arg)
{
	struct sagent *a = arg;
	struct joinclient_session *sess = NULL;
	struct joinclient_config cfg;
	unsigned int backoff = 50;
	struct diag d;

	while (a->late && !atomic_load(&a->started) && !atomic_load(&stopping))
		sleep_ms(100);
	while (!atomic_load(&stopping)) {
		int ret;

		if (!sess) {
			jcluster_client(&cl, a->n, NULL, &cfg);
			join_info_clear(&a->info);
			ret = joinclient_subscribe(&cfg, &a->info, &sess, &d);
			if (ret == 0) {
				atomic_fetch_add(&a->joins, 1);
				atomic_store(&a->generation, a->info.view.generation);
				atomic_store(&a->connected, true);
				backoff = 50;
				continue;
			}
			snprintf(a->error, sizeof(a->error), "%s", d.msg);
			if (ret == -EACCES && a->revoked)
				break; /* it left for good */
			sleep_ms(backoff / 2 + rnd(backoff / 2 + 1));
			backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
			continue;
		}
		ret = joinclient_next(sess, &a->info.view, 200, &d);
		if (ret == 1) {
			atomic_fetch_add(&a->updates, 1);
			atomic_store(&a->generation, a->info.view.generation);
		}
		if (ret < 0 || atomic_load(&a->leave)) {
			bool left = atomic_exchange(&a->leave, false);

			if (ret < 0)
				snprintf(a->error, sizeof(a->error), "%s", d.msg);
			atomic_store(&a->connected, false);
			joinclient_close(sess);
			sess = NULL;
			if (ret == -EACCES && a->revoked)
				break;
			atomic_fetch_add(&a->reconnects, 1);
			if (left) { /* away a while; back with a new key: an update for everyone */
				sleep_ms(1000 + rnd(2000));
				a->n->wg[31]++;
			}
		}
	}
	atomic_store(&a->connected, false);
	joinclient_close(sess);
	return NULL;
}

/* ---- the operator ---------------------------------------------------------------------------- */

static int revoke_agent(struct sagent *a, struct diag *d)
{
	struct admin_config c = { .host = "127.0.0.1",
				  .port = cl.port,
				  .timeout_ms = 5000,
				  .cp_policy = &cl.cp.policy,
				  .cp_ca = cl.cp.ca,
				  .operator_key = operator_key };
	struct admin_request r = { .op = ADMIN_REVOKE, .node_id = a->info.view.self.node_id };
	struct admin_result res;
	int ret;

	a->revoked = true; /* before the push reaches it */
	ret = admin_call(&c, &r, &res, d);
	if (ret == 0 && res.code != WIRE_OK) {
		snprintf(d->msg, sizeof(d->msg), "revoke refused: %s", res.text);
		ret = -EACCES;
	}
	admin_result_clear(&res);
	return ret;
}

/* ---- measurements ---------------------------------------------------------------------------- */

struct sample {
	long rss_kb;
	int fds, sessions;
};

static struct sample sample_now(void)
{
	struct sample s = { proc_rss_kb(cl.pid), proc_fd_count(cl.pid), 0 };

	for (size_t i = 0; i < n_agents; i++)
		s.sessions += atomic_load(&agents[i].connected);
	return s;
}

/* Every agent that should be in is connected and all are at one generation, for QUIET_MS. */
static bool settled(void)
{
	uint64_t quiet_since = 0, end = mono_ms() + SETTLE_MAX_S * 1000;

	while (mono_ms() < end) {
		bool same = true;
		uint64_t g = 0;

		for (size_t i = 0; i < n_agents && same; i++) {
			struct sagent *a = &agents[i];

			if (a->revoked)
				continue;
			if (!atomic_load(&a->connected))
				same = false;
			else if (!g)
				g = atomic_load(&a->generation);
			else
				same = g == atomic_load(&a->generation);
		}
		if (!same)
			quiet_since = 0;
		else if (!quiet_since)
			quiet_since = mono_ms();
		else if (mono_ms() - quiet_since >= QUIET_MS)
			return true;
		sleep_ms(100);
	}
	return false;
}

static bool same_peer(const struct peer *a, const struct peer *b)
{
	return a->node_id == b->node_id && !memcmp(a->wg_pubkey, b->wg_pubkey, 32) &&
	       !strcmp(a->endpoints, b->endpoints) && !strcmp(a->overlay_v4, b->overlay_v4) &&
	       !strcmp(a->overlay_v6, b->overlay_v6) && !strcmp(a->pod_cidr, b->pod_cidr);
}

/* Agent a's view against the store's members; its first difference in why. */
static bool view_is_store(const struct sagent *a, uint64_t gen, const struct peer *m, size_t n,
			  char *why, size_t cap)
{
	const struct peerset *v = &a->info.view;
	size_t k = 0;

	if (v->generation != gen) {
		snprintf(why, cap, "generation %llu, the store's %llu",
			 (unsigned long long)v->generation, (unsigned long long)gen);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (m[i].node_id == v->self.node_id) {
			if (!same_peer(&m[i], &v->self)) {
				snprintf(why, cap, "its own entry differs from the store's");
				return false;
			}
			continue;
		}
		if (k >= v->n_peers || !same_peer(&m[i], &v->peers[k])) {
			snprintf(why, cap, "member %lld missing or different in its view",
				 (long long)m[i].node_id);
			return false;
		}
		k++;
	}
	if (k != v->n_peers) {
		snprintf(why, cap, "%zu peers, the store has %zu others", v->n_peers, k);
		return false;
	}
	return true;
}

static int peer_cmp(const void *x, const void *y)
{
	const struct peer *a = x, *b = y;

	return (a->node_id > b->node_id) - (a->node_id < b->node_id);
}

/* ---- the run ----------------------------------------------------------------------------------
 */

static int setup(size_t n)
{
	char prefix[PATH_MAX], key[PATH_MAX + 8];
	const char *why = NULL;
	struct diag d;

	nodes = calloc(n, sizeof(*nodes));
	agents = calloc(n, sizeof(*agents));
	if (!nodes || !agents || jcluster_setup(&cl, "soak", nodes, n) < 0)
		return -1;
	snprintf(prefix, sizeof(prefix), "%s/operator", cl.dir);
	snprintf(key, sizeof(key), "%s.key", prefix);
	snprintf(operator_pub, sizeof(operator_pub), "%s.pub", prefix);
	if (policy_keygen(prefix, &d) < 0 || policy_load_private(key, &operator_key, &d) < 0) {
		fprintf(stderr, "operator key: %s\n", d.msg);
		return -1;
	}
	cl.args.operator_key = operator_pub;
	cl.args.no_rate_limit = true; /* every agent comes from 127.0.0.1 */
	cl.args.workers = 16;
	cl.args.timeout_ms = 5000;
	cl.args.reattest_deadline_s = -1; /* these agents do not re-attest */
	cl.args.verbose = false;
	if (jcluster_start(&cl, &why) < 0) {
		fprintf(stderr, "joind: %s\n", why);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200;
	unsigned int seconds = argc > 2 ? (unsigned int)strtoul(argv[2], NULL, 10) : 600;
	unsigned int n_late, max_revoked, revoked = 0, leaves = 0, lates = 0, failed_revokes = 0;
	struct sample first, last, peak = { 0 };
	uint64_t t0, t_setup, next_sample = 0, next_late;
	struct peer *members = NULL;
	struct membership *m = NULL;
	size_t n_members = 0, lost = 0;
	struct diag d;
	uint64_t gen = 0;
	bool ok;

	signal(SIGPIPE, SIG_IGN);
	if (n < 4 || n > 1000 || seconds < 5) {
		fprintf(stderr, "usage: soak_join [AGENTS (4..1000) [SECONDS (>= 5)]]\n");
		return 2;
	}
	n_agents = n;
	n_late = (unsigned int)(n * LATE_SHARE / 100);
	max_revoked = (unsigned int)(n * REVOKE_SHARE / 100) + 1;
	printf("1..4\n# soak: %zu agents (%u joining late), %u s; setting up %zu swtpms\n", n,
	       n_late, seconds, n + 1);
	fflush(stdout);
	t_setup = mono_ms();
	if (setup(n) < 0) {
		printf("Bail out! set-up failed\n");
		return 1;
	}
	printf("# set up in %llu ms\n", (unsigned long long)(mono_ms() - t_setup));
	for (size_t i = 0; i < n; i++) {
		agents[i].n = &nodes[i];
		agents[i].late = i >= n - n_late;
		pthread_create(&agents[i].thread, NULL, agent_main, &agents[i]);
	}
	/* The first agents in, quiet: the baseline. */
	for (size_t i = n - n_late; i < n; i++)
		agents[i].revoked = true; /* not yet expected: settled() skips them */
	t0 = mono_ms();
	ok = settled();
	for (size_t i = n - n_late; i < n; i++)
		agents[i].revoked = false;
	first = sample_now();
	printf("# first joins settled in %llu ms\n", (unsigned long long)(mono_ms() - t0));
	printf(
	    "# baseline after the first joins%s: joind RSS %ld kB, %d descriptors, %d sessions\n",
	    ok ? "" : " (NOT settled)", first.rss_kb, first.fds, first.sessions);
	fflush(stdout);

	t0 = mono_ms();
	next_late = t0;
	while (mono_ms() - t0 < (uint64_t)seconds * 1000) {
		struct sagent *a = &agents[rnd((unsigned int)n)];
		unsigned int dice = rnd(100);

		if (lates < n_late && mono_ms() >= next_late) {
			atomic_store(&agents[n - n_late + lates++].started, true);
			next_late = mono_ms() + (uint64_t)seconds * 500 / (n_late + 1);
		} else if (dice < 5 && revoked < max_revoked && atomic_load(&a->connected) &&
			   !a->revoked) {
			if (revoke_agent(a, &d) < 0) {
				failed_revokes++;
				printf("# revoke failed: %s\n", d.msg);
			}
			revoked++;
		} else if (atomic_load(&a->connected) && !a->revoked) {
			atomic_store(&a->leave, true);
			leaves++;
		}
		if (mono_ms() >= next_sample) {
			struct sample s = sample_now();

			if (s.rss_kb > peak.rss_kb)
				peak.rss_kb = s.rss_kb;
			if (s.fds > peak.fds)
				peak.fds = s.fds;
			printf("# t=%llus joind RSS %ld kB, %d descriptors, %d sessions\n",
			       (unsigned long long)((mono_ms() - t0) / 1000), s.rss_kb, s.fds,
			       s.sessions);
			fflush(stdout);
			next_sample = mono_ms() + SAMPLE_MS;
		}
		sleep_ms(CHURN_MS);
	}
	while (lates < n_late)
		atomic_store(&agents[n - n_late + lates++].started, true);
	t0 = mono_ms();
	ok = settled();
	printf("# settled %llu ms after the churn stopped\n", (unsigned long long)(mono_ms() - t0));
	last = sample_now();
	printf(
	    "# end after %u leaves and returns, %u late joins, %u revocations: joind RSS %ld kB, "
	    "%d descriptors, %d sessions\n",
	    leaves, lates, revoked, last.rss_kb, last.fds, last.sessions);

	/* What joind holds, read with joind stopped, against every agent's last view. */
	atomic_store(&stopping, true);
	for (size_t i = 0; i < n; i++)
		pthread_join(agents[i].thread, NULL);
	jcluster_stop(&cl, SIGTERM);
	if (membership_open(cl.db, &cl.ranges, &m, &d) < 0 ||
	    membership_snapshot(m, &gen, &members, &n_members, &d) < 0) {
		printf("Bail out! store: %s\n", d.msg);
		return 1;
	}
	{
		unsigned int joins = 0, reconnects = 0, updates = 0;

		for (size_t i = 0; i < n; i++) {
			joins += atomic_load(&agents[i].joins);
			reconnects += atomic_load(&agents[i].reconnects);
			updates += atomic_load(&agents[i].updates);
		}
		printf("# agents: %u joins, %u reconnects, %u updates applied\n", joins, reconnects,
		       updates);
		for (size_t i = 0; i < n && i < 3; i++)
			printf("# agent %zu last error: %s\n", i, agents[i].error);
	}
	qsort(members, n_members, sizeof(*members), peer_cmp);
	for (size_t i = 0; i < n; i++) {
		char why[160];

		if (agents[i].revoked)
			continue;
		if (!view_is_store(&agents[i], gen, members, n_members, why, sizeof(why))) {
			if (lost++ < 5)
				printf("# agent %zu (node %lld): %s; last error: %s\n", i,
				       (long long)agents[i].info.view.self.node_id, why,
				       agents[i].error);
		}
	}
	printf("%s 1 - every agent settled (connected, one generation) after the churn\n",
	       ok ? "ok" : "not ok");
	printf("%s 2 - no lost update: %zu of %zu active agents' views equal the store "
	       "(generation %llu, %zu members)\n",
	       lost == 0 && failed_revokes == 0 ? "ok" : "not ok", n - revoked - lost, n - revoked,
	       (unsigned long long)gen, n_members);
	printf("%s 3 - no descriptor leak: %d descriptors beyond sessions at the end, %d at the "
	       "start\n",
	       last.fds - last.sessions <= first.fds - first.sessions ? "ok" : "not ok",
	       last.fds - last.sessions, first.fds - first.sessions);
	printf("%s 4 - joind's memory stays bounded: RSS %ld kB at the start, %ld kB peak, %ld kB "
	       "at the end\n",
	       last.rss_kb - first.rss_kb < SOAK_RSS_BOUND_KB ? "ok" : "not ok", first.rss_kb,
	       peak.rss_kb > last.rss_kb ? peak.rss_kb : last.rss_kb, last.rss_kb);
	printf("# rss_start_kb %ld\n# rss_peak_kb %ld\n# rss_end_kb %ld\n# fds_start %d\n"
	       "# fds_end %d\n# sessions_start %d\n# sessions_end %d\n# leaves %u\n# revoked %u\n"
	       "# late %u\n# generation %llu\n",
	       first.rss_kb, peak.rss_kb, last.rss_kb, first.fds, last.fds, first.sessions,
	       last.sessions, leaves, revoked, lates, (unsigned long long)gen);
	fflush(stdout); /* before the long teardown of every swtpm */
	free(members);
	membership_close(m);
	for (size_t i = 0; i < n; i++)
		join_info_clear(&agents[i].info);
	EVP_PKEY_free(operator_key);
	jcluster_teardown(&cl);
	free(agents);
	free(nodes);
	return 0;
}
