// SPDX-License-Identifier: Apache-2.0
/* The datapath on real traffic. Three network namespaces (the enforcing "node", an "att"ested
 * peer, an "una"ttested host) hang off a bridge in a fourth ("sw"itch) namespace; the programs
 * are attached to the node's eth0 from this process (setns for the netlink part) with their maps
 * pinned in a private bpffs. The host has no WireGuard, so attested traffic is modelled as what
 * WireGuard puts on the wire: UDP from the peer's endpoint (its address and WireGuard port) to
 * the node's WireGuard port. Sockets are created inside the namespaces, used from here. Root. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <cmocka.h>

#include "conclave/datapath.h"
#include "conclave/util.h"
#include "swtpm_harness.h"

#define WG_PORT	     51820
#define JOIN_PORT    9443
#define ALLOWED_PORT 10250
#define PLAIN_PORT   7000
#define NS_PREFIX    "cdpt-"

enum host { SW, NODE, ATT, UNA, NHOSTS };
static const char *const host_names[NHOSTS] = { "sw", "node", "att", "una" };
static const char *const addr4[NHOSTS] = { NULL, "10.77.0.1", "10.77.0.2", "10.77.0.3" };
static const char *const addr6[NHOSTS] = { NULL, "fd77::1", "fd77::2", "fd77::3" };

static struct {
	char ns[NHOSTS][32];
	char bpffs[64];
	char pin_root[96];
	int ifindex; /* the node's eth0, inside its namespace */
	bool mounted;
} net;

struct fx {
	struct datapath *dp;
	struct dp_opts opts;
};

/* ---- namespaces ---- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "# command failed (status %d): %s\n", rc, cmd);
	return rc == 0 ? 0 : -1;
}

/* Enter h's network namespace (this thread only); returns the fd to come back with. */
static int ns_enter(enum host h)
{
	char path[64];
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), fd;

	snprintf(path, sizeof(path), "/run/netns/%s", net.ns[h]);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (self < 0 || fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		fprintf(stderr, "# cannot enter namespace %s: %s\n", net.ns[h], strerror(errno));
		abort();
	}
	close(fd);
	return self;
}

static void ns_leave(int self)
{
	if (setns(self, CLONE_NEWNET) < 0)
		abort();
	close(self);
}

/* Namespaces and bpffs mounts of earlier runs that died before their teardown. */
static void reap_stale(void)
{
	DIR *dir = opendir("/run/netns");
	struct dirent *de;
	char path[PATH_MAX];

	while (dir && (de = readdir(dir))) {
		long pid;

		if (strncmp(de->d_name, NS_PREFIX, strlen(NS_PREFIX)))
			continue;
		pid = strtol(de->d_name + strlen(NS_PREFIX), NULL, 10);
		if (pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
			sh("ip netns del %s", de->d_name);
			snprintf(path, sizeof(path), "/tmp/" NS_PREFIX "%ld-bpf", pid);
			umount2(path, MNT_DETACH);
			rmdir(path);
			snprintf(path, sizeof(path), "/tmp/" NS_PREFIX "%ld-bpf-ensure", pid);
			umount2(path, MNT_DETACH);
			rmdir(path);
		}
	}
	if (dir)
		closedir(dir);
}

static int net_teardown(void **state)
{
	for (int h = 0; h < NHOSTS; h++)
		if (net.ns[h][0])
			sh("ip netns del %s 2>/dev/null || true", net.ns[h]);
	if (net.mounted && umount2(net.bpffs, MNT_DETACH) < 0)
		fprintf(stderr, "# cannot unmount %s: %s\n", net.bpffs, strerror(errno));
	if (net.bpffs[0])
		rmdir(net.bpffs);
	memset(&net, 0, sizeof(net));
	return 0;
}

