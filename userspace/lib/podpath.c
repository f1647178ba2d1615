// SPDX-License-Identifier: Apache-2.0
/* Pods in the node datapath: their records in the pinned "pods" and "pod_addrs" maps and the
 * pinned per-pod program on the tc ingress of their host-side veth (clsact + cls_bpf by
 * netlink, like the node programs, so it runs on kernel 6.1 too). Every ADD undoes itself on
 * failure, so a refused pod leaves the node as it was. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "conclave/datapath.h"
#include "conclave/log.h"
#include "conclave/podpath.h"
#include "conclave/util.h"

enum { PM_PODS, PM_ADDRS, PM_CONFIG, PM_MAX };

static const char *const pin_names[PM_MAX] = { "pods", "pod_addrs", "config" };

struct podpath {
	char pin_root[PATH_MAX];
	int map_fd[PM_MAX];
	int prog_fd;
	uint32_t prog_id;
};

void podpath_addr(int family, const uint8_t *addr, uint8_t out[16])
{
	memset(out, 0, 16);
	if (family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, addr, 4);
	} else {
		memcpy(out, addr, 16);
	}
}

static int pin_get(const struct podpath *pp, const char *name, struct diag *d)
{
	char path[PATH_MAX + 32];
	int fd, err;

	snprintf(path, sizeof(path), "%s/%s", pp->pin_root, name);
	fd = bpf_obj_get(path);
	if (fd >= 0)
		return fd;
	err = errno;
	diag_set(d, "cannot open %s: %s%s", path, strerror(err),
		 err == ENOENT ? " (the node datapath is not loaded: is conclave-agent running "
				 "with this pin root?)"
			       : "");
	return -err;
}

int podpath_open(const char *pin_root, bool configured, struct podpath **out, struct diag *d)
{
	struct podpath *pp = calloc(1, sizeof(*pp));
	struct bpf_prog_info info = { 0 };
	struct dp_config_v1 cfg = { 0 };
	__u32 len = sizeof(info), zero = 0;
	int ret = 0;

	*out = NULL;
	if (!pp) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	datapath_log_libbpf(false);
	snprintf(pp->pin_root, sizeof(pp->pin_root), "%s", pin_root ? pin_root : DP_PIN_ROOT);
	pp->prog_fd = -1;
	for (int i = 0; i < PM_MAX; i++)
		pp->map_fd[i] = -1;
	for (int i = 0; i < PM_MAX && ret >= 0; i++)
		ret = pp->map_fd[i] = pin_get(pp, pin_names[i], d);
	if (ret >= 0)
		ret = pp->prog_fd = pin_get(pp, DP_PIN_PROG_POD, d);
	if (ret >= 0 && bpf_obj_get_info_by_fd(pp->prog_fd, &info, &len) < 0) {
		ret = -errno;
		diag_set(d, "cannot read the pod program pinned under %s: %s", pp->pin_root,
			 strerror(errno));
	}
	pp->prog_id = info.id;
	if (ret >= 0 && bpf_map_lookup_elem(pp->map_fd[PM_CONFIG], &zero, &cfg) < 0) {
		ret = -errno;
		diag_set(d, "cannot read %s/config: %s", pp->pin_root, strerror(errno));
	}
	/* Unconfigured, the programs pass everything: a pod added now would not be enforced. */
	if (ret >= 0 && configured && cfg.abi != DP_ABI_VERSION) {
		ret = -EAGAIN;
		diag_set(d,
			 "the datapath under %s is not configured yet (ABI %u, want %d): "
			 "conclave-agent has not finished starting",
			 pp->pin_root, cfg.abi, DP_ABI_VERSION);
	}
	if (ret < 0) {
		podpath_close(pp);
		return ret;
	}
	*out = pp;
	return 0;
}

void podpath_close(struct podpath *pp)
{
	if (!pp)
		return;
	for (int i = 0; i < PM_MAX; i++)
		if (pp->map_fd[i] >= 0)
			close(pp->map_fd[i]);
	if (pp->prog_fd >= 0)
		close(pp->prog_fd);
	free(pp);
}

uint32_t podpath_prog_id(const struct podpath *pp)
{
	return pp->prog_id;
}

/* An agent pinned another pod program since podpath_open: take it (true), else false. */
static bool pin_moved(struct podpath *pp)
{
	struct bpf_prog_info info = { 0 };
	char path[PATH_MAX + 32];
	__u32 len = sizeof(info);
	int fd;

	snprintf(path, sizeof(path), "%s/%s", pp->pin_root, DP_PIN_PROG_POD);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return false;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0 || info.id == pp->prog_id) {
		close(fd);
		return false;
	}
	close(pp->prog_fd);
	pp->prog_fd = fd;
	pp->prog_id = info.id;
	return true;
}

