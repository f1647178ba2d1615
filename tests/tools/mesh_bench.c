// SPDX-License-Identifier: Apache-2.0
/* mesh_bench: the node-side half of scripts/bench-mesh, run as root inside a debug node VM.
 *
 *   mesh_bench apply [ROUNDS]        time mesh_apply on a 100-peer set, and its two parts alone
 *   mesh_bench restart PEERS [TIMEOUT_S]
 *                                    stop conclave-agent (PID 1 starts a new one after 1 s) and
 *                                    time the new one from its creation (its start time in
 *                                    /proc) until its status says running with PEERS peers,
 *                                    and when each state was first seen (20 ms polls)
 *
 * apply: a scratch WireGuard interface (cncb0, down: no handshakes) with a fresh key and a
 * scratch datapath (maps only, pinned under /sys/fs/bpf/conclave-bench, not attached), so the
 * agent's own cnc0 and datapath are not touched. Each round: a new mesh applies 100 synthetic
 * peers (cold, as an agent's first apply), re-keys one, removes one, removes all; then the same
 * four changes as one wg_set_peers and one datapath_apply_peers each, the floor of any mesh.
 * Medians over the rounds, in microseconds. Both scratch objects are removed at the end.
 *
 * Output: "key value" lines. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "conclave/agent.h"
#include "conclave/datapath.h"
#include "conclave/mesh.h"
#include "conclave/peerset.h"
#include "conclave/rtnl.h"
#include "conclave/wg.h"

#define N_PEERS	    100
#define VICTIM	    49 /* the peer re-keyed, then removed */
#define SCRATCH_IF  "cncb0"
#define SCRATCH_PIN "/sys/fs/bpf/conclave-bench"
#define MAX_ROUNDS  1000

enum op { OP_COLD, OP_REKEY, OP_REMOVE1, OP_CLEAR, OP_MAX };
static const char *const op_names[OP_MAX] = { "cold", "rekey1", "remove1", "clear" };

static double now_us(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* --- apply ---------------------------------------------------------------------------------- */

struct scratch {
	struct wg *wg;
	struct datapath *dp;
	struct peer peers[N_PEERS];
	uint8_t spare_key[WG_KEY_LEN]; /* the victim's new key */
	struct peerset all, rekeyed, minus1, none;
	/* the baseline's inputs, made from the same peers the way mesh.c makes them */
	struct wg_peer wg_all[N_PEERS], wg_rekeyed;
	struct dp_peer_entry dp_all[N_PEERS], dp_minus1[N_PEERS];
	uint8_t keys_minus1[N_PEERS][WG_KEY_LEN];
};

static int fail(const char *what, const struct diag *d)
{
	fprintf(stderr, "mesh_bench: %s: %s\n", what, d->msg);
	return -1;
}

static int make_peers(struct scratch *s, struct diag *d)
{
	struct secret *key = NULL;
	uint8_t pub[WG_KEY_LEN];

	for (int i = 0; i < N_PEERS; i++) {
		struct peer *p = &s->peers[i];

		if (wg_generate_key(&key, p->wg_pubkey, d) < 0)
			return -1;
		secret_free(key);
		key = NULL;
		p->node_id = i + 1;
		snprintf(p->endpoints, sizeof(p->endpoints), "192.0.2.%d:51820", i + 1);
		snprintf(p->overlay_v4, sizeof(p->overlay_v4), "10.100.1.%d", i + 1);
		snprintf(p->overlay_v6, sizeof(p->overlay_v6), "fd00:100::1:%x", i + 1);
		snprintf(p->pod_cidr, sizeof(p->pod_cidr), "10.244.%d.0/24", i + 1);
	}
	if (wg_generate_key(&key, pub, d) < 0)
		return -1;
	secret_free(key);
	memcpy(s->spare_key, pub, WG_KEY_LEN);
	return 0;
}

/* The four peer sets (views of one node, id 1000, that is none of the peers). */
static int make_sets(struct scratch *s)
{
	struct peerset *sets[] = { &s->all, &s->rekeyed, &s->minus1, &s->none };

	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		sets[i]->self.node_id = 1000;
		sets[i]->peers = calloc(N_PEERS, sizeof(struct peer));
		if (!sets[i]->peers)
			return -1;
	}
	memcpy(s->all.peers, s->peers, sizeof(s->peers));
	s->all.n_peers = N_PEERS;
	memcpy(s->rekeyed.peers, s->peers, sizeof(s->peers));
	memcpy(s->rekeyed.peers[VICTIM].wg_pubkey, s->spare_key, WG_KEY_LEN);
	s->rekeyed.n_peers = N_PEERS;
	for (int i = 0, k = 0; i < N_PEERS; i++)
		if (i != VICTIM)
			s->minus1.peers[k++] = s->rekeyed.peers[i];
	s->minus1.n_peers = N_PEERS - 1;
	return 0;
}