static int net_setup(void **state)
{
	int self;

	if (geteuid() != 0) {
		fprintf(stderr, "# test_datapath needs root (network namespaces, BPF)\n");
		return -1;
	}
	reap_stale();
	for (int h = 0; h < NHOSTS; h++) {
		snprintf(net.ns[h], sizeof(net.ns[h]), NS_PREFIX "%d-%s", (int)getpid(),
			 host_names[h]);
		if (sh("ip netns add %s", net.ns[h]) ||
		    sh("ip netns exec %s sysctl -qw net.ipv6.conf.default.accept_dad=0 "
		       "net.ipv6.conf.all.accept_dad=0",
		       net.ns[h]))
			goto fail;
	}
	if (sh("ip -n %s link add br0 type bridge mcast_snooping 0 && ip -n %s link set br0 up",
	       net.ns[SW], net.ns[SW]))
		goto fail;
	for (int h = NODE; h < NHOSTS; h++)
		if (sh("ip -n %s link add v-%s type veth peer name eth0 netns %s", net.ns[SW],
		       host_names[h], net.ns[h]) ||
		    sh("ip -n %s link set v-%s master br0 up", net.ns[SW], host_names[h]) ||
		    sh("ip -n %s link set lo up && ip -n %s link set eth0 up", net.ns[h],
		       net.ns[h]) ||
		    sh("ip -n %s addr add %s/24 dev eth0 && ip -n %s addr add %s/64 dev eth0 nodad",
		       net.ns[h], addr4[h], net.ns[h], addr6[h]))
			goto fail;
	snprintf(net.bpffs, sizeof(net.bpffs), "/tmp/" NS_PREFIX "%d-bpf", (int)getpid());
	if (mkdir(net.bpffs, 0700) < 0 || mount("bpf", net.bpffs, "bpf", 0, "mode=0700") < 0) {
		fprintf(stderr, "# cannot mount bpffs at %s: %s\n", net.bpffs, strerror(errno));
		goto fail;
	}
	net.mounted = true;
	snprintf(net.pin_root, sizeof(net.pin_root), "%s/conclave", net.bpffs);
	self = ns_enter(NODE);
	net.ifindex = (int)if_nametoindex("eth0");
	ns_leave(self);
	if (net.ifindex <= 0)
		goto fail;
	return 0;
fail:
	net_teardown(state);
	return -1;
}

/* ---- traffic ---- */

static socklen_t sockaddr_of(const char *addr, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
	return sizeof(*s4);
}

/* A socket of h's namespace bound to addr:port (port 0: any; addr NULL: not bound). */
static int sock_in(enum host h, int type, const char *addr, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len = sockaddr_of(addr, port, &ss);
	int self = ns_enter(h), one = 1, bufsz = 4 << 20;
	int s = socket(ss.ss_family, type | SOCK_CLOEXEC, 0);

	ns_leave(self);
	assert_true(s >= 0);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &bufsz, sizeof(bufsz));
	if (bind(s, (struct sockaddr *)&ss, len) < 0)
		fail_msg("bind %s:%u in %s: %s", addr, port, net.ns[h], strerror(errno));
	return s;
}

/* Datagrams received in `to` that left `from` as src:sport -> dst:dport, of count sent. */
static int udp_delivered(enum host from, const char *src, uint16_t sport, enum host to,
			 const char *dst, uint16_t dport, int count)
{
	struct sockaddr_storage ss;
	socklen_t len = sockaddr_of(dst, dport, &ss);
	int r = sock_in(to, SOCK_DGRAM, dst, dport), s = sock_in(from, SOCK_DGRAM, src, sport);
	struct pollfd p = { .fd = r, .events = POLLIN };
	int got = 0;
	char buf[64];

	for (int i = 0; i < count; i++) {
		/* Shaped like a WireGuard transport message (type 4, three zero bytes): what
		 * strict egress lets leave from the WireGuard port to a peer's endpoint. */
		uint8_t msg[32] = { 4, 0, 0, 0, (uint8_t)i };

		assert_true(sendto(s, msg, sizeof(msg), 0, (struct sockaddr *)&ss, len) > 0);
	}
	while (poll(&p, 1, 300) > 0 && recv(r, buf, sizeof(buf), 0) > 0)
		got++;
	close(s);
	close(r);
	return got;
}

/* Whether a TCP connection from `from` to dst:port (listening in `to`) is established. */
static bool tcp_connects(enum host from, const char *src, enum host to, const char *dst,
			 uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len = sockaddr_of(dst, port, &ss);
	int l = sock_in(to, SOCK_STREAM, dst, port);
	int c = sock_in(from, SOCK_STREAM | SOCK_NONBLOCK, src, 0);
	struct pollfd p = { .fd = c, .events = POLLOUT };
	int err = -1;
	socklen_t elen = sizeof(err);

	assert_int_equal(listen(l, 4), 0);
	if (connect(c, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)
		fail_msg("connect: %s", strerror(errno));
	if (poll(&p, 1, 700) == 1)
		getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &elen);
	close(c);
	close(l);
	return err == 0;
}

/* ---- datapath fixture ---- */

static uint64_t counter(struct fx *f, enum dp_reason r)
{
	struct dp_counter_v1 c[DP_REASON_MAX];
	struct diag d = { { 0 } };

	if (datapath_read_counters(f->dp, c, &d) < 0)
		fail_msg("datapath_read_counters: %s", d.msg);
	return c[r].packets;
}

static void peer_of(enum host h, const char *addr, struct dp_peer_entry *e)
{
	memset(e, 0, sizeof(*e));
	assert_int_equal(dp_endpoint_parse(addr, WG_PORT, &e->ep), 0);
	e->peer.node_id = (uint32_t)h;
}