/* ---- tc ---- */

static int tc_attach(struct podpath *pp, uint32_t ifindex, bool *created, struct diag *d)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, o, .handle = DP_TC_HANDLE, .priority = DP_TC_PRIORITY,
		    .prog_fd = pp->prog_fd, .flags = BPF_TC_F_REPLACE);
	int ret;

	datapath_log_libbpf(true);
	ret = bpf_tc_hook_create(&hook); /* the clsact qdisc; one that exists is fine */
	datapath_log_libbpf(false);
	*created = ret == 0;
	if (ret < 0 && ret != -EEXIST) {
		diag_set(d, "cannot create a clsact qdisc on ifindex %u: %s", ifindex,
			 strerror(-ret));
		return ret;
	}
	ret = bpf_tc_attach(&hook, &o);
	if (ret < 0)
		diag_set(d, "cannot attach the pod program to ifindex %u: %s", ifindex,
			 strerror(-ret));
	return ret;
}

/* Remove our filter; the qdisc too when we made it (a failed ADD leaves nothing behind). */
static void tc_detach(uint32_t ifindex, bool qdisc)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, o, .handle = DP_TC_HANDLE, .priority = DP_TC_PRIORITY);

	datapath_log_libbpf(true); /* absent filter, qdisc or link: fine, and no news */
	bpf_tc_detach(&hook, &o);
	if (qdisc) {
		hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
		bpf_tc_hook_destroy(&hook);
	}
	datapath_log_libbpf(false);
}

/* The program of our filter on the veth's ingress: 0 and its id, or -ENOENT. */
static int tc_prog(uint32_t ifindex, uint32_t *prog_id)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, o, .handle = DP_TC_HANDLE, .priority = DP_TC_PRIORITY);
	int ret;

	datapath_log_libbpf(true);
	ret = bpf_tc_query(&hook, &o);
	datapath_log_libbpf(false);
	*prog_id = ret < 0 ? 0 : o.prog_id;
	return ret < 0 ? -ENOENT : 0;
}

/* Is prog_id the pod program (this one or one an earlier agent pinned)? */
static bool is_pod_prog(const struct podpath *pp, uint32_t prog_id)
{
	struct bpf_prog_info info = { 0 };
	__u32 len = sizeof(info);
	bool ok;
	int fd;

	if (prog_id == pp->prog_id)
		return true;
	fd = bpf_prog_get_fd_by_id(prog_id);
	if (fd < 0)
		return false;
	ok = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && !strcmp(info.name, "dp_pod");
	close(fd);
	return ok;
}

/* ---- records ---- */

int podpath_get(struct podpath *pp, uint32_t ifindex, struct dp_pod_v1 *pod)
{
	return bpf_map_lookup_elem(pp->map_fd[PM_PODS], &ifindex, pod) == 0;
}

static bool has_addr(const struct dp_pod_v1 *pod, const uint8_t addr[16])
{
	for (size_t i = 0; pod && i < pod->naddrs && i < DP_POD_ADDRS_MAX; i++)
		if (!memcmp(pod->addrs[i], addr, 16))
			return true;
	return false;
}

/* Remove the first n addresses of pod that still point to ifindex, except those keep has. */
static void del_addrs(struct podpath *pp, uint32_t ifindex, const struct dp_pod_v1 *pod, size_t n,
		      const struct dp_pod_v1 *keep)
{
	for (size_t i = 0; i < n && i < DP_POD_ADDRS_MAX; i++) {
		struct dp_pod_addr_v1 k;
		__u32 owner;

		if (has_addr(keep, pod->addrs[i]))
			continue;
		memcpy(k.addr, pod->addrs[i], sizeof(k.addr));
		if (bpf_map_lookup_elem(pp->map_fd[PM_ADDRS], &k, &owner) == 0 && owner == ifindex)
			bpf_map_delete_elem(pp->map_fd[PM_ADDRS], &k);
	}
}

/* An address another live pod holds: its veth still exists and its record names it. */
static bool held_elsewhere(struct podpath *pp, const uint8_t addr[16], uint32_t ifindex,
			   struct dp_pod_v1 *other, uint32_t *owner)
{
	struct dp_pod_addr_v1 k;
	char name[IF_NAMESIZE];

