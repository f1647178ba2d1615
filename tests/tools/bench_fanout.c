// SPDX-License-Identifier: Apache-2.0
/* Revocation fan-out benchmark: how long from a revocation in the membership store until the
 * last of N agents has it. All in one process, real components: a SQLite membership store in a
 * temp dir holding N synthetic members, the peer-set hub (hub.c) holding one attested-TLS
 * session per member over loopback TCP, and the agents' ends of those sessions, read by a few
 * receiver threads that decode each PEER_UPDATE, apply it to that agent's view and note the
 * moment the revoked node is gone from it.
 *
 * Not measured: attestation. The store does not check it, the members are synthetic, and the
 * sessions are atls sessions (TLS 1.3 handshake and HELLO with the node / join service roles)
 * with no quote exchanged; the hub never looks at attestation either.
 *
 * A round: t0, revoke under the store lock (a durable commit), unlock, hub_notify; done when
 * every other active agent saw the node gone. The revoked agent's own session gets its REMOVE
 * and is closed (timed, not waited for) and it sits out the later rounds.
 * Baseline, same run, same sessions before the hub takes them: one thread sends a PEER_UPDATE
 * of exactly a revocation delta's size to each session in turn with atls_send, and the agents
 * decode and apply it like a real one (it removes an id nobody has); so the ratio is what the
 * hub adds over the floor of pushing one message to N TLS sessions from one thread, with the
 * agents' own work (done here by a few threads for all of them) on both sides.
 * Prints "key value" lines for scripts/bench-fanout.
 *
 * usage: bench_fanout [AGENTS [ROUNDS [RECEIVERS [DIR]]]] */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/rand.h>

#include "joind_fixture.h"
#include "conclave/atls.h"
#include "conclave/hub.h"
#include "conclave/membership.h"
#include "conclave/peerset.h"
#include "conclave/util.h"
#include "conclave/wire.h"

#define MAX_AGENTS	  HUB_DEFAULT_MAX_SESSIONS
#define MAX_ROUNDS	  1000
#define MAX_RECEIVERS	  4
#define HANDSHAKE_SLICES  2	       /* server + client thread pairs doing handshakes */
#define ROUND_TIMEOUT_US  10e6	       /* a round that takes this long failed */
#define SETTLE_US	  20e3	       /* quiet time between rounds */
#define AGENT_TIMEOUT_MS  2000	       /* the agents' per-message deadline */
#define BASELINE_GHOST_ID 0x7fffffffLL /* the id the baseline's delta removes: nobody's */

struct agent {
	struct atls_session *cs, *ss; /* the agent's end, the hub's end */
	int cfd, sfd;
	struct peerset view;
	bool closed;	    /* receiver: the session ended */
	unsigned int round; /* receiver: the last round it completed */
	double seen_us;	    /* receiver: when it completed that round */
	double work_us;	    /* receiver: decode + apply of that message */
};

struct receiver {
	pthread_t thread;
	int efd; /* wakes it to stop */
	size_t first;
	struct pollfd *pfds;
	size_t *polled; /* the agent of each pfds entry */
};

static struct agent *agents;
static size_t n_agents;
static struct receiver receivers[MAX_RECEIVERS];
static int n_receivers, n_started;

static const char *const db_files[] = { "", "-wal", "-shm" };

/* What the receivers look for; main publishes victim_id and baseline before cur_round. */
static atomic_uint cur_round;
static atomic_bool baseline, stopping;
static _Atomic int64_t victim_id;
static atomic_int n_seen, n_closed, victim_done, failures, heartbeats, snapshots;
static _Atomic size_t hub_delta_bytes;
static double victim_seen_us; /* published by victim_done */