/* The attested host's two endpoints (IPv4 and IPv6). */
static void apply_attested(struct fx *f)
{
	struct dp_peer_entry set[2];
	struct diag d = { { 0 } };

	peer_of(ATT, addr4[ATT], &set[0]);
	peer_of(ATT, addr6[ATT], &set[1]);
	if (datapath_apply_peers(f->dp, set, 2, NULL, &d) < 0)
		fail_msg("datapath_apply_peers: %s", d.msg);
}

static void attach(struct fx *f)
{
	struct diag d = { { 0 } };
	int self = ns_enter(NODE), ret = datapath_attach(f->dp, &d);

	ns_leave(self);
	if (ret < 0)
		fail_msg("datapath_attach: %s", d.msg);
}

static void set_config(struct fx *f)
{
	struct diag d = { { 0 } };

	if (datapath_set_config(f->dp, &f->opts.config, &d) < 0)
		fail_msg("datapath_set_config: %s", d.msg);
}

/* A control-plane node enforcing, the attested host as its only peer. */
static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct diag d = { { 0 } };

	if (!f)
		return -1;
	*state = f;
	f->opts = (struct dp_opts){
		.pin_root = net.pin_root,
		.ifindex = net.ifindex,
		.config = { .wg_port = WG_PORT,
			    .join_port = JOIN_PORT,
			    .control_plane = 1,
			    .exempt = DP_EXEMPT_ARP | DP_EXEMPT_ND | DP_EXEMPT_DHCP |
				      DP_EXEMPT_ICMP_ERROR,
			    .events_per_sec = 1000 },
	};
	if (datapath_open(&f->opts, &f->dp, &d) < 0) {
		fprintf(stderr, "# datapath_open: %s\n", d.msg);
		return -1;
	}
	apply_attested(f);
	attach(f);
	return 0;
}

/* Independent of the fixture's state: remove every tc filter of the node and every pin. */
static int fx_teardown(void **state)
{
	struct fx *f = *state;
	struct diag d = { { 0 } };

	if (f)
		datapath_close(f->dp);
	free(f);
	sh("ip -n %s tc qdisc del dev eth0 clsact 2>/dev/null || true", net.ns[NODE]);
	if (datapath_unpin(net.pin_root, &d) < 0)
		fprintf(stderr, "# datapath_unpin: %s\n", d.msg);
	return 0;
}

/* ---- scenarios ---- */

static void check_attested_vs_unattested(struct fx *f, const char *const addrs[NHOSTS])
{
	uint64_t drops = counter(f, DP_DROP_UNKNOWN_PEER);
	uint64_t passes = counter(f, DP_PASS_PEER);

	assert_int_equal(udp_delivered(ATT, addrs[ATT], WG_PORT, NODE, addrs[NODE], WG_PORT, 5), 5);
	assert_int_equal(udp_delivered(UNA, addrs[UNA], WG_PORT, NODE, addrs[NODE], WG_PORT, 5), 0);
	assert_true(counter(f, DP_PASS_PEER) >= passes + 5);
	assert_true(counter(f, DP_DROP_UNKNOWN_PEER) >= drops + 5);
}

static void attested_udp_passes_unattested_dropped_v4(void **state)
{
	check_attested_vs_unattested(*state, addr4);
}

static void attested_udp_passes_unattested_dropped_v6(void **state)
{
	check_attested_vs_unattested(*state, addr6);
}

/* The attested address from another source port: the address entry tells it apart. */
static void attested_address_from_other_port_dropped_as_spoofed(void **state)
{
	struct fx *f = *state;
	uint64_t spoofed = counter(f, DP_DROP_SPOOFED_PORT);

	assert_int_equal(udp_delivered(ATT, addr4[ATT], 40000, NODE, addr4[NODE], WG_PORT, 3), 0);
	assert_true(counter(f, DP_DROP_SPOOFED_PORT) >= spoofed + 3);
}

static void join_port_tcp_passes_on_control_plane(void **state)
{
	struct fx *f = *state;
	uint64_t joins = counter(f, DP_PASS_JOIN);

	assert_true(tcp_connects(UNA, addr4[UNA], NODE, addr4[NODE], JOIN_PORT));
	assert_true(tcp_connects(UNA, addr6[UNA], NODE, addr6[NODE], JOIN_PORT));
	assert_true(counter(f, DP_PASS_JOIN) > joins);
}

