/* SPDX-License-Identifier: Apache-2.0 */
/* Datapath test fixture: the ingress and egress skeletons loaded with their maps pinned in a
 * private bpffs mounted under /tmp (never /sys/fs/bpf), map helpers, and BPF_PROG_TEST_RUN.
 * Header-only because it includes the generated skeletons: only the BPF tests and the BPF
 * benchmark include it (the Makefile builds those after the skeletons). Needs root. */
#ifndef CONCLAVE_TEST_DP_FIXTURE_H
#define CONCLAVE_TEST_DP_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "conclave/datapath_abi.h"
#include "egress.skel.h"
#include "ingress.skel.h"

#define DP_FX_INGRESS 1u
#define DP_FX_EGRESS  2u

struct dp_fx {
	char root[64]; /* private bpffs mount, the pin root */
	struct ingress_bpf *in;
	struct egress_bpf *eg;
	int ncpu;
	int peers, config, allow, cidr4, cidr6, counters, events, ratelimit; /* map fds */
};

__attribute__((format(printf, 2, 0))) static inline int
dp_fx_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

/* Once per process: a private mount namespace, so our bpffs mounts never show elsewhere and
 * vanish with the process even if it dies before its teardown; libbpf warnings only. */
static inline int dp_fx_isolate(void)
{
	libbpf_set_print(dp_fx_libbpf_print);
	if (unshare(CLONE_NEWNS) < 0)
		return -errno;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -errno;
	return 0;
}

/* Mount a fresh bpffs at a new directory under /tmp. */
static inline int dp_fx_mount(struct dp_fx *fx)
{
	memset(fx, 0, sizeof(*fx));
	snprintf(fx->root, sizeof(fx->root), "/tmp/conclave-bpf-XXXXXX");
	if (!mkdtemp(fx->root))
		return -errno;
	if (mount("bpf", fx->root, "bpf", 0, "mode=0700") < 0) {
		int ret = -errno;

		rmdir(fx->root);
		return ret;
	}
	fx->ncpu = libbpf_num_possible_cpus();
	return fx->ncpu > 0 ? 0 : -EINVAL;
}

static inline void dp_fx_set_fds(struct dp_fx *fx, struct bpf_object *obj)
{
	fx->peers = bpf_map__fd(bpf_object__find_map_by_name(obj, "peers"));
	fx->config = bpf_map__fd(bpf_object__find_map_by_name(obj, "config"));
	fx->allow = bpf_map__fd(bpf_object__find_map_by_name(obj, "allow"));
	fx->cidr4 = bpf_map__fd(bpf_object__find_map_by_name(obj, "cidr4"));
	fx->cidr6 = bpf_map__fd(bpf_object__find_map_by_name(obj, "cidr6"));
	fx->counters = bpf_map__fd(bpf_object__find_map_by_name(obj, "counters"));
	fx->events = bpf_map__fd(bpf_object__find_map_by_name(obj, "events"));
	fx->ratelimit = bpf_map__fd(bpf_object__find_map_by_name(obj, "ratelimit"));
}

/* Load the programs in `which` (ingress first: it creates and pins the maps, egress reuses
 * them) with the pin root set to fx->root. max_peers 0 keeps the default size. */
static inline int dp_fx_load(struct dp_fx *fx, unsigned which, uint32_t max_peers)
{
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = fx->root);
	int ret;

	if (which & DP_FX_INGRESS) {
		fx->in = ingress_bpf__open_opts(&oo);
		if (!fx->in)
			return -errno;
		if (max_peers)
			bpf_map__set_max_entries(fx->in->maps.peers, max_peers);
		ret = ingress_bpf__load(fx->in);
		if (ret < 0)
			return ret;
		dp_fx_set_fds(fx, fx->in->obj);
	}
	if (which & DP_FX_EGRESS) {
		fx->eg = egress_bpf__open_opts(&oo);
		if (!fx->eg)
			return -errno;
		if (max_peers)
			bpf_map__set_max_entries(fx->eg->maps.peers, max_peers);
		ret = egress_bpf__load(fx->eg);
		if (ret < 0)
			return ret;
		if (!fx->in)
			dp_fx_set_fds(fx, fx->eg->obj);
	}
	return 0;
}

/* Free the skeletons; pins stay (as they do for the agent). */
static inline void dp_fx_unload(struct dp_fx *fx)
{
	ingress_bpf__destroy(fx->in);
	egress_bpf__destroy(fx->eg);
	fx->in = NULL;
	fx->eg = NULL;
}

/* Unload and unmount: the pins and their maps go with the mount. */
static inline void dp_fx_close(struct dp_fx *fx)
{
	dp_fx_unload(fx);
	if (fx->root[0]) {
		umount2(fx->root, MNT_DETACH);
		rmdir(fx->root);
		fx->root[0] = 0;
	}
}