/* ---- clocks and statistics --------------------------------------------------------------- */

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void sleep_us(double us)
{
	struct timespec ts = { (time_t)(us / 1e6), (long)((long long)us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Percentile (0..100) of v, sorted in place; nearest rank. */
static double pct(double *v, size_t n, double p)
{
	long k;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	k = (long)((p / 100.0) * (double)n + 0.999999) - 1;
	return v[k < 0 ? 0 : k >= (long)n ? (long)n - 1 : k];
}

/* Resident set size of this process in KiB. */
static long rss_kb(void)
{
	return proc_rss_kb(getpid());
}

/* CPU time of a thread of this process, by tid: the clock id the kernel derives from it
 * (CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD, as glibc's pthread_getcpuclockid builds it); the hub's
 * thread is opaque, its tid is not. */
static double thread_cpu_us(pid_t tid)
{
	clockid_t c = tid ? (clockid_t)((~(unsigned int)tid << 3) | 6) : CLOCK_THREAD_CPUTIME_ID;
	struct timespec ts;

	if (clock_gettime(c, &ts) < 0)
		return 0;
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The one thread besides main when only the hub has started one. */
static pid_t other_thread(void)
{
	DIR *dir = opendir("/proc/self/task");
	struct dirent *e;
	pid_t tid = 0;

	while (dir && (e = readdir(dir)))
		if (e->d_name[0] != '.' && atoi(e->d_name) != getpid())
			tid = atoi(e->d_name);
	if (dir)
		closedir(dir);
	return tid;
}

/* Bytes malloc has handed out and not got back, over every arena. */
static size_t heap_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Count a failure; the first few are told. */
static void fail(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&failures, 1) >= 5)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* ---- the agents' side -------------------------------------------------------------------- */

static bool view_has(const struct peerset *v, int64_t id)
{
	size_t lo = 0, hi = v->n_peers;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v->peers[mid].node_id == id)
			return true;
		if (v->peers[mid].node_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* One PEER_UPDATE, as an agent handles it: decode the delta, apply it to the view, and see
 * whether this round's change has now arrived. */
static void handle(struct agent *a, const struct wire_msg *m)
{
	struct peerdelta pd = { 0 };
	struct diag d = { { 0 } };
	bool self_removed = false;
	unsigned int round;
	double t0 = now_us(), t;

	if (m->type != WIRE_PEER_UPDATE) {
		fail("bench-fanout: an agent got a %s\n", wire_type_name(m->type));
		return;
	}
	if (!m->peer_set.p) {
		atomic_fetch_add(&heartbeats, 1);
		return;
	}
	if (m->peer_set.len < 4 || memcmp(m->peer_set.p, PEERDELTA_MAGIC, 4) != 0) {
		/* The change log reaches back far enough: a snapshot means something is off. */
		atomic_fetch_add(&snapshots, 1);
		return;
	}
	if (peerdelta_decode(m->peer_set.p, m->peer_set.len, &pd, &d) < 0 ||
	    peerset_apply(&a->view, &pd, &self_removed, &d) < 0) {
		fail("bench-fanout: an agent's delta: %s\n", d.msg);
		peerdelta_free(&pd);
		return;
	}
	t = now_us();
	round = atomic_load(&cur_round);
	if (atomic_load(&baseline)) {
		a->view.generation = pd.from; /* a no-op delta: the hub's next one must still fit */
	} else {
		atomic_store(&hub_delta_bytes, m->peer_set.len);
		if (self_removed) {
			victim_seen_us = t;
			atomic_store(&victim_done, 1);
			round = 0;
		} else if (view_has(&a->view, atomic_load(&victim_id))) {
			round = 0;
		}
	}
	if (round && a->round != round) {
		a->round = round;
		a->seen_us = t;
		a->work_us = t - t0;
		atomic_fetch_add(&n_seen, 1);
	}
	peerdelta_free(&pd);
}

/* The hub closed it: stop polling. Freed at the end, so that the memory the hub gives back
 * when it stops is the hub's alone. */
static void session_ended(struct agent *a)
{
	a->closed = true;
	atomic_fetch_add(&n_closed, 1);
}

/* Read every message the agent has: atls_recv takes one frame, and another may already sit
 * decrypted inside OpenSSL where poll() cannot see it. */
static void drain(struct agent *a)
{
	do {
		struct wire_msg m;
		struct diag d = { { 0 } };
		int ret = atls_recv(a->cs, &m, &d);

		if (ret < 0) {
			if (ret != -ECONNRESET)
				fail("bench-fanout: an agent's session: %s\n", d.msg);
			session_ended(a);
			return;
		}
		handle(a, &m);
		wire_msg_free(&m);
	} while (atls_wait_readable(a->cs, 0) == 1);
}

static void *receive(void *arg)
{
	struct receiver *r = arg;

	while (!atomic_load(&stopping)) {
		size_t n = 0;
		int rc;

		for (size_t i = r->first; i < n_agents; i += (size_t)n_receivers)
			if (!agents[i].closed) {
				r->polled[n] = i;
				r->pfds[n++] =
				    (struct pollfd){ .fd = agents[i].cfd, .events = POLLIN };
			}
		r->pfds[n] = (struct pollfd){ .fd = r->efd, .events = POLLIN };
		rc = poll(r->pfds, n + 1, 1000);
		if (rc < 0 && errno != EINTR) {
			fail("bench-fanout: poll: %s\n", strerror(errno));
			break;
		}
		for (size_t i = 0; rc > 0 && i < n; i++)
			if (r->pfds[i].revents)
				drain(&agents[r->polled[i]]);
	}
	return NULL;
}

static int receivers_start(void)
{
	for (int t = 0; t < n_receivers; t++) {
		struct receiver *r = &receivers[t];
		size_t n = n_agents / (size_t)n_receivers + 2;

		r->first = (size_t)t;
		r->efd = eventfd(0, EFD_CLOEXEC);
		r->pfds = calloc(n, sizeof(*r->pfds));
		r->polled = calloc(n, sizeof(*r->polled));
		if (r->efd < 0 || !r->pfds || !r->polled ||
		    pthread_create(&r->thread, NULL, receive, r) != 0)
			return -1;
		n_started++;
	}
	return 0;
}

static void receivers_stop(void)
{
	atomic_store(&stopping, true);
	for (int t = 0; t < n_started; t++) {
		struct receiver *r = &receivers[t];

		if (write(r->efd, &(uint64_t){ 1 }, sizeof(uint64_t)) < 0)
			fail("bench-fanout: waking a receiver: %s\n", strerror(errno));
		pthread_join(r->thread, NULL);
		close(r->efd);
		free(r->pfds);
		free(r->polled);
	}
}

/* Wait until *counter reaches want; false after timeout_us. The times measured are the
 * receivers' own, so how soon this notices does not matter. */
static bool wait_for(atomic_int *counter, int want, double timeout_us)
{
	double end = now_us() + timeout_us;

	while (atomic_load(counter) < want)
		if (now_us() > end)
			return false;
		else
			sleep_us(200);
	return true;
}

/* ---- set-up ------------------------------------------------------------------------------ */

static struct join_record synthetic_record(size_t i)
{
	struct join_record r = { .ak_name_len = 34, .reset_count = 1, .clock = 1 };

	RAND_bytes(r.ek_id, sizeof(r.ek_id));
	RAND_bytes(r.wg_pubkey, sizeof(r.wg_pubkey));
	RAND_bytes(r.disk_uuid, sizeof(r.disk_uuid));
	RAND_bytes(r.ak_name + 2, 32);
	r.ak_name[1] = 0x0b;
	snprintf(r.endpoints, sizeof(r.endpoints), "192.0.2.%zu:51820", i % 254 + 1);
	return r;
}

/* Admit n members (one group commit: joins are not what is measured); G after them. */
static int admit_all(struct membership *m, size_t n, uint64_t *gen)
{
	struct diag d = { { 0 } };
	int ret = membership_batch_begin(m, &d);

	for (size_t i = 0; ret == 0 && i < n; i++) {
		struct join_record r = synthetic_record(i);
		struct join_result res;

		ret = membership_join(m, &r, &res, &d);
		*gen = res.generation;
	}
	if (ret == 0)
		ret = membership_batch_commit(m, &d);
	if (ret < 0)
		fprintf(stderr, "bench-fanout: admitting %zu members: %s\n", n, d.msg);
	return ret;
}

/* Every agent's view at G: itself, and every other member as a peer (sorted by node id, as
 * the snapshot is). */
static int build_views(struct membership *m, uint64_t *gen)
{
	struct peer *all = NULL;
	struct diag d = { { 0 } };
	size_t n = 0;

	if (membership_snapshot(m, gen, &all, &n, &d) < 0 || n != n_agents) {
		fprintf(stderr, "bench-fanout: snapshot: %s\n",
			n != n_agents ? "wrong size" : d.msg);
		free(all);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct peerset *v = &agents[i].view;

		v->generation = *gen;
		v->self = all[i];
		v->peers = malloc((n > 1 ? n - 1 : 1) * sizeof(*v->peers));
		if (!v->peers) {
			free(all);
			return -1;
		}
		memcpy(v->peers, all, i * sizeof(*all));
		memcpy(v->peers + i, all + i + 1, (n - i - 1) * sizeof(*all));
		v->n_peers = n - 1;
	}
	free(all);
	return 0;
}

/* N loopback TCP connections: connect, then accept the same one (nothing else connects). */
static int connect_all(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ret = 0;

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 64) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
		ret = -1;
	for (size_t i = 0; ret == 0 && i < n_agents; i++) {
		struct agent *g = &agents[i];

		g->cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (g->cfd < 0 || connect(g->cfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    (g->sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
			ret = -1;
	}
	if (ret < 0)
		fprintf(stderr, "bench-fanout: loopback connections: %s (open files limit?)\n",
			strerror(errno));
	if (lfd >= 0)
		close(lfd);
	return ret;
}

struct hs_job {
	pthread_t thread;
	struct atls_ctx *ctx;
	size_t lo, hi;
	struct diag d;
	int ret;
	bool server;
};

/* Handshakes of one slice of agents, in order: the job of the other side does the same slice
 * in the same order, so they meet. */
static void *handshakes(void *arg)
{
	struct hs_job *j = arg;
	const struct atls_opts so = { ATLS_ROLE_JOIND, ATLS_ROLE_NODE, 0 };
	const struct atls_opts co = { ATLS_ROLE_NODE, ATLS_ROLE_JOIND, 0 };

	for (size_t i = j->lo; j->ret == 0 && i < j->hi; i++) {
		struct agent *g = &agents[i];

		j->ret = j->server ? atls_server_accept(j->ctx, g->sfd, &so, &g->ss, &j->d)
				   : atls_client_connect(j->ctx, g->cfd, &co, &g->cs, &j->d);
	}
	return NULL;
}

static int handshake_all(struct atls_ctx *sctx, struct atls_ctx *cctx)
{
	struct hs_job jobs[2 * HANDSHAKE_SLICES];
	int ret = 0;

	for (int k = 0; k < 2 * HANDSHAKE_SLICES; k++) {
		size_t s = (size_t)(k / 2);

		jobs[k] = (struct hs_job){ .ctx = k % 2 ? cctx : sctx,
					   .server = k % 2 == 0,
					   .lo = n_agents * s / HANDSHAKE_SLICES,
					   .hi = n_agents * (s + 1) / HANDSHAKE_SLICES };
		if (pthread_create(&jobs[k].thread, NULL, handshakes, &jobs[k]) != 0)
			return -1; /* the process exits: threads need no joining */
	}
	for (int k = 0; k < 2 * HANDSHAKE_SLICES; k++) {
		pthread_join(jobs[k].thread, NULL);
		if (jobs[k].ret < 0 && ret == 0) {
			fprintf(stderr, "bench-fanout: %s handshake: %s\n",
				jobs[k].server ? "hub-side" : "agent-side", jobs[k].d.msg);
			ret = -1;
		}
	}
	for (size_t i = 0; i < n_agents; i++)
		atls_set_timeout(agents[i].cs, AGENT_TIMEOUT_MS);
	return ret;
}

static void raise_limit(int resource)
{
	struct rlimit r;

	if (getrlimit(resource, &r) == 0 && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		(void)setrlimit(resource, &r);
	}
}

/* ---- rounds ------------------------------------------------------------------------------ */

struct summary {
	double last[MAX_ROUNDS], first[MAX_ROUNDS], median[MAX_ROUNDS], work[MAX_ROUNDS];
	double sent[MAX_ROUNDS]; /* baseline: when the sender was done */
	double cpu[MAX_ROUNDS];	 /* the sender's (baseline) or the hub thread's CPU time */
	int n;
};

/* Every round's value in order, as "key v1,v2,..." (before pct sorts them). */
static void print_rounds(const char *key, const double *v, int n)
{
	printf("%s ", key);
	for (int i = 0; i < n; i++)
		printf("%s%.0f", i ? "," : "", v[i]);
	printf("\n");
}

/* Per-agent latencies of a completed round (agents that took part, i.e. seen this round). */
static void summarize(struct summary *s, unsigned int round, double t0, double *scratch)
{
	size_t k = 0;
	double *work = scratch + n_agents;

	for (size_t i = 0; i < n_agents; i++)
		if (agents[i].round == round) {
			work[k] = agents[i].work_us;
			scratch[k++] = agents[i].seen_us - t0;
		}
	s->first[s->n] = pct(scratch, k, 0);
	s->median[s->n] = pct(scratch, k, 50);
	s->last[s->n] = pct(scratch, k, 100);
	s->work[s->n] = pct(work, k, 50);
	s->n++;
}

/* The floor: one thread sends one frame of a revocation delta's size to every session. */
static int run_baseline(int rounds, uint64_t gen, struct summary *base, double *scratch)
{
	const struct peer_delta ghost = { .op = PEER_REMOVE, .peer.node_id = BASELINE_GHOST_ID };
	struct wire_msg m = { .type = WIRE_PEER_UPDATE, .generation = gen + 1 };
	uint8_t *doc = NULL;
	size_t len = 0;
	int ret = peerdelta_encode(gen, gen + 1, &ghost, 1, &doc, &len);

	if (ret < 0)
		return ret;
	m.peer_set = (struct blob){ doc, len };
	printf("delta_bytes %zu\n", len);
	atomic_store(&baseline, true);
	/* Round 0 warms up: each agent's first apply pays page faults that, in this one process,
	 * add up to hundreds of ms at N = 1000 (real agents pay theirs in parallel). */
	for (int r = 0; ret == 0 && r <= rounds; r++) {
		double t0, c0;

		atomic_store(&n_seen, 0);
		atomic_store(&cur_round, (unsigned int)r + 1);
		c0 = thread_cpu_us(0);
		t0 = now_us();
		for (size_t i = 0; ret == 0 && i < n_agents; i++) {
			struct diag d = { { 0 } };

			ret = atls_send(agents[i].ss, &m, &d);
			if (ret < 0)
				fprintf(stderr, "bench-fanout: baseline send: %s\n", d.msg);
		}
		if (r > 0) {
			base->sent[base->n] = now_us() - t0;
			base->cpu[base->n] = thread_cpu_us(0) - c0;
		}
		if (ret == 0 && !wait_for(&n_seen, (int)n_agents, ROUND_TIMEOUT_US)) {
			fprintf(stderr, "bench-fanout: baseline round %d: %d of %zu agents\n", r,
				atomic_load(&n_seen), n_agents);
			ret = -ETIMEDOUT;
		}
		if (ret == 0 && r > 0)
			summarize(base, (unsigned int)r + 1, t0, scratch);
		sleep_us(SETTLE_US);
	}
	atomic_store(&cur_round, 0);
	atomic_store(&baseline, false);
	free(doc);
	return ret;
}

struct fanout {
	struct summary s;
	double commit[MAX_ROUNDS], after_commit[MAX_ROUNDS], victim[MAX_ROUNDS];
	int n_victim;
};

static int run_fanout(struct membership *store, pthread_mutex_t *lock, struct hub *hub,
		      pid_t hub_tid, int rounds, int base_round, const size_t *order,
		      struct fanout *f, double *scratch)
{
	int alive = (int)n_agents;

	for (int r = 0; r < rounds; r++) {
		struct agent *v = &agents[order[r]];
		unsigned int round = (unsigned int)(base_round + r);
		struct diag d = { { 0 } };
		double t0, t1, c0 = thread_cpu_us(hub_tid);
		int ret;

		atomic_store(&n_seen, 0);
		atomic_store(&victim_done, 0);
		atomic_store(&victim_id, v->view.self.node_id);
		atomic_store(&cur_round, round);
		t0 = now_us();
		pthread_mutex_lock(lock);
		ret = membership_revoke(store, v->view.self.node_id, &d);
		pthread_mutex_unlock(lock);
		t1 = now_us();
		hub_notify(hub);
		if (ret < 0) {
			fprintf(stderr, "bench-fanout: revoke: %s\n", d.msg);
			return ret;
		}
		if (!wait_for(&n_seen, alive - 1, ROUND_TIMEOUT_US)) {
			fprintf(stderr,
				"bench-fanout: round %d: %d of %d agents saw the revocation\n",
				r + 1, atomic_load(&n_seen), alive - 1);
			return -ETIMEDOUT;
		}
		summarize(&f->s, round, t0, scratch);
		f->commit[r] = t1 - t0;
		f->after_commit[r] = f->s.last[f->s.n - 1] - (t1 - t0);
		/* The revoked agent: its REMOVE, then the hub closes its session. */
		if (wait_for(&victim_done, 1, 1e6))
			f->victim[f->n_victim++] = victim_seen_us - t0;
		f->s.cpu[f->s.n - 1] = thread_cpu_us(hub_tid) - c0; /* its push is over by now */
		alive--; /* the revoked agent sits out the later rounds */
		sleep_us(SETTLE_US);
	}
	atomic_store(&cur_round, 0);
	return 0;
}

/* ---- main -------------------------------------------------------------------------------- */

static int clamp(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* A pod CIDR per member out of 10.244.0.0/16: /24 as configured up to 256 members, smaller
 * ones beyond (the /16 holds only 256 /24s). */
static unsigned int pod_prefix_for(size_t n)
{
	unsigned int p = 24;

	while (p < 30 && ((size_t)1 << (p - 16)) < n)
		p++;
	return p;
}

static void shuffle(size_t *v, size_t n)
{
	for (size_t i = n; i-- > 1;) {
		uint32_t r;
		size_t j, t;

		RAND_bytes((uint8_t *)&r, sizeof(r));
		j = r % (i + 1);
		t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
}

int main(int argc, char **argv)
{
	int n = clamp(argc > 1 ? atoi(argv[1]) : 100, 3, MAX_AGENTS);
	int rounds = clamp(argc > 2 ? atoi(argv[2]) : 20, 1, MAX_ROUNDS);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	const char *parent = argc > 4 ? argv[4] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char dir[4096], path[4200];
	struct membership_config cfg = { "10.100.0.0/16", "fd00:100::/64", "10.244.0.0/16", 24, 0 };
	pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
	struct membership *store = NULL;
	struct atls_ctx *sctx = NULL, *cctx = NULL;
	struct hub *hub = NULL;
	static struct summary base;
	static struct fanout fo;
	struct diag d = { { 0 } };
	double t_setup = now_us(), t_hs, *scratch;
	long rss0, rss1, rss2, rss3, rss4;
	size_t heap3, heap4;
	pid_t hub_tid;
	size_t *order;
	uint64_t gen = 0;
	int ret = -1, closing;

	n_receivers =
	    argc > 3 && atoi(argv[3]) > 0 ? atoi(argv[3]) : (int)cpus; /* 0: one per CPU */
	n_receivers = clamp(n_receivers, 2, MAX_RECEIVERS);
	rounds = rounds < n - 1 ? rounds : n - 2; /* someone must be left to notice */
	n_agents = (size_t)n;
	cfg.pod_prefix = pod_prefix_for(n_agents);
	signal(SIGPIPE, SIG_IGN);
	raise_limit(RLIMIT_NOFILE);  /* two fds per agent */
	raise_limit(RLIMIT_MEMLOCK); /* each atls session keeps its exporter in a locked page */
	snprintf(dir, sizeof(dir), "%s/conclave-bench-fanout-XXXXXX", parent);
	agents = calloc(n_agents, sizeof(*agents));
	order = calloc(n_agents, sizeof(*order));
	scratch = calloc(2 * n_agents, sizeof(*scratch));
	if (!agents || !order || !scratch || !mkdtemp(dir)) {
		fprintf(stderr, "bench-fanout: set-up: %s\n", strerror(errno));
		free(agents);
		free(order);
		free(scratch);
		return 1;
	}
	for (size_t i = 0; i < n_agents; i++)
		agents[i].cfd = agents[i].sfd = -1;
	snprintf(path, sizeof(path), "%s/members.db", dir);
	printf("agents %d\nrounds %d\nreceivers %d\ncpus %ld\npod_prefix %u\n", n, rounds,
	       n_receivers, cpus, cfg.pod_prefix);

	if (membership_open(path, &cfg, &store, &d) < 0) {
		fprintf(stderr, "bench-fanout: store: %s\n", d.msg);
		goto out;
	}
	if (admit_all(store, n_agents, &gen) < 0 || build_views(store, &gen) < 0)
		goto out;
	{
		struct hub_config hc = { .store = &store, .store_lock = &store_lock };

		if (hub_start(&hc, &hub, &d) < 0 || atls_ctx_new(true, &sctx, &d) < 0 ||
		    atls_ctx_new(false, &cctx, &d) < 0) {
			fprintf(stderr, "bench-fanout: %s\n", d.msg);
			goto out;
		}
	}
	hub_tid = other_thread();
	rss0 = rss_kb();
	t_hs = now_us();
	if (connect_all() < 0 || handshake_all(sctx, cctx) < 0)
		goto out;
	printf("handshakes_s %.2f\n", (now_us() - t_hs) / 1e6);
	rss1 = rss_kb();
	if (receivers_start() < 0) {
		fprintf(stderr, "bench-fanout: receiver threads\n");
		goto out;
	}
	printf("setup_s %.2f\n", (now_us() - t_setup) / 1e6);

	/* The baseline first, on the same sessions, while the hub does not hold them yet. */
	if (run_baseline(rounds, gen, &base, scratch) < 0)
		goto out;

	for (size_t i = 0; i < n_agents; i++) {
		hub_add(hub, agents[i].ss, agents[i].sfd, agents[i].view.self.node_id, gen);
		agents[i].ss = NULL; /* the hub's now */
		agents[i].sfd = -1;
	}
	sleep_us(200e3); /* the hub takes them (and finds nothing to send: they are at G) */
	rss2 = rss_kb();
	for (size_t i = 0; i < n_agents; i++)
		order[i] = i;
	shuffle(order, n_agents);
	if (run_fanout(store, &store_lock, hub, hub_tid, rounds, rounds + 2, order, &fo, scratch) <
	    0)
		goto out;

	/* Memory of the held sessions: what the process gives back when the hub closes them. */
	malloc_trim(0);
	rss3 = rss_kb();
	heap3 = heap_bytes();
	closing = (int)n_agents - atomic_load(&n_closed);
	printf("hub_sessions %u\n", hub_sessions(hub));
	hub_stop(hub);
	hub = NULL;
	heap4 = heap_bytes();
	malloc_trim(0);
	rss4 = rss_kb();
	if (!wait_for(&n_closed, (int)n_agents, 5e6))
		fprintf(stderr, "bench-fanout: %d of %d agents saw the hub close their session\n",
			atomic_load(&n_closed), (int)n_agents);

	print_rounds("baseline_rounds_us", base.last, base.n);
	print_rounds("fanout_rounds_us", fo.s.last, fo.s.n);
	printf("baseline_send_us %.1f\n", pct(base.sent, (size_t)base.n, 50));
	printf("baseline_send_cpu_us %.1f\n", pct(base.cpu, (size_t)base.n, 50));
	printf("hub_cpu_us %.1f\n", pct(fo.s.cpu, (size_t)fo.s.n, 50));
	printf("baseline_us %.1f\n", pct(base.last, (size_t)base.n, 50));
	printf("baseline_p99_us %.1f\n", pct(base.last, (size_t)base.n, 99));
	printf("baseline_agent_work_us %.1f\n", pct(base.work, (size_t)base.n, 50));
	printf("fanout_us %.1f\n", pct(fo.s.last, (size_t)fo.s.n, 50));
	printf("fanout_p99_us %.1f\n", pct(fo.s.last, (size_t)fo.s.n, 99));
	printf("fanout_max_us %.1f\n", pct(fo.s.last, (size_t)fo.s.n, 100));
	printf("commit_us %.1f\n", pct(fo.commit, (size_t)fo.s.n, 50));
	printf("after_commit_us %.1f\n", pct(fo.after_commit, (size_t)fo.s.n, 50));
	printf("agent_first_us %.1f\n", pct(fo.s.first, (size_t)fo.s.n, 50));
	printf("agent_median_us %.1f\n", pct(fo.s.median, (size_t)fo.s.n, 50));
	printf("agent_last_us %.1f\n", pct(fo.s.last, (size_t)fo.s.n, 50));
	printf("agent_work_us %.1f\n", pct(fo.s.work, (size_t)fo.s.n, 50));
	printf("victim_us %.1f\nvictim_seen %d\n", pct(fo.victim, (size_t)fo.n_victim, 50),
	       fo.n_victim);
	printf("hub_delta_bytes %zu\n", atomic_load(&hub_delta_bytes));
	printf("rss_start_kb %ld\nrss_sessions_kb %ld\nrss_held_kb %ld\n", rss0, rss1, rss2);
	printf("rss_before_stop_kb %ld\nrss_after_stop_kb %ld\n", rss3, rss4);
	printf("pair_kb %.1f\n", (double)(rss1 - rss0) / n);
	closing = closing > 0 ? closing : 1;
	printf("held_session_kb %.1f\n", (double)(rss3 - rss4) / closing);
	/* The same from malloc's books (excludes the exporter's locked page, which is mmap'ed). */
	printf("held_session_heap_bytes %.0f\n", (double)(heap3 - heap4) / closing);
	printf("heartbeats %d\nsnapshots %d\n", atomic_load(&heartbeats), atomic_load(&snapshots));
	ret = 0;
out:
	hub_stop(hub);
	receivers_stop();
	for (size_t i = 0; i < n_agents; i++) {
		struct agent *g = &agents[i];

		atls_close(g->cs);
		if (g->cfd >= 0)
			close(g->cfd);
		atls_close(g->ss);
		if (g->sfd >= 0)
			close(g->sfd);
		peerset_clear(&g->view);
	}
	membership_close(store);
	atls_ctx_free(sctx);
	atls_ctx_free(cctx);
	for (size_t i = 0; i < ARRAY_SIZE(db_files); i++) {
		char p[4300];

		snprintf(p, sizeof(p), "%s%s", path, db_files[i]);
		unlink(p);
	}
	rmdir(dir);
	free(agents);
	free(order);
	free(scratch);
	printf("failures %d\n", atomic_load(&failures) + (ret < 0));
	return ret < 0 || atomic_load(&failures) ? 1 : 0;
}