static void join_port_tcp_dropped_on_worker(void **state)
{
	struct fx *f = *state;
	uint64_t drops;

	f->opts.config.control_plane = 0;
	set_config(f);
	drops = counter(f, DP_DROP_JOIN_ON_WORKER);
	assert_false(tcp_connects(UNA, addr4[UNA], NODE, addr4[NODE], JOIN_PORT));
	assert_true(counter(f, DP_DROP_JOIN_ON_WORKER) > drops);
}

static void allow_listed_tcp_port_passes_others_dropped(void **state)
{
	struct fx *f = *state;
	struct dp_allow_v1 allow = { .proto = IPPROTO_TCP, .port = ALLOWED_PORT };
	struct diag d = { { 0 } };
	uint64_t allowed = counter(f, DP_PASS_ALLOW_LIST), dropped;

	assert_int_equal(datapath_set_allow(f->dp, &allow, 1, &d), 0);
	assert_true(tcp_connects(UNA, addr4[UNA], NODE, addr4[NODE], ALLOWED_PORT));
	assert_true(tcp_connects(UNA, addr6[UNA], NODE, addr6[NODE], ALLOWED_PORT));
	assert_true(counter(f, DP_PASS_ALLOW_LIST) > allowed);
	dropped = counter(f, DP_DROP_NOT_ALLOWED);
	assert_false(tcp_connects(UNA, addr4[UNA], NODE, addr4[NODE], ALLOWED_PORT + 1));
	assert_true(counter(f, DP_DROP_NOT_ALLOWED) > dropped);
	/* and taken away again */
	assert_int_equal(datapath_set_allow(f->dp, NULL, 0, &d), 0);
	assert_false(tcp_connects(UNA, addr4[UNA], NODE, addr4[NODE], ALLOWED_PORT));
}

static void removed_peer_traffic_stops(void **state)
{
	struct fx *f = *state;
	struct dp_peer_entry other;
	struct dp_apply_stats st;
	struct diag d = { { 0 } };
	size_t n;

	assert_int_equal(udp_delivered(ATT, addr4[ATT], WG_PORT, NODE, addr4[NODE], WG_PORT, 3), 3);
	/* The agent's new view: some other peer, the attested host gone. */
	assert_int_equal(dp_endpoint_parse("10.78.0.9", WG_PORT, &other.ep), 0);
	other.peer = (struct dp_peer_v1){ .node_id = 9 };
	assert_int_equal(datapath_apply_peers(f->dp, &other, 1, &st, &d), 0);
	assert_int_equal(st.removed, 4); /* two endpoints, two address entries */
	assert_int_equal(st.added, 2);
	assert_int_equal(datapath_peer_count(f->dp, &n, &d), 0);
	assert_int_equal(n, 1);
	assert_int_equal(udp_delivered(ATT, addr4[ATT], WG_PORT, NODE, addr4[NODE], WG_PORT, 3), 0);
	assert_int_equal(udp_delivered(ATT, addr6[ATT], WG_PORT, NODE, addr6[NODE], WG_PORT, 3), 0);
}

struct seen {
	struct dp_event_v1 last;
	int n, audit;
};

static int on_event(const struct dp_event_v1 *ev, void *ctx)
{
	struct seen *s = ctx;

	if (ev->reason == DP_DROP_UNKNOWN_PEER) {
		s->last = *ev;
		s->n++;
		s->audit += ev->audit;
	}
	return 0;
}

/* Poll the ring buffer until n unknown-peer events arrived (or a second passed). */
static void wait_events(struct dp_events *ev, struct seen *s, int n)
{
	for (int i = 0; i < 20 && s->n < n; i++)
		assert_true(datapath_events_poll(ev, 50) >= 0);
}

static void audit_mode_passes_everything_but_counts(void **state)
{
	struct fx *f = *state;
	struct dp_events *ev;
	struct seen s = { 0 };
	struct diag d = { { 0 } };
	uint64_t drops;

	f->opts.config.audit = 1;
	set_config(f);
	assert_int_equal(datapath_events_open(f->dp, on_event, &s, &ev, &d), 0);
	while (datapath_events_poll(ev, 0) > 0) /* older events */
		;
	s = (struct seen){ 0 };
	drops = counter(f, DP_DROP_UNKNOWN_PEER);
	assert_int_equal(udp_delivered(UNA, addr4[UNA], WG_PORT, NODE, addr4[NODE], WG_PORT, 4), 4);
	assert_true(tcp_connects(UNA, addr4[UNA], NODE, addr4[NODE], PLAIN_PORT));
	assert_true(counter(f, DP_DROP_UNKNOWN_PEER) >= drops + 4);
	wait_events(ev, &s, 4);
	assert_true(s.n >= 4);
	assert_int_equal(s.audit, s.n);
	datapath_events_close(ev);
}

