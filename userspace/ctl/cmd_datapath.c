// SPDX-License-Identifier: Apache-2.0
/* status | monitor | pods: what the datapath enforces and what it drops, read from its pinned
 * maps. */
#include <errno.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "conclave/agent.h"
#include "conclave/datapath.h"
#include "conclave/podpath.h"
#include "conclave/util.h"
#include "ctl.h"

static void status_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conclavectl status [--pin-root DIR] [--agent PATH] [--json]\n"
	    "Show this node: the agent's state (if it runs) and the datapath: its programs and\n"
	    "the interfaces of this network namespace they are attached to, its config, the\n"
	    "number of attested peers, and packet counters per verdict reason.\n\n"
	    "  --pin-root DIR  bpffs directory of the datapath's pins (default %s)\n"
	    "  --agent PATH    the agent's status socket (default %s)\n"
	    "  --json          print as JSON\n\n"
	    "Exit status: 0 shown, 1 no datapath pinned there or unreadable, 2 usage error.\n",
	    DP_PIN_ROOT, AGENT_DEFAULT_STATUS_PATH);
}

static void monitor_usage(FILE *f)
{
	fprintf(f,
		"usage: conclavectl monitor [--pin-root DIR] [--count N] [--json]\n"
		"Print the datapath's drop events (in audit mode: would-be drops) as they happen,\n"
		"until interrupted or N events were printed. The events ring buffer has a single\n"
		"reader: while this runs, another reader (the agent) sees only some events.\n\n"
		"  --pin-root DIR  bpffs directory of the datapath's pins (default %s)\n"
		"  --count N       stop after N events\n"
		"  --json          one JSON object per line\n\n"
		"Exit status: 0 done or interrupted, 1 no datapath pinned there, 2 usage error.\n",
		DP_PIN_ROOT);
}

/* Shared option parsing; returns -1 with *rc set when the command should end now. */
static const char *agent_path = AGENT_DEFAULT_STATUS_PATH;

static int parse_opts(int argc, char **argv, bool with_count, void (*usage)(FILE *),
		      const char **pin_root, bool *json, long *count, int *rc)
{
	static const struct option opts[] = { { "pin-root", required_argument, NULL, 'p' },
					      { "agent", required_argument, NULL, 'a' },
					      { "json", no_argument, NULL, 'j' },
					      { "count", required_argument, NULL, 'c' },
					      { "help", no_argument, NULL, 'h' },
					      { 0 } };
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': *pin_root = optarg; break;
		case 'a': agent_path = optarg; break;
		case 'j': *json = true; break;
		case 'c':
			if (!with_count)
				goto usage;
			errno = 0;
			*count = strtol(optarg, &end, 10);
			if (errno || *end || *count <= 0) {
				fprintf(stderr, "conclavectl: --count needs a positive number\n");
				*rc = EXIT_USAGE;
				return -1;
			}
			break;
		default: goto usage;
		}
	}
	if (optind == argc)
		return 0;
	c = '?';
usage:
	usage(c == 'h' ? stdout : stderr);
	*rc = c == 'h' ? EXIT_OK : EXIT_USAGE;
	return -1;
}

static const char *const dir_names[] = { "ingress", "egress", "pod" };

static void exempt_text(uint8_t exempt, char *buf, size_t len)
{
	static const char *const names[] = { "arp", "nd", "dhcp", "icmp-error", "reply" };
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (exempt & (1u << i))
			used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? "," : "",
						 names[i]);
	if (!used)
		snprintf(buf, len, "none");
}

struct status {
	uint32_t prog[2];
	struct dp_attachment at[64];
	size_t nat;
	struct dp_config_v1 cfg;
	size_t peers;
	struct dp_counter_v1 c[DP_REASON_MAX];
};