	memcpy(k.addr, addr, sizeof(k.addr));
	if (bpf_map_lookup_elem(pp->map_fd[PM_ADDRS], &k, owner) < 0 || *owner == ifindex)
		return false;
	return if_indextoname(*owner, name) && podpath_get(pp, *owner, other);
}

int podpath_add(struct podpath *pp, uint32_t ifindex, const struct dp_pod_v1 *pod, struct diag *d)
{
	struct dp_pod_v1 old, other, rec = *pod;
	bool had_old = podpath_get(pp, ifindex, &old), qdisc = false, same;
	char a[INET6_ADDRSTRLEN];
	size_t done = 0;
	uint32_t owner;
	int ret;

	if (pod->naddrs == 0 || pod->naddrs > DP_POD_ADDRS_MAX) {
		diag_set(d, "a pod needs 1 to %d addresses, not %u", DP_POD_ADDRS_MAX, pod->naddrs);
		return -EINVAL;
	}
	for (size_t i = 0; i < pod->naddrs; i++)
		if (held_elsewhere(pp, pod->addrs[i], ifindex, &other, &owner)) {
			dp_addr_format(pod->addrs[i], a, sizeof(a));
			diag_set(d, "address %s is registered to pod %s (container %s, ifindex %u)",
				 a, other.name, other.container_id, owner);
			return -EEXIST;
		}
	same = had_old && !strncmp(old.container_id, pod->container_id, sizeof(old.container_id)) &&
	       !strncmp(old.ifname, pod->ifname, sizeof(old.ifname));
	if (same) { /* a repeated ADD keeps the pod's counters */
		rec.drop_packets = old.drop_packets;
		rec.drop_bytes = old.drop_bytes;
	}
	ret = bpf_map_update_elem(pp->map_fd[PM_PODS], &ifindex, &rec, BPF_ANY);
	if (ret < 0) {
		diag_set(d, "cannot register the pod in %s/pods: %s%s", pp->pin_root,
			 strerror(-ret),
			 ret == -E2BIG ? " (the node has its maximum of pods)" : "");
		return ret;
	}
	for (; done < pod->naddrs; done++) {
		struct dp_pod_addr_v1 k;

		memcpy(k.addr, pod->addrs[done], sizeof(k.addr));
		ret = bpf_map_update_elem(pp->map_fd[PM_ADDRS], &k, &ifindex, BPF_ANY);
		if (ret < 0) {
			dp_addr_format(pod->addrs[done], a, sizeof(a));
			diag_set(d, "cannot register address %s: %s", a, strerror(-ret));
			goto undo;
		}
	}
	ret = tc_attach(pp, ifindex, &qdisc, d);
	/* An agent that pinned a new program while we attached the old one may have walked the
	 * pods before our filter was there: follow the pin (it is renamed before that walk). */
	for (int i = 0; i < 3 && ret == 0 && pin_moved(pp); i++) {
		bool again;

		ret = tc_attach(pp, ifindex, &again, d);
	}
	if (ret == 0) {
		/* Another pod's record here was stale (its veth is gone, the index reused, its DEL
		 * never came): so are the addresses it left pointing to this index. */
		if (had_old && !same)
			del_addrs(pp, ifindex, &old, old.naddrs, pod);
		return 0;
	}
undo:
	if (qdisc)
		tc_detach(ifindex, true);
	del_addrs(pp, ifindex, pod, done, had_old ? &old : NULL);
	if (had_old)
		bpf_map_update_elem(pp->map_fd[PM_PODS], &ifindex, &old, BPF_ANY);
	else
		bpf_map_delete_elem(pp->map_fd[PM_PODS], &ifindex);
	return ret;
}

struct find_ctx {
	const char *container_id, *ifname;
	uint32_t ifindex;
	struct dp_pod_v1 *pod;
};

static int find_one(uint32_t ifindex, const struct dp_pod_v1 *pod, void *ctx)
{
	struct find_ctx *f = ctx;

	if (strncmp(pod->container_id, f->container_id, sizeof(pod->container_id)) ||
	    strncmp(pod->ifname, f->ifname, sizeof(pod->ifname)))
		return 0;
	f->ifindex = ifindex;
	*f->pod = *pod;
	return 1;
}

int podpath_find(struct podpath *pp, const char *container_id, const char *ifname,
		 uint32_t *ifindex, struct dp_pod_v1 *pod, struct diag *d)
{
	struct find_ctx f = { container_id, ifname, 0, pod };
	int ret = podpath_for_each(pp, find_one, &f, d);

	if (ret == 1)
		*ifindex = f.ifindex;
	return ret;
}