static void drop_event_names_source_destination_and_reason(void **state)
{
	struct fx *f = *state;
	struct dp_endpoint_v1 src, dst;
	struct dp_events *ev;
	struct seen s = { 0 };
	struct diag d = { { 0 } };

	assert_int_equal(datapath_events_open(f->dp, on_event, &s, &ev, &d), 0);
	while (datapath_events_poll(ev, 0) > 0)
		;
	s = (struct seen){ 0 };
	assert_int_equal(udp_delivered(UNA, addr6[UNA], WG_PORT, NODE, addr6[NODE], WG_PORT, 1), 0);
	wait_events(ev, &s, 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(dp_endpoint_parse(addr6[UNA], WG_PORT, &src), 0);
	assert_int_equal(dp_endpoint_parse(addr6[NODE], WG_PORT, &dst), 0);
	assert_memory_equal(s.last.saddr, src.addr, 16);
	assert_memory_equal(s.last.daddr, dst.addr, 16);
	assert_int_equal(s.last.sport, htons(WG_PORT));
	assert_int_equal(s.last.dport, htons(WG_PORT));
	assert_int_equal(s.last.proto, IPPROTO_UDP);
	assert_int_equal(s.last.direction, 0);
	assert_int_equal(s.last.audit, 0);
	assert_int_equal(s.last.ifindex, net.ifindex);
	datapath_events_close(ev);
}

static void strict_egress_drops_plaintext_to_cluster_passes_wireguard_to_peer(void **state)
{
	struct fx *f = *state;
	struct dp_cidr c[2];
	struct diag d = { { 0 } };
	uint64_t strict, to_peer;

	assert_int_equal(dp_cidr_parse("10.77.0.0/24", DP_CIDR_NODE, &c[0]), 0);
	assert_int_equal(dp_cidr_parse("fd77::/64", DP_CIDR_NODE, &c[1]), 0);
	assert_int_equal(datapath_set_cidrs(f->dp, c, 2, &d), 0);
	f->opts.config.strict = 1;
	set_config(f);
	strict = counter(f, DP_DROP_STRICT);
	to_peer = counter(f, DP_PASS_TO_PEER);
	for (int v6 = 0; v6 < 2; v6++) {
		const char *const *a = v6 ? addr6 : addr4;

		assert_int_equal(
		    udp_delivered(NODE, a[NODE], PLAIN_PORT, ATT, a[ATT], PLAIN_PORT, 3), 0);
		assert_int_equal(udp_delivered(NODE, a[NODE], WG_PORT, ATT, a[ATT], WG_PORT, 3), 3);
	}
	assert_true(counter(f, DP_DROP_STRICT) >= strict + 6);
	assert_true(counter(f, DP_PASS_TO_PEER) >= to_peer + 6);
	/* Outside the cluster's ranges strict mode does not apply: shrink them to 10.77.0.0/31. */
	assert_int_equal(dp_cidr_parse("10.77.0.0/31", DP_CIDR_NODE, &c[0]), 0);
	assert_int_equal(datapath_set_cidrs(f->dp, c, 1, &d), 0);
	assert_int_equal(
	    udp_delivered(NODE, addr4[NODE], PLAIN_PORT, ATT, addr4[ATT], PLAIN_PORT, 3), 3);
}

static void detach_stops_enforcement_and_keeps_peers(void **state)
{
	struct fx *f = *state;
	struct diag d = { { 0 } };
	char path[PATH_MAX];
	size_t n;
	int self;

	self = ns_enter(NODE);
	assert_int_equal(datapath_detach(f->dp, &d), 0);
	assert_int_equal(datapath_detach(f->dp, &d), 0); /* twice is fine */
	ns_leave(self);
	assert_int_equal(udp_delivered(UNA, addr4[UNA], WG_PORT, NODE, addr4[NODE], WG_PORT, 3), 3);
	snprintf(path, sizeof(path), "%s/" DP_PIN_PROG_INGRESS, net.pin_root);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(datapath_peer_count(f->dp, &n, &d), 0);
	assert_int_equal(n, 2);

	attach(f);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(udp_delivered(UNA, addr4[UNA], WG_PORT, NODE, addr4[NODE], WG_PORT, 3), 0);
	assert_int_equal(udp_delivered(ATT, addr4[ATT], WG_PORT, NODE, addr4[NODE], WG_PORT, 3), 3);
}

/* ---- agent restart ---- */

struct stream {
	int tx, rx;
	struct sockaddr_storage to;
	socklen_t to_len;
	volatile int stop_tx, stop_rx;
	long sent, received;
};

static void *stream_send(void *arg)
{
	struct stream *s = arg;
	struct timespec gap = { 0, 200 * 1000 };

	while (!s->stop_tx) {
		if (sendto(s->tx, &s->sent, sizeof(s->sent), 0, (struct sockaddr *)&s->to,
			   s->to_len) > 0)
			__atomic_add_fetch(&s->sent, 1, __ATOMIC_RELAXED);
		nanosleep(&gap, NULL);
	}
	return NULL;
}

static void *stream_receive(void *arg)
{
	struct stream *s = arg;
	struct pollfd p = { .fd = s->rx, .events = POLLIN };
	long seq;

	for (;;) {
		int r = poll(&p, 1, 300);

		if (r > 0 && recv(s->rx, &seq, sizeof(seq), 0) == sizeof(seq))
			s->received++;
		else if (r == 0 && s->stop_rx)
			return NULL;
	}
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&t, NULL);
}