static int make_baseline_inputs(struct scratch *s, struct diag *d)
{
	for (int i = 0, k = 0; i < N_PEERS; i++) {
		const struct peer *p = &s->peers[i];
		struct wg_peer *w = &s->wg_all[i];
		char host[INET6_ADDRSTRLEN];

		memcpy(w->pubkey, p->wg_pubkey, WG_KEY_LEN);
		w->keepalive_s = AGENT_DEFAULT_KEEPALIVE_S;
		if (mesh_parse_endpoint(p->endpoints, 0, &w->endpoint) < 0 ||
		    mesh_allowed_ips(p, w->allowed, WG_MAX_ALLOWED, &w->n_allowed) < 0) {
			diag_set(d, "peer %d: bad endpoint or addresses", i);
			return -1;
		}
		snprintf(host, sizeof(host), "192.0.2.%d", i + 1);
		dp_endpoint_parse(host, 51820, &s->dp_all[i].ep);
		s->dp_all[i].peer.node_id = (uint32_t)p->node_id;
		if (i != VICTIM) {
			s->dp_minus1[k] = s->dp_all[i];
			memcpy(s->keys_minus1[k++], p->wg_pubkey, WG_KEY_LEN);
		}
	}
	s->wg_rekeyed = s->wg_all[VICTIM];
	memcpy(s->wg_rekeyed.pubkey, s->spare_key, WG_KEY_LEN);
	return 0;
}

/* WireGuard and the datapath hold exactly want peers (checked once, untimed). */
static int check_holds(struct scratch *s, size_t want, const char *after, struct diag *d)
{
	struct wg_device dev = { 0 };
	size_t in_dp = 0;
	int ret = wg_get_device(s->wg, SCRATCH_IF, &dev, d);

	if (ret == 0)
		ret = datapath_peer_count(s->dp, &in_dp, d);
	if (ret == 0 && (dev.n_peers != want || in_dp != want)) {
		diag_set(d, "after %s: WireGuard holds %zu peers, the datapath %zu; expected %zu",
			 after, dev.n_peers, in_dp, want);
		ret = -1;
	}
	wg_device_free(&dev);
	return ret;
}

/* One round of mesh_apply: cold, re-key, remove one, clear; times in t[op]. */
static int mesh_round(struct scratch *s, bool check, double t[OP_MAX], struct diag *d)
{
	const struct peerset *seq[OP_MAX] = { &s->all, &s->rekeyed, &s->minus1, &s->none };
	const size_t holds[OP_MAX] = { N_PEERS, N_PEERS, N_PEERS - 1, 0 };
	struct mesh_config mc = { .wg = s->wg,
				  .wg_ifname = SCRATCH_IF,
				  .dp = s->dp,
				  .keepalive_s = AGENT_DEFAULT_KEEPALIVE_S };
	struct mesh *m = NULL;
	int ret = mesh_new(&mc, &m, d);

	for (int op = 0; ret == 0 && op < OP_MAX; op++) {
		double t0 = now_us(CLOCK_MONOTONIC);

		ret = mesh_apply(m, seq[op], NULL, d);
		t[op] = now_us(CLOCK_MONOTONIC) - t0;
		if (ret == 0 && check)
			ret = check_holds(s, holds[op], op_names[op], d);
	}
	mesh_free(m);
	return ret;
}