/* The agent's status line (JSON), or NULL if no agent answers on its socket. */
static json_object *agent_status(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[4096];
	size_t len = 0;
	ssize_t n;
	int fd;

	if (strlen(agent_path) >= sizeof(sa.sun_path))
		return NULL;
	memcpy(sa.sun_path, agent_path, strlen(agent_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

static void print_agent_text(json_object *a)
{
	if (!a) {
		printf("agent:     not running (no answer on %s)\n", agent_path);
		return;
	}
	printf("agent:     %s, node %s, generation %s, %s peers, session %s\n", jstr(a, "state"),
	       jstr(a, "node_id"), jstr(a, "generation"), jstr(a, "peers"),
	       strcmp(jstr(a, "session"), "true") ? "down" : "up");
	printf("cluster:   %s\n", jstr(a, "cluster_id"));
	printf("overlay:   %s %s, pods %s\n", jstr(a, "overlay_v4"), jstr(a, "overlay_v6"),
	       jstr(a, "pod_cidr"));
	printf("attested:  %s s ago (every %s s)\n", jstr(a, "seconds_since_attested"),
	       jstr(a, "reattest_interval_s"));
	printf("disk:      %s\n", jstr(a, "state_disk"));
	if (jstr(a, "last_error")[0])
		printf("last error: %s\n", jstr(a, "last_error"));
}

static void print_status_text(const char *pin_root, const struct status *s)
{
	char exempt[64];

	printf("pin root:  %s\n", pin_root);
	for (int i = 0; i < 2; i++)
		if (s->prog[i])
			printf("program:   %-7s id %u\n", dir_names[i], s->prog[i]);
		else
			printf("program:   %-7s not pinned (detached)\n", dir_names[i]);
	if (!s->nat)
		printf("attached:  nowhere in this network namespace\n");
	for (size_t i = 0; i < s->nat && i < ARRAY_SIZE(s->at); i++)
		printf("attached:  %s (ifindex %d) %s prog %u%s\n", s->at[i].ifname,
		       s->at[i].ifindex, dir_names[s->at[i].direction], s->at[i].prog_id,
		       s->at[i].current ? "" : " (not the pinned program: stale)");
	exempt_text(s->cfg.exempt, exempt, sizeof(exempt));
	printf("config:    abi %u, %s, WireGuard port %u, join port %u%s, strict egress %s,\n"
	       "           exempt %s, events %u/s per CPU\n",
	       s->cfg.abi, s->cfg.audit ? "AUDIT (nothing dropped)" : "enforcing", s->cfg.wg_port,
	       s->cfg.join_port,
	       !s->cfg.join_port      ? " (none)"
	       : s->cfg.control_plane ? " (control plane: open)"
				      : " (worker: closed)",
	       s->cfg.strict ? "on" : "off", exempt, s->cfg.events_per_sec);
	printf("peers: %zu\n\n", s->peers);
	printf("%-22s %14s %16s\n", "REASON", "PACKETS", "BYTES");
	for (uint32_t r = 0; r < DP_REASON_MAX; r++)
		printf("%-22s %14llu %16llu\n", datapath_reason_name(r),
		       (unsigned long long)s->c[r].packets, (unsigned long long)s->c[r].bytes);
}

static void print_status_json(const char *pin_root, const struct status *s)
{
	json_object *root = json_object_new_object(), *progs = json_object_new_object();
	json_object *at = json_object_new_array(), *cfg = json_object_new_object();
	json_object *counters = json_object_new_object();

	json_object_object_add(root, "agent", agent_status());
	json_object_object_add(root, "pin_root", json_object_new_string(pin_root));
	for (int i = 0; i < 2; i++)
		json_object_object_add(progs, dir_names[i], json_object_new_int64(s->prog[i]));
	json_object_object_add(root, "programs", progs);
	for (size_t i = 0; i < s->nat && i < ARRAY_SIZE(s->at); i++) {
		json_object *a = json_object_new_object();

		json_object_object_add(a, "ifname", json_object_new_string(s->at[i].ifname));
		json_object_object_add(a, "ifindex", json_object_new_int(s->at[i].ifindex));
		json_object_object_add(a, "direction",
				       json_object_new_string(dir_names[s->at[i].direction]));
		json_object_object_add(a, "prog_id", json_object_new_int64(s->at[i].prog_id));
		json_object_object_add(a, "current", json_object_new_boolean(s->at[i].current));
		json_object_array_add(at, a);
	}
	json_object_object_add(root, "attached", at);
	json_object_object_add(cfg, "abi", json_object_new_int64(s->cfg.abi));
	json_object_object_add(cfg, "wg_port", json_object_new_int(s->cfg.wg_port));
	json_object_object_add(cfg, "join_port", json_object_new_int(s->cfg.join_port));
	json_object_object_add(cfg, "control_plane", json_object_new_boolean(s->cfg.control_plane));
	json_object_object_add(cfg, "audit", json_object_new_boolean(s->cfg.audit));
	json_object_object_add(cfg, "strict", json_object_new_boolean(s->cfg.strict));
	json_object_object_add(cfg, "exempt", json_object_new_int(s->cfg.exempt));
	json_object_object_add(cfg, "events_per_sec", json_object_new_int64(s->cfg.events_per_sec));
	json_object_object_add(root, "config", cfg);
	json_object_object_add(root, "peers", json_object_new_int64((int64_t)s->peers));
	for (uint32_t r = 0; r < DP_REASON_MAX; r++) {
		json_object *c = json_object_new_object();

		json_object_object_add(c, "packets",
				       json_object_new_int64((int64_t)s->c[r].packets));
		json_object_object_add(c, "bytes", json_object_new_int64((int64_t)s->c[r].bytes));
		json_object_object_add(counters, datapath_reason_name(r), c);
	}
	json_object_object_add(root, "counters", counters);
	printf("%s\n", json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
								JSON_C_TO_STRING_SPACED));
	json_object_put(root);
}

int cmd_status(int argc, char **argv)
{
	const char *pin_root = DP_PIN_ROOT;
	struct status *s = calloc(1, sizeof(*s));
	struct datapath *dp = NULL;
	struct diag d = { { 0 } };
	bool json = false;
	long count = 0;
	int rc = EXIT_REFUSED;

	if (!s)
		return EXIT_REFUSED;
	if (parse_opts(argc, argv, false, status_usage, &pin_root, &json, &count, &rc) < 0)
		goto out;
	rc = EXIT_REFUSED;
	if (datapath_open_pinned(pin_root, &dp, &d) < 0 ||
	    datapath_list_attachments(dp, s->at, ARRAY_SIZE(s->at), &s->nat, &d) < 0 ||
	    datapath_get_config(dp, &s->cfg, &d) < 0 ||
	    datapath_peer_count(dp, &s->peers, &d) < 0 ||
	    datapath_read_counters(dp, s->c, &d) < 0) {
		fprintf(stderr, "conclavectl: status: %s\n", d.msg);
		goto out;
	}
	datapath_prog_ids(dp, &s->prog[0], &s->prog[1]);
	if (json) {
		print_status_json(pin_root, s);
	} else {
		json_object *a = agent_status();

		print_agent_text(a);
		json_object_put(a);
		print_status_text(pin_root, s);
	}
	rc = EXIT_OK;
out:
	datapath_close(dp);
	free(s);
	return rc;
}

/* ---- monitor ---- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = 1;
}

struct monitor {
	struct podpath *pods; /* names the pod of a pod event; NULL if no pods are pinned */
	bool json;
	long left; /* events still to print; <= 0: no limit */
	int64_t mono_to_real_ns;
};

static const char *proto_name(uint8_t p, char *buf, size_t len)
{
	switch (p) {
	case 6: return "tcp";
	case 17: return "udp";
	case 1: return "icmp";
	case 58: return "icmpv6";
	default: snprintf(buf, len, "proto-%u", p); return buf;
	}
}

/* "10.0.0.1:51820" or "[fd00::1]:51820". */
static void endpoint_text(const uint8_t addr[16], uint16_t be_port, char *buf, size_t len)
{
	char a[64];

	dp_addr_format(addr, a, sizeof(a));
	snprintf(buf, len, strchr(a, ':') ? "[%s]:%u" : "%s:%u", a, ntohs(be_port));
}

static int on_event(const struct dp_event_v1 *ev, void *ctx)
{
	struct monitor *m = ctx;
	char src[80], dst[80], pbuf[16], when[40];
	const char *proto = proto_name(ev->proto, pbuf, sizeof(pbuf));
	int64_t real_ns = (int64_t)ev->ts_ns + m->mono_to_real_ns;
	time_t secs = (time_t)(real_ns / 1000000000);
	struct tm tm;

	struct dp_pod_v1 pod = { 0 };
	const char *dir = dir_names[ev->direction < ARRAY_SIZE(dir_names) ? ev->direction : 0];
	bool named = ev->direction == 2 && m->pods && podpath_get(m->pods, ev->ifindex, &pod);

	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	endpoint_text(ev->saddr, ev->sport, src, sizeof(src));
	endpoint_text(ev->daddr, ev->dport, dst, sizeof(dst));
	if (m->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "time_ns", json_object_new_int64(real_ns));
		json_object_object_add(o, "reason",
				       json_object_new_string(datapath_reason_name(ev->reason)));
		json_object_object_add(o, "direction", json_object_new_string(dir));
		json_object_object_add(o, "proto", json_object_new_string(proto));
		json_object_object_add(o, "source", json_object_new_string(src));
		json_object_object_add(o, "destination", json_object_new_string(dst));
		json_object_object_add(o, "ifindex", json_object_new_int64(ev->ifindex));
		json_object_object_add(o, "audit", json_object_new_boolean(ev->audit));
		if (named) {
			json_object_object_add(o, "pod", json_object_new_string(pod.name));
			json_object_object_add(o, "container_id",
					       json_object_new_string(pod.container_id));
		}
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	} else {
		printf("%s.%03dZ %-7s %-20s %-6s %s -> %s ifindex %u%s%s%s\n", when,
		       (int)(real_ns / 1000000 % 1000), dir, datapath_reason_name(ev->reason),
		       proto, src, dst, ev->ifindex, named ? " pod " : "", named ? pod.name : "",
		       ev->audit ? " (audit: passed)" : "");
	}
	fflush(stdout);
	if (m->left > 0 && --m->left == 0)
		return -ECANCELED; /* enough: stops the poll */
	return 0;
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int cmd_monitor(int argc, char **argv)
{
	const char *pin_root = DP_PIN_ROOT;
	struct monitor m = { 0 };
	struct datapath *dp = NULL;
	struct dp_events *ev = NULL;
	struct sigaction sa = { .sa_handler = on_signal };
	struct diag d = { { 0 } };
	int rc = EXIT_REFUSED, ret;

	if (parse_opts(argc, argv, true, monitor_usage, &pin_root, &m.json, &m.left, &rc) < 0)
		return rc;
	if (datapath_open_pinned(pin_root, &dp, &d) < 0 ||
	    datapath_events_open(dp, on_event, &m, &ev, &d) < 0) {
		fprintf(stderr, "conclavectl: monitor: %s\n", d.msg);
		goto out;
	}
	if (podpath_open(pin_root, false, &m.pods, &d) < 0)
		m.pods = NULL; /* events still print, with the veth's ifindex only */
	/* Event times are CLOCK_MONOTONIC (bpf_ktime_get_ns); print wall-clock UTC. */
	m.mono_to_real_ns = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
	sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: the poll returns -EINTR */
	sigaction(SIGTERM, &sa, NULL);
	rc = EXIT_OK;
	while (!interrupted) {
		ret = datapath_events_poll(ev, 500);
		if (ret == -ECANCELED || ret == -EINTR)
			break;
		if (ret < 0) {
			fprintf(stderr, "conclavectl: monitor: reading events: %s\n",
				strerror(-ret));
			rc = EXIT_REFUSED;
			break;
		}
	}
out:
	datapath_events_close(ev);
	datapath_close(dp);
	podpath_close(m.pods);
	return rc;
}

/* ---- pods ---- */

static void pods_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conclavectl pods [--pin-root DIR] [--json]\n"
	    "List the pods conclave-cni registered on this node: the host-side veth the pod\n"
	    "program runs on, the pod (namespace/name, or its container id), its addresses,\n"
	    "the packets the program dropped for it, and the program on its veth: current (the\n"
	    "one pinned now), stale (an earlier agent's), foreign (not ours) or none.\n\n"
	    "  --pin-root DIR  bpffs directory of the datapath's pins (default %s)\n"
	    "  --json          print as JSON\n\n"
	    "Exit status: 0 shown, 1 no datapath pinned there, 2 usage error.\n",
	    DP_PIN_ROOT);
}