int podpath_del(struct podpath *pp, uint32_t ifindex, const struct dp_pod_v1 *pod, struct diag *d)
{
	int ret;

	/* The filter first: a veth left with the program and no addresses would drop all. */
	tc_detach(ifindex, false);
	del_addrs(pp, ifindex, pod, pod->naddrs, NULL);
	ret = bpf_map_delete_elem(pp->map_fd[PM_PODS], &ifindex);
	if (ret < 0 && ret != -ENOENT) {
		diag_set(d, "cannot remove the pod from %s/pods: %s", pp->pin_root, strerror(-ret));
		return ret;
	}
	return 0;
}

int podpath_forget(struct podpath *pp, const char *container_id, const char *ifname, struct diag *d)
{
	struct dp_pod_v1 pod;
	uint32_t ifindex;
	int ret = podpath_find(pp, container_id, ifname, &ifindex, &pod, d);

	return ret == 1 ? podpath_del(pp, ifindex, &pod, d) : ret;
}

int podpath_check(struct podpath *pp, uint32_t ifindex, const struct dp_pod_v1 *want,
		  struct diag *d)
{
	struct dp_pod_v1 have;
	char a[INET6_ADDRSTRLEN];
	uint32_t prog_id, owner;

	if (!podpath_get(pp, ifindex, &have)) {
		diag_set(d, "no pod is registered on ifindex %u", ifindex);
		return -ENOENT;
	}
	if (strncmp(have.container_id, want->container_id, sizeof(have.container_id)) ||
	    strncmp(have.ifname, want->ifname, sizeof(have.ifname))) {
		diag_set(d, "ifindex %u is registered to container %s/%s, not %s/%s", ifindex,
			 have.container_id, have.ifname, want->container_id, want->ifname);
		return -ESTALE;
	}
	if (have.naddrs != want->naddrs ||
	    memcmp(have.addrs, want->addrs, sizeof(have.addrs[0]) * want->naddrs)) {
		diag_set(d, "the pod's registered addresses differ from prevResult's");
		return -ESTALE;
	}
	for (size_t i = 0; i < want->naddrs; i++) {
		struct dp_pod_addr_v1 k;

		memcpy(k.addr, want->addrs[i], sizeof(k.addr));
		if (bpf_map_lookup_elem(pp->map_fd[PM_ADDRS], &k, &owner) < 0 || owner != ifindex) {
			dp_addr_format(want->addrs[i], a, sizeof(a));
			diag_set(d, "address %s is not registered to this pod", a);
			return -ESTALE;
		}
	}
	switch (podpath_prog_state(pp, ifindex, &prog_id)) {
	case PODPATH_PROG_CURRENT: return 0;
	case PODPATH_PROG_NONE:
		diag_set(d, "no conclave filter on the tc ingress of ifindex %u", ifindex);
		return -ENOENT;
	case PODPATH_PROG_STALE:
		diag_set(
		    d,
		    "the filter on ifindex %u runs an earlier pod program (id %u), not the one "
		    "pinned at %s/%s (id %u): conclave-agent moves pods to it when it starts",
		    ifindex, prog_id, pp->pin_root, DP_PIN_PROG_POD, pp->prog_id);
		return -ESTALE;
	case PODPATH_PROG_FOREIGN:
	default:
		diag_set(d, "the filter on ifindex %u runs program %u, not the pod program",
			 ifindex, prog_id);
		return -ESTALE;
	}
}

enum podpath_prog podpath_prog_state(struct podpath *pp, uint32_t ifindex, uint32_t *prog_id)
{
	if (tc_prog(ifindex, prog_id) < 0 || *prog_id == 0)
		return PODPATH_PROG_NONE;
	if (*prog_id == pp->prog_id)
		return PODPATH_PROG_CURRENT;
	return is_pod_prog(pp, *prog_id) ? PODPATH_PROG_STALE : PODPATH_PROG_FOREIGN;
}

const char *podpath_prog_name(enum podpath_prog state)
{
	static const char *const names[] = { "current", "stale", "foreign", "none" };

	return (size_t)state < ARRAY_SIZE(names) ? names[state] : "none";
}

/* ---- re-attach after a new program was pinned ---- */

struct pod_list {
	uint32_t *ifindex;
	size_t n, cap;
};