/* The same four changes as the two calls they need at least. */
static int parts_round(struct scratch *s, double wg_t[OP_MAX], double dp_t[OP_MAX], struct diag *d)
{
	const uint8_t(*victim_old)[WG_KEY_LEN] =
	    (const uint8_t(*)[WG_KEY_LEN])s->peers[VICTIM].wg_pubkey;
	const uint8_t(*victim_new)[WG_KEY_LEN] = (const uint8_t(*)[WG_KEY_LEN])s->spare_key;
	struct dp_apply_stats st;
	double t0;
	int ret;

#define TIMED(into, call)                              \
	do {                                           \
		t0 = now_us(CLOCK_MONOTONIC);          \
		ret = (call);                          \
		(into) = now_us(CLOCK_MONOTONIC) - t0; \
		if (ret < 0)                           \
			return ret;                    \
	} while (0)
	TIMED(wg_t[OP_COLD], wg_set_peers(s->wg, SCRATCH_IF, s->wg_all, N_PEERS, NULL, 0, d));
	TIMED(dp_t[OP_COLD], datapath_apply_peers(s->dp, s->dp_all, N_PEERS, &st, d));
	TIMED(wg_t[OP_REKEY], wg_set_peers(s->wg, SCRATCH_IF, &s->wg_rekeyed, 1, victim_old, 1, d));
	TIMED(dp_t[OP_REKEY], datapath_apply_peers(s->dp, s->dp_all, N_PEERS, &st, d));
	TIMED(wg_t[OP_REMOVE1], wg_set_peers(s->wg, SCRATCH_IF, NULL, 0, victim_new, 1, d));
	TIMED(dp_t[OP_REMOVE1], datapath_apply_peers(s->dp, s->dp_minus1, N_PEERS - 1, &st, d));
	TIMED(wg_t[OP_CLEAR],
	      wg_set_peers(s->wg, SCRATCH_IF, NULL, 0, (const uint8_t(*)[WG_KEY_LEN])s->keys_minus1,
			   N_PEERS - 1, d));
	TIMED(dp_t[OP_CLEAR], datapath_apply_peers(s->dp, NULL, 0, &st, d));
#undef TIMED
	return 0;
}

static int scratch_open(struct scratch *s, struct diag *d)
{
	struct dp_opts o = { .pin_root = SCRATCH_PIN, .reset = true };
	struct secret *key = NULL;
	uint8_t pub[WG_KEY_LEN];
	int ifindex = 0, lo = 0;

	rtnl_link_delete(SCRATCH_IF, d); /* left by an interrupted run: -ENODEV otherwise */
	datapath_unpin(SCRATCH_PIN, d);
	if (wg_open(&s->wg, d) < 0 || rtnl_link_ensure(SCRATCH_IF, "wireguard", &ifindex, d) < 0 ||
	    wg_generate_key(&key, pub, d) < 0 || wg_set_device(s->wg, SCRATCH_IF, key, 0, d) < 0) {
		secret_free(key);
		return fail("scratch WireGuard interface " SCRATCH_IF, d);
	}
	secret_free(key);
	if (rtnl_link_get("lo", &lo, NULL, d) < 0)
		return fail("lo", d);
	o.ifindex = lo;
	o.config.wg_port = 51820;
	o.config.strict = 1;
	if (datapath_ensure_bpffs("/sys/fs/bpf", d) < 0 || datapath_open(&o, &s->dp, d) < 0)
		return fail("scratch datapath " SCRATCH_PIN, d);
	return 0;
}

static void scratch_close(struct scratch *s)
{
	struct diag d = { { 0 } };

	datapath_close(s->dp);
	if (datapath_unpin(SCRATCH_PIN, &d) < 0)
		fail("cleanup", &d);
	if (rtnl_link_delete(SCRATCH_IF, &d) < 0 && s->wg)
		fail("cleanup", &d);
	wg_close(s->wg);
	free(s->all.peers);
	free(s->rekeyed.peers);
	free(s->minus1.peers);
	free(s->none.peers);
}

static int apply_bench(int rounds)
{
	static double mesh_t[OP_MAX][MAX_ROUNDS], wg_t[OP_MAX][MAX_ROUNDS],
	    dp_t[OP_MAX][MAX_ROUNDS];
	struct scratch *s = calloc(1, sizeof(*s));
	struct diag d = { { 0 } };
	int ret = -1;

	if (!s)
		return 1;
	if (scratch_open(s, &d) < 0)
		goto out;
	if (make_peers(s, &d) < 0 || make_baseline_inputs(s, &d) < 0 || make_sets(s) < 0) {
		fail("peers", &d);
		goto out;
	}
	for (int r = 0; r < rounds; r++) {
		double m[OP_MAX] = { 0 }, w[OP_MAX] = { 0 }, p[OP_MAX] = { 0 };

		if (mesh_round(s, r == 0, m, &d) < 0) {
			fail("mesh_apply", &d);
			goto out;
		}
		if (parts_round(s, w, p, &d) < 0) {
			fail("baseline", &d);
			goto out;
		}
		for (int op = 0; op < OP_MAX; op++) {
			mesh_t[op][r] = m[op];
			wg_t[op][r] = w[op];
			dp_t[op][r] = p[op];
		}
	}
	printf("peers %d\nrounds %d\n", N_PEERS, rounds);
	for (int op = 0; op < OP_MAX; op++)
		printf("%s_mesh_us %.0f\n%s_wg_us %.0f\n%s_dp_us %.0f\n", op_names[op],
		       median(mesh_t[op], rounds), op_names[op], median(wg_t[op], rounds),
		       op_names[op], median(dp_t[op], rounds));
	ret = 0;
out:
	scratch_close(s);
	free(s);
	return ret == 0 ? 0 : 1;
}