struct pods_ctx {
	struct podpath *pp;
	json_object *list; /* NULL: text */
};

static int print_pod(uint32_t ifindex, const struct dp_pod_v1 *pod, void *ctx)
{
	struct pods_ctx *c = ctx;
	json_object *list = c->list, *o, *addrs;
	char veth[IF_NAMESIZE] = "?", a[INET6_ADDRSTRLEN], all[4 * INET6_ADDRSTRLEN + 4] = "";
	uint32_t prog_id;
	enum podpath_prog state = podpath_prog_state(c->pp, ifindex, &prog_id);
	char prog[32];
	size_t used = 0;

	if_indextoname(ifindex, veth); /* in another namespace, or gone: "?" */
	addrs = list ? json_object_new_array() : NULL;
	for (uint32_t i = 0; i < pod->naddrs && i < DP_POD_ADDRS_MAX; i++) {
		dp_addr_format(pod->addrs[i], a, sizeof(a));
		used += (size_t)snprintf(all + used, sizeof(all) - used, "%s%s", i ? "," : "", a);
		if (addrs)
			json_object_array_add(addrs, json_object_new_string(a));
	}
	if (!list) {
		snprintf(prog, sizeof(prog), "%u:%s", prog_id, podpath_prog_name(state));
		printf("%-32s %-15s %-8u %-28s %10llu %12llu %-14s %.12s/%s\n", pod->name, veth,
		       ifindex, all, (unsigned long long)pod->drop_packets,
		       (unsigned long long)pod->drop_bytes, prog, pod->container_id, pod->ifname);
		return 0;
	}
	o = json_object_new_object();
	json_object_object_add(o, "pod", json_object_new_string(pod->name));
	json_object_object_add(o, "container_id", json_object_new_string(pod->container_id));
	json_object_object_add(o, "ifname", json_object_new_string(pod->ifname));
	json_object_object_add(o, "veth", json_object_new_string(veth));
	json_object_object_add(o, "ifindex", json_object_new_int64(ifindex));
	json_object_object_add(o, "addresses", addrs);
	json_object_object_add(o, "drop_packets",
			       json_object_new_int64((int64_t)pod->drop_packets));
	json_object_object_add(o, "drop_bytes", json_object_new_int64((int64_t)pod->drop_bytes));
	json_object_object_add(o, "prog_id", json_object_new_int64(prog_id));
	json_object_object_add(o, "program", json_object_new_string(podpath_prog_name(state)));
	json_object_array_add(list, o);
	return 0;
}