/* Until the sender has sent `count` datagrams in all (bounded: a stalled sender fails). */
static void wait_sent(struct stream *s, long count)
{
	for (long waited = 0; __atomic_load_n(&s->sent, __ATOMIC_RELAXED) < count; waited += 10) {
		if (waited > test_ms(30000))
			fail_msg("the sender sent only %ld of %ld datagrams", s->sent, count);
		sleep_ms(10);
	}
}

static void agent_restart_keeps_existing_peers_traffic(void **state)
{
	struct fx *f = *state;
	struct stream s = { 0 };
	struct dp_apply_stats st;
	struct dp_peer_entry set[2];
	struct dp_attachment at[4];
	struct diag d = { { 0 } };
	pthread_t tx, rx;
	uint32_t in_before, eg_before, in_after, eg_after;
	uint64_t drops = counter(f, DP_DROP_UNKNOWN_PEER) + counter(f, DP_DROP_SPOOFED_PORT);
	long sent_before, sent_attached;
	size_t n;
	int self;

	datapath_prog_ids(f->dp, &in_before, &eg_before);
	assert_true(in_before && eg_before);
	s.rx = sock_in(NODE, SOCK_DGRAM, addr4[NODE], WG_PORT);
	s.tx = sock_in(ATT, SOCK_DGRAM, addr4[ATT], WG_PORT);
	s.to_len = sockaddr_of(addr4[NODE], WG_PORT, &s.to);
	assert_int_equal(pthread_create(&rx, NULL, stream_receive, &s), 0);
	assert_int_equal(pthread_create(&tx, NULL, stream_send, &s), 0);
	/* Counted in datagrams, not time: a loaded host sends few per millisecond. */
	wait_sent(&s, 100);
	sent_before = __atomic_load_n(&s.sent, __ATOMIC_RELAXED);

	/* The agent stops: nothing detached, nothing unpinned. */
	datapath_close(f->dp);
	f->dp = NULL;
	sleep_ms(150);
	/* ... and starts again: same pins, same peer set, filters replaced in place. */
	assert_int_equal(datapath_open(&f->opts, &f->dp, &d), 0);
	peer_of(ATT, addr4[ATT], &set[0]);
	peer_of(ATT, addr6[ATT], &set[1]);
	assert_int_equal(datapath_apply_peers(f->dp, set, 2, &st, &d), 0);
	assert_int_equal(st.unchanged, 4);
	assert_int_equal(st.added + st.updated + st.removed, 0);
	attach(f);
	sent_attached = __atomic_load_n(&s.sent, __ATOMIC_RELAXED);
	wait_sent(&s, sent_attached + 100);

	s.stop_tx = 1;
	pthread_join(tx, NULL);
	s.stop_rx = 1;
	pthread_join(rx, NULL);
	close(s.tx);
	close(s.rx);
	print_message("# restart: %ld datagrams sent (%ld before the stop, %ld after the new "
		      "programs attached), %ld received\n",
		      s.sent, sent_before, s.sent - sent_attached, s.received);
	assert_true(sent_before >= 100 && s.sent - sent_attached >= 100);
	assert_int_equal(s.received, s.sent);
	assert_int_equal(counter(f, DP_DROP_UNKNOWN_PEER) + counter(f, DP_DROP_SPOOFED_PORT),
			 drops);

	/* The new programs replaced the old ones in the same tc slot. */
	datapath_prog_ids(f->dp, &in_after, &eg_after);
	assert_true(in_after != in_before && eg_after != eg_before);
	self = ns_enter(NODE);
	assert_int_equal(datapath_list_attachments(f->dp, at, 4, &n, &d), 0);
	ns_leave(self);
	assert_int_equal(n, 2);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(at[i].ifname, "eth0");
		assert_true(at[i].current);
	}
}