/* --- restart -------------------------------------------------------------------------------- */

/* A conclave-agent process other than not, or 0. */
static pid_t find_agent(pid_t not )
{
	DIR *proc = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;

	while (proc && !found && (e = readdir(proc))) {
		char path[64], comm[32] = "";
		pid_t pid = (pid_t)atoi(e->d_name);
		FILE *f;

		if (pid <= 0 || pid == not )
			continue;
		snprintf(path, sizeof(path), "/proc/%d/comm", pid);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && !strcmp(comm, "conclave-agent\n"))
			found = pid;
		fclose(f);
	}
	if (proc)
		closedir(proc);
	return found;
}

/* When pid was created (fork), in seconds of CLOCK_BOOTTIME; negative if unknown. */
static double start_time_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ticks = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	/* after ")": field 3 (state) onwards; starttime is field 22 */
	for (int field = 3; p && field <= 22; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p, " %llu", &ticks) != 1)
		return -1;
	return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

/* The agent's status line, parsed; NULL while nobody answers. */
static json_object *agent_status(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[4096];
	size_t len = 0;
	ssize_t n;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", AGENT_DEFAULT_STATUS_PATH);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	return json_tokener_parse(buf);
}

static void sleep_ms(int ms)
{
	struct timespec t = { 0, (long)ms * 1000000 };

	nanosleep(&t, NULL);
}

static int restart_bench(int peers, int timeout_s)
{
	double kill_s, born_s, deadline, seen_at = 0;
	char last[32] = "";
	pid_t old = find_agent(0), pid = 0;

	if (!old) {
		fprintf(stderr, "mesh_bench: no conclave-agent is running\n");
		return 1;
	}
	kill_s = now_us(CLOCK_BOOTTIME) / 1e6;
	deadline = kill_s + timeout_s;
	if (kill(old, SIGTERM) < 0) {
		fprintf(stderr, "mesh_bench: cannot stop conclave-agent (%d): %s\n", old,
			strerror(errno));
		return 1;
	}
	while (!(pid = find_agent(old)) && now_us(CLOCK_BOOTTIME) / 1e6 < deadline)
		sleep_ms(10);
	born_s = pid ? start_time_s(pid) : -1;
	if (born_s < 0) {
		fprintf(stderr, "mesh_bench: no new conclave-agent within %d s\n", timeout_s);
		return 1;
	}
	printf("old_pid %d\nnew_pid %d\nagent_start_s %.2f\nkill_to_start_ms %.0f\n", old, pid,
	       born_s, (born_s - kill_s) * 1e3);
	/* Every state the new agent shows, when first seen (polled every 20 ms). */
	while (now_us(CLOCK_BOOTTIME) / 1e6 < deadline) {
		json_object *st = agent_status(), *v;
		double at = now_us(CLOCK_BOOTTIME) / 1e6;
		const char *state = "";
		int n = -1;

		if (st && json_object_object_get_ex(st, "state", &v))
			state = json_object_get_string(v);
		if (st && json_object_object_get_ex(st, "peers", &v))
			n = json_object_get_int(v);
		if (state[0] && strcmp(state, last)) {
			printf("state_%s_ms %.0f\n", state, (at - born_s) * 1e3);
			snprintf(last, sizeof(last), "%s", state);
		}
		if (!strcmp(state, "running") && n == peers)
			seen_at = at;
		json_object_put(st);
		if (seen_at > 0)
			break;
		sleep_ms(20);
	}
	if (seen_at <= 0) {
		fprintf(stderr,
			"mesh_bench: the new agent is not running with %d peers after %d s "
			"(last state '%s')\n",
			peers, timeout_s, last);
		return 1;
	}
	printf("start_to_running_ms %.0f\n", (seen_at - born_s) * 1e3);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && argc <= 3 && !strcmp(argv[1], "apply")) {
		int rounds = argc == 3 ? atoi(argv[2]) : 10;

		if (rounds < 1 || rounds > MAX_ROUNDS) {
			fprintf(stderr, "mesh_bench: rounds: 1 to %d\n", MAX_ROUNDS);
			return 2;
		}
		return apply_bench(rounds);
	}
	if (argc >= 3 && argc <= 4 && !strcmp(argv[1], "restart"))
		return restart_bench(atoi(argv[2]), argc == 4 ? atoi(argv[3]) : 60);
	fprintf(stderr,
		"usage: mesh_bench apply [ROUNDS] | mesh_bench restart PEERS [TIMEOUT_S]\n");
	return 2;
}