static inline int dp_fx_err(int ret)
{
	return ret < 0 ? -errno : 0;
}

static inline int dp_fx_set_config(struct dp_fx *fx, const struct dp_config_v1 *cfg)
{
	uint32_t zero = 0;

	return dp_fx_err(bpf_map_update_elem(fx->config, &zero, cfg, BPF_ANY));
}

/* "10.0.0.2" or "fd00::2" as the 16-byte map form (IPv4-mapped for IPv4). */
static inline int dp_fx_addr(const char *text, uint8_t out[16])
{
	memset(out, 0, 16);
	if (inet_pton(AF_INET, text, out + 12) == 1) {
		out[10] = out[11] = 0xff;
		return 4;
	}
	return inet_pton(AF_INET6, text, out) == 1 ? 6 : -EINVAL;
}

static inline int dp_fx_endpoint(const char *addr, uint16_t port, struct dp_endpoint_v1 *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->port = htons(port);
	return dp_fx_addr(addr, ep->addr) < 0 ? -EINVAL : 0;
}

/* A peer as userspace must insert it: its endpoint and its address entry {addr, port 0}. */
static inline int dp_fx_add_peer(struct dp_fx *fx, const char *addr, uint16_t port,
				 uint32_t node_id)
{
	struct dp_peer_v1 v = { .node_id = node_id };
	struct dp_endpoint_v1 ep;

	if (dp_fx_endpoint(addr, port, &ep) < 0)
		return -EINVAL;
	if (bpf_map_update_elem(fx->peers, &ep, &v, BPF_ANY) < 0)
		return -errno;
	ep.port = 0;
	return dp_fx_err(bpf_map_update_elem(fx->peers, &ep, &v, BPF_ANY));
}

/* "10.244.0.0/16" or "fd10::/56" into cidr4/cidr6 with a DP_CIDR_* kind. */
static inline int dp_fx_add_cidr(struct dp_fx *fx, const char *cidr, uint32_t kind)
{
	char text[64];
	char *slash;
	uint8_t a[16];
	int family, plen;

	snprintf(text, sizeof(text), "%s", cidr);
	slash = strchr(text, '/');
	if (!slash)
		return -EINVAL;
	*slash = 0;
	plen = atoi(slash + 1);
	family = dp_fx_addr(text, a);
	if (family == 4) {
		struct dp_cidr4_v1 k = { .prefixlen = (uint32_t)plen };

		memcpy(k.addr, a + 12, 4);
		return dp_fx_err(bpf_map_update_elem(fx->cidr4, &k, &kind, BPF_ANY));
	}
	if (family == 6) {
		struct dp_cidr6_v1 k = { .prefixlen = (uint32_t)plen };

		memcpy(k.addr, a, 16);
		return dp_fx_err(bpf_map_update_elem(fx->cidr6, &k, &kind, BPF_ANY));
	}
	return -EINVAL;
}

static inline int dp_fx_allow(struct dp_fx *fx, uint8_t proto, uint16_t port)
{
	struct dp_allow_v1 k = { .proto = proto, .port = port };
	uint8_t one = 1;

	return dp_fx_err(bpf_map_update_elem(fx->allow, &k, &one, BPF_ANY));
}

/* Counters summed over CPUs. */
static inline int dp_fx_counters(struct dp_fx *fx, struct dp_counter_v1 out[DP_REASON_MAX])
{
	struct dp_counter_v1 *v = calloc((size_t)fx->ncpu, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (uint32_t r = 0; r < DP_REASON_MAX; r++) {
		memset(&out[r], 0, sizeof(out[r]));
		if (bpf_map_lookup_elem(fx->counters, &r, v) < 0) {
			free(v);
			return -errno;
		}
		for (int c = 0; c < fx->ncpu; c++) {
			out[r].packets += v[c].packets;
			out[r].bytes += v[c].bytes;
		}
	}
	free(v);
	return 0;
}

/* Run prog once (repeat 0/1) or repeat times on a copy of data; *duration: mean ns per run. */
static inline int dp_fx_run(int prog_fd, const void *data, size_t len, uint32_t repeat,
			    uint32_t *retval, uint32_t *duration)
{
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = data, .data_size_in = (uint32_t)len,
		    .repeat = repeat);
	int ret = bpf_prog_test_run_opts(prog_fd, &o);

	if (ret < 0)
		return -errno;
	if (retval)
		*retval = o.retval;
	if (duration)
		*duration = o.duration;
	return 0;
}

/* Keep this thread on one CPU: per-CPU state (counters, the event budget) then lives in one
 * slot. Returns the CPU. */
static inline int dp_fx_pin_cpu(void)
{
	int cpu = sched_getcpu();
	cpu_set_t set;

	if (cpu < 0)
		return -errno;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	return cpu;
}

#endif