static void reopen_refuses_pins_of_another_abi_unless_reset(void **state)
{
	struct fx *f = *state;
	struct dp_config_v1 cfg = f->opts.config;
	struct datapath *dp = NULL;
	struct diag d = { { 0 } };
	char path[PATH_MAX];
	__u32 key = 0;
	size_t n;
	int fd;

	/* What a build of another ABI would have left behind. */
	snprintf(path, sizeof(path), "%s/config", net.pin_root);
	fd = bpf_obj_get(path);
	assert_true(fd >= 0);
	cfg.abi = DP_ABI_VERSION + 1;
	assert_int_equal(bpf_map_update_elem(fd, &key, &cfg, BPF_ANY), 0);
	close(fd);
	assert_int_equal(datapath_open(&f->opts, &dp, &d), -EPROTO);
	assert_non_null(strstr(d.msg, "reset"));
	assert_null(dp);

	f->opts.reset = true;
	assert_int_equal(datapath_open(&f->opts, &dp, &d), 0);
	assert_int_equal(datapath_peer_count(dp, &n, &d), 0);
	assert_int_equal(n, 0); /* fresh maps: the agent applies its peers before attaching */
	datapath_close(f->dp);
	f->dp = dp;
	apply_attested(f);
	attach(f);
	assert_int_equal(udp_delivered(ATT, addr4[ATT], WG_PORT, NODE, addr4[NODE], WG_PORT, 3), 3);
}

/* 100,000 peers (timing is scripts/bench-datapath's job): content, then a small difference. */
static void apply_100k_peers_then_only_differences(void **state)
{
	enum { N = 100000 };
	struct fx *f = *state;
	struct dp_peer_entry *set = calloc(N, sizeof(*set));
	struct dp_apply_stats st;
	struct diag d = { { 0 } };
	size_t n;

	assert_non_null(set);
	/* The default map is too small: a bigger one needs a reset (then a re-apply). */
	datapath_close(f->dp);
	f->dp = NULL;
	f->opts.max_peers = N;
	assert_int_equal(datapath_open(&f->opts, &f->dp, &d), -EPROTO);
	f->opts.reset = true;
	assert_int_equal(datapath_open(&f->opts, &f->dp, &d), 0);
	for (uint32_t i = 0; i < N; i++) {
		char a[32];

		snprintf(a, sizeof(a), "10.%u.%u.%u", 128 + (i >> 16), (i >> 8) & 0xff, i & 0xff);
		assert_int_equal(dp_endpoint_parse(a, WG_PORT, &set[i].ep), 0);
		set[i].peer.node_id = i + 100;
	}
	peer_of(ATT, addr4[ATT], &set[0]); /* the real one among them */
	if (datapath_apply_peers(f->dp, set, N, &st, &d) < 0)
		fail_msg("apply 100k: %s", d.msg);
	print_message("# 100k peers applied in %.1f ms\n", (double)st.usec / 1000);
	assert_int_equal(datapath_peer_count(f->dp, &n, &d), 0);
	assert_int_equal(n, N);
	assert_int_equal(udp_delivered(ATT, addr4[ATT], WG_PORT, NODE, addr4[NODE], WG_PORT, 3), 3);

	set[1].peer.node_id = 7;						   /* updated */
	assert_int_equal(dp_endpoint_parse("10.200.0.1", WG_PORT, &set[2].ep), 0); /* moved */
	assert_int_equal(datapath_apply_peers(f->dp, set, N, &st, &d), 0);
	assert_int_equal(st.updated, 2); /* endpoint and address entry of set[1] */
	assert_int_equal(st.added, 2);	 /* set[2]'s new endpoint and address */
	assert_int_equal(st.removed, 2); /* and its old ones */
	assert_int_equal(st.unchanged, 2 * N - 4);

	assert_int_equal(datapath_apply_peers(f->dp, set, 0, &st, &d), 0);
	assert_int_equal(st.removed, 2 * N);
	assert_int_equal(datapath_peer_count(f->dp, &n, &d), 0);
	assert_int_equal(n, 0);
	free(set);
}

static void peer_set_with_conflicting_duplicate_refused(void **state)
{
	struct fx *f = *state;
	struct dp_peer_entry set[2];
	struct diag d = { { 0 } };

	peer_of(ATT, addr4[ATT], &set[0]);
	peer_of(UNA, addr4[ATT], &set[1]);
	assert_int_equal(datapath_apply_peers(f->dp, set, 2, NULL, &d), -EINVAL);
	assert_non_null(strstr(d.msg, addr4[ATT]));
	/* nothing changed */
	assert_int_equal(udp_delivered(ATT, addr4[ATT], WG_PORT, NODE, addr4[NODE], WG_PORT, 2), 2);
}

/* ---- conclavectl status / monitor ---- */