int cmd_pods(int argc, char **argv)
{
	const char *pin_root = DP_PIN_ROOT;
	struct podpath *pp = NULL;
	struct diag d = { { 0 } };
	struct pods_ctx c = { 0 };
	bool json = false;
	long count = 0;
	int rc = EXIT_REFUSED;

	if (parse_opts(argc, argv, false, pods_usage, &pin_root, &json, &count, &rc) < 0)
		return rc;
	if (podpath_open(pin_root, false, &pp, &d) < 0) {
		fprintf(stderr, "conclavectl: pods: %s\n", d.msg);
		return EXIT_REFUSED;
	}
	c.pp = pp;
	if (json)
		c.list = json_object_new_array();
	else
		printf("%-32s %-15s %-8s %-28s %10s %12s %-14s %s\n", "POD", "VETH", "IFINDEX",
		       "ADDRESSES", "DROPS", "DROP_BYTES", "PROGRAM", "CONTAINER/IF");
	if (podpath_for_each(pp, print_pod, &c, &d) < 0) {
		fprintf(stderr, "conclavectl: pods: %s\n", d.msg);
	} else {
		rc = EXIT_OK;
		if (c.list)
			printf("%s\n",
			       json_object_to_json_string_ext(c.list, JSON_C_TO_STRING_PRETTY |
									  JSON_C_TO_STRING_SPACED));
	}
	json_object_put(c.list);
	podpath_close(pp);
	return rc;
}