static int collect(uint32_t ifindex, const struct dp_pod_v1 *pod, void *ctx)
{
	struct pod_list *l = ctx;
	uint32_t *more;

	(void)pod;
	if (l->n == l->cap) {
		more = reallocarray(l->ifindex, l->cap ? 2 * l->cap : 64, sizeof(*more));
		if (!more)
			return -ENOMEM;
		l->ifindex = more;
		l->cap = l->cap ? 2 * l->cap : 64;
	}
	l->ifindex[l->n++] = ifindex;
	return 0;
}

/* Replace our filter's program in place: the filter exists, so no qdisc is created. */
static int tc_replace(struct podpath *pp, uint32_t ifindex)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, o, .handle = DP_TC_HANDLE, .priority = DP_TC_PRIORITY,
		    .prog_fd = pp->prog_fd, .flags = BPF_TC_F_REPLACE);
	int ret;

	datapath_log_libbpf(true);
	ret = bpf_tc_attach(&hook, &o);
	datapath_log_libbpf(false);
	return ret;
}

static void reattach_one(struct podpath *pp, uint32_t ifindex, struct podpath_reattach_stats *st)
{
	struct diag why = { { 0 } };
	struct dp_pod_v1 pod;
	char name[IF_NAMESIZE];
	uint32_t prog_id;
	int ret;

	if (!podpath_get(pp, ifindex, &pod))
		return; /* DEL'd meanwhile */
	if (!if_indextoname(ifindex, name)) {
		/* Deleted without a DEL (the runtime lost it, or the node's netns was torn down):
		 * nothing enforces this pod any more, and its addresses would block their reuse. */
		ret = podpath_del(pp, ifindex, &pod, &why);
		log_warn("pods: %s (container %.12s/%s): its veth (ifindex %u) is gone: %s",
			 pod.name, pod.container_id, pod.ifname, ifindex,
			 ret < 0 ? why.msg : "record and addresses removed");
		st->gone++;
		return;
	}
	switch (podpath_prog_state(pp, ifindex, &prog_id)) {
	case PODPATH_PROG_CURRENT: st->current++; return;
	case PODPATH_PROG_STALE: break;
	case PODPATH_PROG_NONE:
	case PODPATH_PROG_FOREIGN:
	default:
		/* Not evidence that this is the pod's veth (an ifindex taken over by another
		 * device looks the same as a filter removed by hand): attach nothing. CHECK reports
		 * it; the pod's next ADD or DEL settles it. */
		log_warn("pods: %s (container %.12s/%s): %s (ifindex %u) has %s in our tc slot: "
			 "left alone",
			 pod.name, pod.container_id, pod.ifname, name, ifindex,
			 prog_id ? "another program" : "no conclave filter");
		st->skipped++;
		return;
	}
	ret = tc_replace(pp, ifindex);
	if (ret < 0) {
		log_warn("pods: %s (container %.12s/%s): cannot move %s (ifindex %u) from pod "
			 "program %u to %u: %s; it keeps the earlier one",
			 pod.name, pod.container_id, pod.ifname, name, ifindex, prog_id,
			 pp->prog_id, strerror(-ret));
		st->failed++;
		return;
	}
	st->reattached++;
}

int podpath_reattach(struct podpath *pp, struct podpath_reattach_stats *st, struct diag *d)
{
	struct pod_list l = { 0 };
	int ret;

	memset(st, 0, sizeof(*st));
	/* Collected first: removing a gone pod's record while walking the hash would restart it. */
	ret = podpath_for_each(pp, collect, &l, d);
	if (ret == -ENOMEM)
		diag_set(d, "out of memory");
	for (size_t i = 0; ret == 0 && i < l.n; i++)
		reattach_one(pp, l.ifindex[i], st);
	free(l.ifindex);
	return ret;
}

int podpath_for_each(struct podpath *pp, podpath_fn fn, void *ctx, struct diag *d)
{
	struct dp_pod_v1 pod;
	uint32_t key, next;
	bool first = true;
	int ret;

	for (;;) {
		ret = bpf_map_get_next_key(pp->map_fd[PM_PODS], first ? NULL : &key, &next);
		if (ret == -ENOENT)
			return 0;
		if (ret < 0) {
			diag_set(d, "cannot read %s/pods: %s", pp->pin_root, strerror(-ret));
			return ret;
		}
		first = false;
		key = next;
		if (bpf_map_lookup_elem(pp->map_fd[PM_PODS], &key, &pod) < 0)
			continue; /* removed meanwhile */
		ret = fn(key, &pod, ctx);
		if (ret)
			return ret;
	}
}