static char *run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *run(const char *fmt, ...)
{
	char cmd[2048], *out = calloc(1, 65536);
	size_t len = 0, got;
	va_list ap;
	FILE *p;

	assert_non_null(out);
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (len < 65535 && (got = fread(out + len, 1, 65535 - len, p)) > 0)
		len += got;
	assert_int_equal(pclose(p), 0);
	return out;
}

static void status_shows_attachment_peers_and_counters(void **state)
{
	char ctl[PATH_MAX], cmd[2 * PATH_MAX];
	char *out;
	int rc;

	build_path("conclavectl", ctl, sizeof(ctl));
	assert_int_equal(udp_delivered(UNA, addr4[UNA], WG_PORT, NODE, addr4[NODE], WG_PORT, 2), 0);
	out = run("ip netns exec %s %s status --pin-root %s", net.ns[NODE], ctl, net.pin_root);
	assert_non_null(strstr(out, "eth0"));
	assert_non_null(strstr(out, "peers: 2"));
	assert_non_null(strstr(out, "drop_unknown_peer"));
	free(out);
	out =
	    run("ip netns exec %s %s status --json --pin-root %s", net.ns[NODE], ctl, net.pin_root);
	assert_non_null(strstr(out, "\"peers\": 2"));
	assert_non_null(strstr(out, "\"ifname\": \"eth0\""));
	free(out);
	/* nothing pinned there: refused (1), with the reason on stderr */
	snprintf(cmd, sizeof(cmd), "%s status --pin-root %s/nothing >/dev/null 2>&1", ctl,
		 net.bpffs);
	rc = system(cmd);
	assert_true(WIFEXITED(rc));
	assert_int_equal(WEXITSTATUS(rc), 1);
}

struct monitor_run {
	char cmd[PATH_MAX + 128];
	char *out;
};

static void *monitor_thread(void *arg)
{
	struct monitor_run *m = arg;

	m->out = run("%s", m->cmd);
	return NULL;
}

static void monitor_prints_drop_events(void **state)
{
	struct monitor_run m;
	char ctl[PATH_MAX];
	pthread_t t;

	build_path("conclavectl", ctl, sizeof(ctl));
	snprintf(m.cmd, sizeof(m.cmd), "timeout 10 %s monitor --count 1 --pin-root %s", ctl,
		 net.pin_root);
	assert_int_equal(pthread_create(&t, NULL, monitor_thread, &m), 0);
	sleep_ms(300); /* monitor is reading */
	assert_int_equal(udp_delivered(UNA, addr4[UNA], WG_PORT, NODE, addr4[NODE], WG_PORT, 1), 0);
	pthread_join(t, NULL);
	print_message("# monitor: %s", m.out);
	assert_non_null(strstr(m.out, "10.77.0.3:51820"));
	assert_non_null(strstr(m.out, "10.77.0.1:51820"));
	assert_non_null(strstr(m.out, "drop_unknown_peer"));
	free(m.out);
}

static void ensure_bpffs_mounts_once(void **state)
{
	char dir[PATH_MAX];
	struct diag d = { { 0 } };

	snprintf(dir, sizeof(dir), "%s-ensure", net.bpffs);
	assert_int_equal(datapath_ensure_bpffs(dir, &d), 0);
	assert_int_equal(datapath_ensure_bpffs(dir, &d), 0); /* already one: nothing mounted */
	assert_int_equal(umount2(dir, 0), 0);
	assert_int_not_equal(umount2(dir, 0), 0); /* it was mounted exactly once */
	assert_int_equal(rmdir(dir), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(attested_udp_passes_unattested_dropped_v4),
		T(attested_udp_passes_unattested_dropped_v6),
		T(attested_address_from_other_port_dropped_as_spoofed),
		T(join_port_tcp_passes_on_control_plane),
		T(join_port_tcp_dropped_on_worker),
		T(allow_listed_tcp_port_passes_others_dropped),
		T(removed_peer_traffic_stops),
		T(detach_stops_enforcement_and_keeps_peers),
		T(audit_mode_passes_everything_but_counts),
		T(drop_event_names_source_destination_and_reason),
		T(strict_egress_drops_plaintext_to_cluster_passes_wireguard_to_peer),
		T(agent_restart_keeps_existing_peers_traffic),
		T(reopen_refuses_pins_of_another_abi_unless_reset),
		T(apply_100k_peers_then_only_differences),
		T(peer_set_with_conflicting_duplicate_refused),
		T(status_shows_attachment_peers_and_counters),
		T(monitor_prints_drop_events),
		cmocka_unit_test(ensure_bpffs_mounts_once),
	};

	return cmocka_run_group_tests(tests, net_setup, net_teardown);
}
