// SPDX-License-Identifier: Apache-2.0
/* The datapath's control plane: libbpf skeletons of bpf/ingress.bpf.c and bpf/egress.bpf.c, maps
 * shared between them and across agent restarts through bpffs pins, tc attach by netlink
 * (clsact + cls_bpf, which kernel 6.1 and newer both have), and map updates as differences. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "conclave/datapath.h"
#include "conclave/log.h"
#include "conclave/podpath.h"
#include "conclave/util.h"

/* Only for the embedded objects (NAME_bpf__elf_bytes): the maps and programs are found by name
 * and type, so the skeletons' generated open/load code is not used. */
#include "egress.skel.h"
#include "ingress.skel.h"
#include "pod.skel.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524 /* the kernel's "operation not supported" for a map type without batch ops */
#endif

enum { DIR_INGRESS, DIR_EGRESS, DIR_MAX };
/* The objects: the two node programs (indexed like their directions), then the per-pod one. */
enum { OBJ_POD = DIR_MAX, OBJ_MAX };

enum map_id {
	M_PEERS,
	M_CONFIG,
	M_ALLOW,
	M_CIDR4,
	M_CIDR6,
	M_COUNTERS,
	M_EVENTS,
	M_PEER_NET4,
	M_PEER_NET6,
	M_MAX
};

static const char *const map_name_of[M_MAX] = {
	[M_PEERS] = "peers",   [M_CONFIG] = "config",	    [M_ALLOW] = "allow",
	[M_CIDR4] = "cidr4",   [M_CIDR6] = "cidr6",	    [M_COUNTERS] = "counters",
	[M_EVENTS] = "events", [M_PEER_NET4] = "peer_net4", [M_PEER_NET6] = "peer_net6",
};

static const char *const pin_prog_names[OBJ_MAX] = { DP_PIN_PROG_INGRESS, DP_PIN_PROG_EGRESS,
						     DP_PIN_PROG_POD };

struct datapath {
	char pin_root[PATH_MAX];
	int ifindex;
	struct bpf_object *obj[OBJ_MAX]; /* NULL when opened from the pins only */
	int prog_fd[OBJ_MAX];
	int map_fd[M_MAX];
	bool own_fds;	      /* fds from bpf_obj_get (closed by us) rather than the skeletons' */
	uint32_t map_entries; /* of "peers": two per peer (endpoint and address entry) */
	struct podpath_reattach_stats pods; /* what open did to the pods already attached */
};

static const char *const reason_names[DP_REASON_MAX] = {
	[DP_PASS_PEER] = "pass_peer",
	[DP_PASS_JOIN] = "pass_join",
	[DP_PASS_ARP] = "pass_arp",
	[DP_PASS_ND] = "pass_nd",
	[DP_PASS_DHCP] = "pass_dhcp",
	[DP_PASS_ICMP_ERROR] = "pass_icmp_error",
	[DP_PASS_ALLOW_LIST] = "pass_allow_list",
	[DP_PASS_OUTSIDE_CLUSTER] = "pass_outside_cluster",
	[DP_PASS_TO_PEER] = "pass_to_peer",
	[DP_DROP_UNKNOWN_PEER] = "drop_unknown_peer",
	[DP_DROP_SPOOFED_PORT] = "drop_spoofed_port",
	[DP_DROP_JOIN_ON_WORKER] = "drop_join_on_worker",
	[DP_DROP_NOT_ALLOWED] = "drop_not_allowed",
	[DP_DROP_MALFORMED] = "drop_malformed",
	[DP_DROP_FRAGMENT] = "drop_fragment",
	[DP_DROP_STRICT] = "drop_strict",
	[DP_PASS_REPLY] = "pass_reply",
	[DP_PASS_POD_LOCAL] = "pass_pod_local",
	[DP_PASS_POD_PEER] = "pass_pod_peer",
	[DP_DROP_POD_UNATTESTED] = "drop_pod_unattested",
	[DP_DROP_POD_SPOOFED] = "drop_pod_spoofed",
};

const char *datapath_reason_name(uint32_t reason)
{
	return reason < DP_REASON_MAX && reason_names[reason] ? reason_names[reason] : "unknown";
}

static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Set around calls whose failures we expect and handle (an existing clsact qdisc). */
static __thread bool libbpf_quiet;

/* libbpf's own messages (verifier logs, pin reuse) go through our log at the matching level. */
__attribute__((format(printf, 2, 0))) static int libbpf_print(enum libbpf_print_level level,
							      const char *fmt, va_list ap)
{
	char line[1024];
	size_t len;

	if (level == LIBBPF_DEBUG || libbpf_quiet)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	len = strlen(line);
	if (len && line[len - 1] == '\n')
		line[len - 1] = '\0';
	log_msg(level == LIBBPF_WARN ? LOG_LVL_WARN : LOG_LVL_DEBUG, "%s", line);
	return 0;
}

void datapath_log_libbpf(bool quiet)
{
	libbpf_set_print(libbpf_print);
	libbpf_quiet = quiet;
}

/* ---- addresses ---- */

int dp_endpoint_parse(const char *addr, uint16_t port, struct dp_endpoint_v1 *ep)
{
	struct in_addr a4;

	memset(ep, 0, sizeof(*ep));
	ep->port = htons(port);
	if (inet_pton(AF_INET, addr, &a4) == 1) {
		ep->addr[10] = ep->addr[11] = 0xff;
		memcpy(ep->addr + 12, &a4, 4);
		return 0;
	}
	return inet_pton(AF_INET6, addr, ep->addr) == 1 ? 0 : -EINVAL;
}

static bool is_v4_mapped(const uint8_t a[16])
{
	static const uint8_t prefix[12] = { [10] = 0xff, [11] = 0xff };

	return !memcmp(a, prefix, sizeof(prefix));
}

void dp_addr_format(const uint8_t addr[16], char *buf, size_t len)
{
	if (is_v4_mapped(addr))
		inet_ntop(AF_INET, addr + 12, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, addr, buf, (socklen_t)len);
}

int dp_cidr_parse(const char *s, uint32_t kind, struct dp_cidr *c)
{
	char text[INET6_ADDRSTRLEN + 8], *slash, *end;
	unsigned long plen;
	int max;

	memset(c, 0, sizeof(*c));
	if (snprintf(text, sizeof(text), "%s", s) >= (int)sizeof(text))
		return -EINVAL;
	slash = strchr(text, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	if (inet_pton(AF_INET, text, c->addr) == 1)
		c->family = AF_INET, max = 32;
	else if (inet_pton(AF_INET6, text, c->addr) == 1)
		c->family = AF_INET6, max = 128;
	else
		return -EINVAL;
	errno = 0;
	plen = strtoul(slash + 1, &end, 10);
	if (errno || end == slash + 1 || *end || plen > (unsigned long)max)
		return -EINVAL;
	c->prefixlen = (uint8_t)plen;
	c->kind = kind;
	return 0;
}

/* ---- bpffs and pins ---- */

static bool is_bpffs(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

int datapath_ensure_bpffs(const char *path, struct diag *d)
{
	int ret;

	if (is_bpffs(path))
		return 0;
	ret = mkdir_p(path, 0700);
	if (ret < 0) {
		diag_set(d, "cannot create bpffs mount point %s: %s", path, strerror(-ret));
		return ret;
	}
	/* Created inside an existing bpffs (e.g. /sys/fs/bpf/conclave): a directory there is all
	 * we need. A second bpffs mounted over it would hide the pins from everyone outside our
	 * mount namespace. */
	if (is_bpffs(path))
		return 0;
	if (mount("bpf", path, "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") < 0) {
		ret = -errno;
		diag_set(d, "cannot mount bpffs at %s: %s (needs CAP_SYS_ADMIN)", path,
			 strerror(errno));
		return ret;
	}
	return 0;
}

static void unpin_one(const char *root, const char *name, int *ret, struct diag *d)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", root, name);
	if (unlink(path) < 0 && errno != ENOENT && !*ret) {
		*ret = -errno;
		diag_set(d, "cannot unpin %s: %s", path, strerror(errno));
	}
}

/* Open (not load) the objects embedded in the skeletons, with pins under pin_root. */
static int open_objects(struct bpf_object *obj[OBJ_MAX], const char *pin_root, struct diag *d)
{
	static const char *const names[OBJ_MAX] = { "ingress_bpf", "egress_bpf", "pod_bpf" };
	size_t len[OBJ_MAX];
	const void *elf[OBJ_MAX] = { ingress_bpf__elf_bytes(&len[0]),
				     egress_bpf__elf_bytes(&len[1]), pod_bpf__elf_bytes(&len[2]) };
	int ret = 0;

	for (int i = 0; i < OBJ_MAX; i++)
		obj[i] = NULL;
	for (int i = 0; i < OBJ_MAX && !ret; i++) {
		LIBBPF_OPTS(bpf_object_open_opts, o, .object_name = names[i],
			    .pin_root_path = pin_root);

		/* libbpf 1.x: NULL and errno on failure */
		obj[i] = bpf_object__open_mem(elf[i], len[i], &o);
		if (!obj[i])
			ret = errno ? -errno : -EINVAL;
	}
	if (ret) {
		for (int i = 0; i < OBJ_MAX; i++) {
			bpf_object__close(obj[i]);
			obj[i] = NULL;
		}
		diag_set(d, "cannot open the embedded BPF objects: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

/* Only our own names (the objects' pinned maps, the program pins): a pin root given by mistake,
 * such as the bpffs root itself, loses nothing else. */
static int unpin_ours(const char *pin_root, struct diag *d)
{
	static const char *const progs[] = { DP_PIN_PROG_INGRESS,	DP_PIN_PROG_EGRESS,
					     DP_PIN_PROG_POD,		DP_PIN_PROG_INGRESS "_new",
					     DP_PIN_PROG_EGRESS "_new", DP_PIN_PROG_POD "_new" };
	struct bpf_object *obj[OBJ_MAX];
	struct bpf_map *m;
	int ret = open_objects(obj, NULL, d);

	/* Every map is in every object (bpf/lib/maps.h): the first object names them all. */
	for (m = ret ? NULL : bpf_object__next_map(obj[0], NULL); m && !ret;
	     m = bpf_object__next_map(obj[0], m))
		if (bpf_map__pin_path(m)) /* pinned by name; internal maps are not */
			unpin_one(pin_root, bpf_map__name(m), &ret, d);
	for (size_t i = 0; i < ARRAY_SIZE(progs) && !ret; i++)
		unpin_one(pin_root, progs[i], &ret, d);
	for (int i = 0; i < OBJ_MAX; i++)
		bpf_object__close(obj[i]);
	return ret;
}

int datapath_unpin(const char *pin_root, struct diag *d)
{
	int ret = unpin_ours(pin_root, d);

	if (!ret && rmdir(pin_root) < 0 && errno != ENOENT) {
		ret = -errno;
		diag_set(d, "cannot remove pin directory %s: %s%s", pin_root, strerror(errno),
			 errno == ENOTEMPTY ? " (it holds pins that are not ours: left alone)"
					    : "");
	}
	return ret;
}

static int pinned_map_info(const char *root, const char *name, int *fd_out,
			   struct bpf_map_info *info)
{
	char path[PATH_MAX];
	__u32 len = sizeof(*info);
	int fd, ret;

	memset(info, 0, sizeof(*info));
	snprintf(path, sizeof(path), "%s/%s", root, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return errno ? -errno : -ENOENT;
	ret = bpf_obj_get_info_by_fd(fd, info, &len);
	if (ret < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	if (fd_out)
		*fd_out = fd;
	else
		close(fd);
	return 0;
}

/* Each peer takes two entries: its endpoint and its address (see set_build). */
static uint32_t peer_map_entries(uint32_t max_peers)
{
	return 2 * (max_peers ? max_peers : DP_DEFAULT_MAX_PEERS);
}

/* Decide whether the pins under root can be reused and what size the peers map has. Returns 1
 * if they must be replaced (another ABI, or smaller than asked), 0 if reusable or absent. */
static int check_pins(const char *root, const struct dp_opts *o, uint32_t *entries, struct diag *d)
{
	struct dp_config_v1 cfg = { 0 };
	struct bpf_map_info info;
	__u32 key = 0;
	int fd = -1, ret;

	*entries = peer_map_entries(o->max_peers);
	ret = pinned_map_info(root, "config", &fd, &info);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0) {
		diag_set(d, "cannot open pinned map %s/config: %s", root, strerror(-ret));
		return ret;
	}
	if (info.value_size != sizeof(cfg) || info.key_size != sizeof(key)) {
		close(fd);
		diag_set(d, "pinned maps under %s have another layout than ABI %d", root,
			 DP_ABI_VERSION);
		return 1;
	}
	ret = bpf_map_lookup_elem(fd, &key, &cfg);
	close(fd);
	if (ret < 0) {
		diag_set(d, "cannot read pinned map %s/config: %s", root, strerror(-ret));
		return ret;
	}
	/* abi 0: loaded by us but never configured (the previous run stopped in between). */
	if (cfg.abi != 0 && cfg.abi != DP_ABI_VERSION) {
		diag_set(d, "pinned maps under %s are ABI %u, this build is ABI %d", root, cfg.abi,
			 DP_ABI_VERSION);
		return 1;
	}
	ret = pinned_map_info(root, "peers", NULL, &info);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0) {
		diag_set(d, "cannot open pinned map %s/peers: %s", root, strerror(-ret));
		return ret;
	}
	if (o->max_peers && peer_map_entries(o->max_peers) > info.max_entries) {
		diag_set(d, "pinned peers map %s/peers holds %u peers, %u asked", root,
			 info.max_entries / 2, o->max_peers);
		return 1;
	}
	*entries = info.max_entries; /* a pinned map's size cannot change; bigger is fine */
	return 0;
}

/* The first tc classifier of an object: each of ours has exactly one entry program. */
static struct bpf_program *tc_program(struct bpf_object *obj)
{
	struct bpf_program *p;

	for (p = bpf_object__next_program(obj, NULL); p; p = bpf_object__next_program(obj, p))
		if (bpf_program__type(p) == BPF_PROG_TYPE_SCHED_CLS)
			return p;
	return NULL;
}

static struct bpf_map *find_map(struct datapath *dp, const char *name)
{
	struct bpf_map *m = bpf_object__find_map_by_name(dp->obj[DIR_INGRESS], name);

	return m ? m : bpf_object__find_map_by_name(dp->obj[DIR_EGRESS], name);
}

static struct datapath *dp_new(const char *pin_root)
{
	struct datapath *dp = calloc(1, sizeof(*dp));

	if (!dp)
		return NULL;
	snprintf(dp->pin_root, sizeof(dp->pin_root), "%s", pin_root ? pin_root : DP_PIN_ROOT);
	for (int i = 0; i < M_MAX; i++)
		dp->map_fd[i] = -1;
	for (int i = 0; i < OBJ_MAX; i++)
		dp->prog_fd[i] = -1;
	return dp;
}

static int load(struct datapath *dp, struct diag *d)
{
	static const char *const obj_names[OBJ_MAX] = { "ingress", "egress", "pod" };
	struct bpf_program *prog;
	struct bpf_map *m;
	int ret = open_objects(dp->obj, dp->pin_root, d);

	if (ret)
		return ret;
	for (int i = 0; i < OBJ_MAX; i++) {
		m = bpf_object__find_map_by_name(dp->obj[i], "peers");
		if (m)
			bpf_map__set_max_entries(m, dp->map_entries);
	}
	/* Ingress first: it creates and pins the maps, egress and pod then reuse every one. */
	for (int i = 0; i < OBJ_MAX && !ret; i++)
		ret = bpf_object__load(dp->obj[i]);
	if (ret < 0) {
		diag_set(d,
			 "cannot load the datapath programs: %s (if the maps pinned under %s "
			 "come from another build, reopen with reset; verifier output is logged)",
			 strerror(-ret), dp->pin_root);
		return ret;
	}
	for (int i = 0; i < OBJ_MAX; i++) {
		prog = tc_program(dp->obj[i]);
		if (!prog) {
			diag_set(d, "BPF object for %s has no tc program", obj_names[i]);
			return -ENOENT;
		}
		dp->prog_fd[i] = bpf_program__fd(prog);
	}
	for (int i = 0; i < M_MAX; i++) {
		m = find_map(dp, map_name_of[i]);
		if (!m) {
			diag_set(d, "BPF objects lack the map \"%s\"", map_name_of[i]);
			return -ENOENT;
		}
		dp->map_fd[i] = bpf_map__fd(m);
	}
	return 0;
}

static int pin_prog(struct datapath *dp, int obj, struct diag *d);

/* After pinning a new pod program: replace it in place on every registered pod's veth. A
 * failure here leaves those pods on their earlier program (same maps, still enforced), so it is
 * logged, not fatal. */
static void reattach_pods(struct datapath *dp)
{
	struct podpath_reattach_stats *st = &dp->pods;
	struct diag why = { { 0 } };
	struct podpath *pp = NULL;
	int ret = podpath_open(dp->pin_root, false, &pp, &why);

	if (ret == 0)
		ret = podpath_reattach(pp, st, &why);
	if (ret < 0)
		log_warn("datapath: cannot move the pods to the new pod program: %s; they keep "
			 "the program they run until their next ADD",
			 why.msg);
	else if (st->reattached || st->current || st->gone || st->skipped || st->failed)
		log_info("datapath: pod program %u: %zu pods moved to it, %zu already on it, %zu "
			 "gone (removed), %zu left alone, %zu failed",
			 podpath_prog_id(pp), st->reattached, st->current, st->gone, st->skipped,
			 st->failed);
	podpath_close(pp);
}

int datapath_open(const struct dp_opts *opts, struct datapath **out, struct diag *d)
{
	struct diag why = { { 0 } };
	struct datapath *dp;
	char parent[PATH_MAX], *slash;
	int ret;

	*out = NULL;
	if (opts->max_peers > DP_MAX_PEERS_LIMIT) {
		diag_set(d, "max_peers %u exceeds the limit of %u", opts->max_peers,
			 DP_MAX_PEERS_LIMIT);
		return -EINVAL;
	}
	dp = dp_new(opts->pin_root);
	if (!dp) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	libbpf_set_print(libbpf_print);
	dp->ifindex = opts->ifindex;
	snprintf(parent, sizeof(parent), "%s", dp->pin_root);
	slash = strrchr(parent, '/');
	if (slash && slash != parent)
		*slash = '\0';
	if (!is_bpffs(dp->pin_root) && !is_bpffs(parent)) {
		diag_set(d, "%s is not on a bpffs: mount one at %s (mount -t bpf bpf %s)",
			 dp->pin_root, parent, parent);
		ret = -ENODEV;
		goto fail;
	}
	if (mkdir(dp->pin_root, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		diag_set(d, "cannot create pin directory %s: %s", dp->pin_root, strerror(errno));
		goto fail;
	}
	ret = check_pins(dp->pin_root, opts, &dp->map_entries, &why);
	if (ret < 0) {
		diag_set(d, "%s", why.msg);
		goto fail;
	}
	if (ret > 0) {
		if (!opts->reset) {
			diag_set(d,
				 "%s; reopen with reset to unpin and recreate them (then apply the "
				 "peers again before attaching)",
				 why.msg);
			ret = -EPROTO;
			goto fail;
		}
		log_warn("datapath: %s: recreating them (reset)", why.msg);
		/* Programs still attached keep the old maps until datapath_attach replaces them. */
		ret = unpin_ours(dp->pin_root, d);
		if (ret < 0)
			goto fail;
		dp->map_entries = peer_map_entries(opts->max_peers);
	}
	ret = load(dp, d);
	if (ret < 0)
		goto fail;
	ret = datapath_set_config(dp, &opts->config, d);
	/* The per-pod program is attached by conclave-cni, which finds it by its pin. */
	if (ret == 0)
		ret = pin_prog(dp, OBJ_POD, d);
	if (ret < 0)
		goto fail;
	/* Pods attached by an earlier agent move to the program just pinned. */
	reattach_pods(dp);
	*out = dp;
	return 0;
fail:
	datapath_close(dp);
	return ret;
}

int datapath_open_pinned(const char *pin_root, struct datapath **out, struct diag *d)
{
	struct datapath *dp = dp_new(pin_root);
	char path[PATH_MAX];
	struct bpf_map_info info;
	int ret;

	*out = NULL;
	if (!dp) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	libbpf_set_print(libbpf_print);
	dp->own_fds = true;
	for (int i = 0; i < M_MAX; i++) {
		ret = pinned_map_info(dp->pin_root, map_name_of[i], &dp->map_fd[i], &info);
		if (ret < 0) {
			diag_set(d, "cannot open pinned map %s/%s: %s%s", dp->pin_root,
				 map_name_of[i], strerror(-ret),
				 ret == -ENOENT ? " (is the datapath loaded? see --pin-root)" : "");
			datapath_close(dp);
			return ret;
		}
		if (i == M_PEERS)
			dp->map_entries = info.max_entries;
	}
	for (int i = 0; i < DIR_MAX; i++) {
		snprintf(path, sizeof(path), "%s/%s", dp->pin_root, pin_prog_names[i]);
		dp->prog_fd[i] = bpf_obj_get(path); /* -1 when not attached: fine */
	}
	*out = dp;
	return 0;
}

void datapath_pods_reattached(const struct datapath *dp, struct podpath_reattach_stats *st)
{
	*st = dp->pods;
}

void datapath_close(struct datapath *dp)
{
	if (!dp)
		return;
	if (dp->own_fds) {
		for (int i = 0; i < M_MAX; i++)
			if (dp->map_fd[i] >= 0)
				close(dp->map_fd[i]);
		for (int i = 0; i < OBJ_MAX; i++)
			if (dp->prog_fd[i] >= 0)
				close(dp->prog_fd[i]);
	}
	for (int i = 0; i < OBJ_MAX; i++)
		bpf_object__close(dp->obj[i]);
	free(dp);
}

/* ---- attach ---- */

static const enum bpf_tc_attach_point tc_points[DIR_MAX] = { BPF_TC_INGRESS, BPF_TC_EGRESS };

/* Pin under a temporary name, then rename over the old pin: the pin never goes missing. */
static int pin_prog(struct datapath *dp, int obj, struct diag *d)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	int ret;

	snprintf(path, sizeof(path), "%s/%s", dp->pin_root, pin_prog_names[obj]);
	snprintf(tmp, sizeof(tmp), "%s_new", path); /* bpffs refuses names with dots */
	unlink(tmp);
	if (bpf_obj_pin(dp->prog_fd[obj], tmp) < 0) {
		ret = -errno;
		diag_set(d, "cannot pin program at %s: %s", tmp, strerror(errno));
		return ret;
	}
	if (rename(tmp, path) < 0) {
		ret = -errno;
		unlink(tmp);
		diag_set(d, "cannot rename pinned program to %s: %s", path, strerror(-ret));
		return ret;
	}
	return 0;
}

int datapath_attach(struct datapath *dp, struct diag *d)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = dp->ifindex,
		    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	int ret;

	if (!dp->obj[DIR_INGRESS]) {
		diag_set(d, "datapath opened read-only: nothing to attach");
		return -EINVAL;
	}
	if (dp->ifindex <= 0) {
		diag_set(d, "no interface to attach to (ifindex %d)", dp->ifindex);
		return -EINVAL;
	}
	libbpf_quiet = true;
	ret = bpf_tc_hook_create(&hook); /* the clsact qdisc; someone else's is fine */
	libbpf_quiet = false;
	if (ret < 0 && ret != -EEXIST) {
		diag_set(d, "cannot create clsact qdisc on ifindex %d: %s", dp->ifindex,
			 strerror(-ret));
		return ret;
	}
	for (int i = 0; i < DIR_MAX; i++) {
		LIBBPF_OPTS(bpf_tc_hook, h, .ifindex = dp->ifindex, .attach_point = tc_points[i]);
		LIBBPF_OPTS(bpf_tc_opts, o, .handle = DP_TC_HANDLE, .priority = DP_TC_PRIORITY,
			    .prog_fd = dp->prog_fd[i], .flags = BPF_TC_F_REPLACE);

		/* Replacing our filter in place is one netlink request: no packet sees no filter.
		 */
		ret = bpf_tc_attach(&h, &o);
		if (ret < 0) {
			diag_set(d, "cannot attach the %s program to ifindex %d: %s",
				 i == DIR_INGRESS ? "ingress" : "egress", dp->ifindex,
				 strerror(-ret));
			return ret;
		}
		ret = pin_prog(dp, i, d);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int datapath_detach(struct datapath *dp, struct diag *d)
{
	char path[PATH_MAX];
	int ret, first = 0;

	if (dp->ifindex <= 0) {
		diag_set(d, "no interface to detach from (ifindex %d)", dp->ifindex);
		return -EINVAL;
	}
	for (int i = 0; i < DIR_MAX; i++) {
		LIBBPF_OPTS(bpf_tc_hook, h, .ifindex = dp->ifindex, .attach_point = tc_points[i]);
		LIBBPF_OPTS(bpf_tc_opts, o, .handle = DP_TC_HANDLE, .priority = DP_TC_PRIORITY);

		libbpf_quiet = true; /* absent filter or qdisc: fine, and no news */
		ret = bpf_tc_detach(&h, &o);
		libbpf_quiet = false;
		/* ENOENT: not attached; EINVAL: no clsact qdisc at all. */
		if (ret < 0 && ret != -ENOENT && ret != -EINVAL && !first) {
			first = ret;
			diag_set(d, "cannot detach the %s program from ifindex %d: %s",
				 i == DIR_INGRESS ? "ingress" : "egress", dp->ifindex,
				 strerror(-ret));
		}
		snprintf(path, sizeof(path), "%s/%s", dp->pin_root, pin_prog_names[i]);
		unlink(path);
	}
	return first;
}

void datapath_prog_ids(struct datapath *dp, uint32_t *ingress, uint32_t *egress)
{
	uint32_t *out[DIR_MAX] = { ingress, egress };
	char path[PATH_MAX];

	for (int i = 0; i < DIR_MAX; i++) {
		struct bpf_prog_info info = { 0 };
		__u32 len = sizeof(info);
		int fd;

		*out[i] = 0;
		snprintf(path, sizeof(path), "%s/%s", dp->pin_root, pin_prog_names[i]);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
			*out[i] = info.id;
		close(fd);
	}
}

int datapath_list_attachments(struct datapath *dp, struct dp_attachment *out, size_t max, size_t *n,
			      struct diag *d)
{
	struct if_nameindex *ifs = if_nameindex();
	uint32_t ids[DIR_MAX];

	*n = 0;
	if (!ifs) {
		diag_set(d, "cannot list network interfaces: %s", strerror(errno));
		return -errno;
	}
	datapath_prog_ids(dp, &ids[DIR_INGRESS], &ids[DIR_EGRESS]);
	for (struct if_nameindex *i = ifs; i->if_index; i++) {
		for (int dir = 0; dir < DIR_MAX; dir++) {
			LIBBPF_OPTS(bpf_tc_hook, h, .ifindex = (int)i->if_index,
				    .attach_point = tc_points[dir]);
			LIBBPF_OPTS(bpf_tc_opts, o, .handle = DP_TC_HANDLE,
				    .priority = DP_TC_PRIORITY);

			int ret;

			libbpf_quiet = true; /* most interfaces have no clsact qdisc */
			ret = bpf_tc_query(&h, &o);
			libbpf_quiet = false;
			if (ret < 0)
				continue;
			if (*n < max) {
				struct dp_attachment *a = &out[*n];

				memset(a, 0, sizeof(*a));
				a->ifindex = (int)i->if_index;
				snprintf(a->ifname, sizeof(a->ifname), "%s", i->if_name);
				a->direction = (uint8_t)dir;
				a->prog_id = o.prog_id;
				a->current = o.prog_id == ids[dir];
			}
			(*n)++;
		}
	}
	if_freenameindex(ifs);
	return 0;
}

/* ---- reading maps ---- */

typedef int (*kv_fn)(const void *keys, const void *vals, size_t n, void *ctx);

/* Without batch ops (LPM tries, old kernels): key by key. */
static int for_each_slow(int fd, size_t ksz, size_t vsz, uint8_t *keys, uint8_t *vals, kv_fn fn,
			 void *ctx)
{
	uint8_t *prev = NULL;
	int ret;

	for (;;) {
		ret = bpf_map_get_next_key(fd, prev, keys);
		if (ret == -ENOENT)
			return 0;
		if (ret < 0)
			return ret;
		ret = bpf_map_lookup_elem(fd, keys, vals);
		if (ret == 0) {
			ret = fn(keys, vals, 1, ctx);
			if (ret)
				return ret;
		} else if (ret != -ENOENT) {
			return ret;
		}
		memcpy(keys + ksz, keys, ksz); /* keys has room for two keys */
		prev = keys + ksz;
	}
	(void)vsz;
}

/* Call fn on chunks of the map's entries (batch lookup where the kernel has it). */
static int map_for_each(int fd, size_t ksz, size_t vsz, kv_fn fn, void *ctx)
{
	uint64_t in_tok[8], out_tok[8]; /* opaque batch position (a bucket index for hashes) */
	uint32_t chunk = 8192;
	uint8_t *keys = malloc(chunk * ksz), *vals = malloc(chunk * vsz);
	bool first = true;
	int ret;

	if (!keys || !vals) {
		ret = -ENOMEM;
		goto out;
	}
	for (;;) {
		__u32 count = chunk;

		ret = bpf_map_lookup_batch(fd, first ? NULL : in_tok, out_tok, keys, vals, &count,
					   NULL);
		if (ret == -ENOSPC && count == 0) { /* one hash bucket holds more than chunk */
			uint8_t *k, *v;

			chunk *= 4;
			k = realloc(keys, chunk * ksz);
			if (k)
				keys = k;
			v = realloc(vals, chunk * vsz);
			if (v)
				vals = v;
			if (!k || !v) {
				ret = -ENOMEM;
				goto out;
			}
			continue;
		}
		if (ret < 0 && ret != -ENOENT) {
			if (first && (ret == -EINVAL || ret == -ENOTSUPP || ret == -EOPNOTSUPP))
				ret = for_each_slow(fd, ksz, vsz, keys, vals, fn, ctx);
			goto out;
		}
		if (count) {
			int r = fn(keys, vals, count, ctx);

			if (r) {
				ret = r;
				goto out;
			}
		}
		if (ret == -ENOENT) {
			ret = 0;
			goto out;
		}
		memcpy(in_tok, out_tok, sizeof(in_tok));
		first = false;
	}
out:
	free(keys);
	free(vals);
	return ret;
}

/* ---- peers ---- */

enum { ST_ABSENT, ST_SAME, ST_CHANGED, ST_DUP };

/* The wanted set as an open-addressing hash table over its entries. */
struct peer_set {
	struct dp_peer_entry *e;
	uint8_t *state;
	size_t n;
	uint32_t *slot; /* index into e, or UINT32_MAX */
	size_t mask;
	/* keys to delete, collected while reading the map */
	struct dp_endpoint_v1 *del;
	size_t ndel, cap_del;
	size_t unique;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t ep_hash(const struct dp_endpoint_v1 *k)
{
	uint64_t a, b;
	uint32_t c;

	memcpy(&a, k->addr, 8);
	memcpy(&b, k->addr + 8, 8);
	memcpy(&c, &k->port, 4);
	return mix64(a ^ mix64(b ^ mix64(c)));
}

/* Slot of key k: either holding k or the empty slot where it would go. */
static size_t set_find(const struct peer_set *s, const struct dp_endpoint_v1 *k)
{
	size_t i = ep_hash(k) & s->mask;

	while (s->slot[i] != UINT32_MAX && memcmp(&s->e[s->slot[i]].ep, k, sizeof(*k)))
		i = (i + 1) & s->mask;
	return i;
}

static void set_free(struct peer_set *s)
{
	free(s->e);
	free(s->state);
	free(s->slot);
	free(s->del);
}

/* Insert e (already copied to s->e[i]); returns the slot index, found or new. */
static size_t set_insert(struct peer_set *s, size_t i)
{
	size_t at = set_find(s, &s->e[i].ep);

	if (s->slot[at] == UINT32_MAX) {
		s->slot[at] = (uint32_t)i;
		s->unique++;
	}
	return at;
}

static bool peer_less(const struct dp_peer_v1 *a, const struct dp_peer_v1 *b)
{
	return a->node_id < b->node_id || (a->node_id == b->node_id && a->flags < b->flags);
}

/* The wanted map content: every endpoint, plus one address entry {addr, port 0} per address
 * (the datapath_abi.h convention that tells a spoofed port from an unknown source). Peers that
 * share an address (NAT) share its entry; it carries the smallest peer value so that the
 * content does not depend on the order of the input. */
static int set_build(struct peer_set *s, const struct dp_peer_entry *in, size_t n, struct diag *d)
{
	size_t cap = 16, total = 2 * n;
	char a[INET6_ADDRSTRLEN];

	memset(s, 0, sizeof(*s));
	while (cap < 2 * total)
		cap *= 2;
	s->e = malloc((total ? total : 1) * sizeof(*s->e));
	s->state = calloc(total ? total : 1, 1);
	s->slot = malloc(cap * sizeof(*s->slot));
	if (!s->e || !s->state || !s->slot) {
		diag_set(d, "out of memory for a peer set of %zu entries", n);
		return -ENOMEM;
	}
	memset(s->slot, 0xff, cap * sizeof(*s->slot));
	s->mask = cap - 1;
	for (size_t i = 0; i < n; i++) {
		struct dp_peer_entry *e = &s->e[i];
		size_t at;

		*e = in[i];
		e->ep.pad = 0; /* part of the key: must be zero on both sides */
		if (!e->ep.port) {
			dp_addr_format(e->ep.addr, a, sizeof(a));
			diag_set(d, "peer endpoint %s has port 0 (reserved for address entries)",
				 a);
			return -EINVAL;
		}
		at = set_insert(s, i);
		if (s->slot[at] == i)
			continue;
		if (memcmp(&s->e[s->slot[at]].peer, &e->peer, sizeof(e->peer))) {
			dp_addr_format(e->ep.addr, a, sizeof(a));
			diag_set(d,
				 "peer set lists endpoint %s port %u twice with different values",
				 a, ntohs(e->ep.port));
			return -EINVAL;
		}
		s->state[i] = ST_DUP;
	}
	s->n = n;
	for (size_t i = 0; i < n; i++) {
		struct dp_peer_entry *addr = &s->e[s->n];
		size_t at;

		if (s->state[i] == ST_DUP)
			continue;
		*addr = s->e[i];
		addr->ep.port = 0;
		at = set_insert(s, s->n);
		if (s->slot[at] == s->n)
			s->n++;
		else if (peer_less(&addr->peer, &s->e[s->slot[at]].peer))
			s->e[s->slot[at]].peer = addr->peer;
	}
	return 0;
}

/* Classify the map's current entries against the wanted set. */
static int set_classify(const void *keys, const void *vals, size_t n, void *ctx)
{
	struct peer_set *s = ctx;
	const struct dp_endpoint_v1 *k = keys;
	const struct dp_peer_v1 *v = vals;

	for (size_t i = 0; i < n; i++) {
		size_t at = set_find(s, &k[i]);
		uint32_t idx = s->slot[at];

		if (idx != UINT32_MAX) {
			s->state[idx] =
			    memcmp(&s->e[idx].peer, &v[i], sizeof(v[i])) ? ST_CHANGED : ST_SAME;
			continue;
		}
		if (s->ndel == s->cap_del) {
			size_t cap = s->cap_del ? 2 * s->cap_del : 1024;
			void *p = realloc(s->del, cap * sizeof(*s->del));

			if (!p)
				return -ENOMEM;
			s->del = p;
			s->cap_del = cap;
		}
		s->del[s->ndel++] = k[i];
	}
	return 0;
}

static int delete_keys(int fd, const void *keys, size_t ksz, size_t n)
{
	LIBBPF_OPTS(bpf_map_batch_opts, bo);
	__u32 count = (__u32)n;
	int ret;

	if (!n)
		return 0;
	ret = bpf_map_delete_batch(fd, keys, &count, &bo);
	if (ret == -EINVAL || ret == -ENOTSUPP || ret == -EOPNOTSUPP) {
		for (size_t i = count; i < n; i++) {
			ret = bpf_map_delete_elem(fd, (const uint8_t *)keys + i * ksz);
			if (ret < 0 && ret != -ENOENT)
				return ret;
		}
		return 0;
	}
	return ret == -ENOENT ? 0 : ret;
}

static int update_kv(int fd, const void *keys, size_t ksz, const void *vals, size_t vsz, size_t n)
{
	LIBBPF_OPTS(bpf_map_batch_opts, bo, .elem_flags = BPF_ANY);
	__u32 count = (__u32)n;
	int ret;

	if (!n)
		return 0;
	ret = bpf_map_update_batch(fd, keys, vals, &count, &bo);
	if (ret == -EINVAL || ret == -ENOTSUPP || ret == -EOPNOTSUPP) {
		for (size_t i = count; i < n; i++) {
			ret = bpf_map_update_elem(fd, (const uint8_t *)keys + i * ksz,
						  (const uint8_t *)vals + i * vsz, BPF_ANY);
			if (ret < 0)
				return ret;
		}
		return 0;
	}
	return ret;
}

int datapath_apply_peers(struct datapath *dp, const struct dp_peer_entry *set, size_t n,
			 struct dp_apply_stats *stats, struct diag *d)
{
	struct dp_apply_stats st = { 0 };
	struct dp_endpoint_v1 *ukeys = NULL;
	struct dp_peer_v1 *uvals = NULL;
	struct peer_set s;
	uint64_t t0 = now_usec();
	size_t nupd = 0;
	int fd = dp->map_fd[M_PEERS], ret;

	if (n > UINT32_MAX / 4) {
		diag_set(d, "peer set too large");
		return -E2BIG;
	}
	ret = set_build(&s, set, n, d);
	if (ret < 0)
		goto out;
	if (s.unique > dp->map_entries) {
		diag_set(d,
			 "%zu peers need %zu map entries, the peers map holds %u (raise max_peers)",
			 n, s.unique, dp->map_entries);
		ret = -E2BIG;
		goto out;
	}
	ret = map_for_each(fd, sizeof(struct dp_endpoint_v1), sizeof(struct dp_peer_v1),
			   set_classify, &s);
	if (ret < 0) {
		diag_set(d, "cannot read the peers map: %s", strerror(-ret));
		goto out;
	}
	/* Removals first: the map shrinks to old ∩ new, then grows to new. */
	ret = delete_keys(fd, s.del, sizeof(*s.del), s.ndel);
	if (ret < 0) {
		diag_set(d, "cannot remove %zu peers: %s", s.ndel, strerror(-ret));
		goto out;
	}
	st.removed = s.ndel;
	ukeys = malloc((s.n ? s.n : 1) * sizeof(*ukeys));
	uvals = malloc((s.n ? s.n : 1) * sizeof(*uvals));
	if (!ukeys || !uvals) {
		ret = -ENOMEM;
		diag_set(d, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < s.n; i++) {
		switch (s.state[i]) {
		case ST_SAME: st.unchanged++; continue;
		case ST_DUP: continue;
		case ST_CHANGED: st.updated++; break;
		default: st.added++; break;
		}
		ukeys[nupd] = s.e[i].ep;
		uvals[nupd++] = s.e[i].peer;
	}
	ret = update_kv(fd, ukeys, sizeof(*ukeys), uvals, sizeof(*uvals), nupd);
	if (ret < 0)
		diag_set(d, "cannot write %zu peers: %s", nupd, strerror(-ret));
out:
	st.usec = now_usec() - t0;
	if (stats)
		*stats = st;
	free(ukeys);
	free(uvals);
	set_free(&s);
	return ret;
}

/* Endpoints only: address entries (port 0) are the map's bookkeeping, not peers. */
static int count_endpoints(const void *keys, const void *vals, size_t n, void *ctx)
{
	const struct dp_endpoint_v1 *k = keys;

	for (size_t i = 0; i < n; i++)
		*(size_t *)ctx += k[i].port != 0;
	return 0;
}

int datapath_peer_count(struct datapath *dp, size_t *n, struct diag *d)
{
	int ret;

	*n = 0;
	ret = map_for_each(dp->map_fd[M_PEERS], sizeof(struct dp_endpoint_v1),
			   sizeof(struct dp_peer_v1), count_endpoints, n);
	if (ret < 0)
		diag_set(d, "cannot read the peers map: %s", strerror(-ret));
	return ret;
}

/* ---- small maps: cidrs, allow list ---- */

/* Keys of a small map (LPM tries have no batch lookup: key by key). */
struct key_list {
	uint8_t *k;
	size_t n, cap, ksz;
};

static int key_list_add(const void *keys, const void *vals, size_t n, void *ctx)
{
	struct key_list *l = ctx;

	if (l->n + n > l->cap) {
		size_t cap = l->cap ? 2 * (l->n + n) : 64 + n;
		void *p = realloc(l->k, cap * l->ksz);

		if (!p)
			return -ENOMEM;
		l->k = p;
		l->cap = cap;
	}
	memcpy(l->k + l->n * l->ksz, keys, n * l->ksz);
	l->n += n;
	return 0;
}

static bool key_in(const uint8_t *keys, size_t n, size_t ksz, const void *k)
{
	for (size_t i = 0; i < n; i++)
		if (!memcmp(keys + i * ksz, k, ksz))
			return true;
	return false;
}

/* Make a small map's key set equal to want[0..n) with value vals[i] (or *val for all). */
static int sync_small(int fd, const uint8_t *want, const uint8_t *vals, size_t vstride, size_t n,
		      size_t ksz, size_t vsz, bool add_first)
{
	struct key_list cur = { .ksz = ksz };
	uint8_t vbuf[64];
	int ret;

	ret = map_for_each(fd, ksz, vsz, key_list_add, &cur);
	for (int pass = 0; pass < 2 && ret >= 0; pass++) {
		bool adding = (pass == 0) == add_first;

		if (adding) {
			for (size_t i = 0; i < n && ret >= 0; i++) {
				memcpy(vbuf, vals + i * vstride, vsz);
				ret = bpf_map_update_elem(fd, want + i * ksz, vbuf, BPF_ANY);
			}
			continue;
		}
		for (size_t i = 0; i < cur.n && ret >= 0; i++) {
			const uint8_t *k = cur.k + i * ksz;

			if (!key_in(want, n, ksz, k)) {
				ret = bpf_map_delete_elem(fd, k);
				if (ret == -ENOENT)
					ret = 0;
			}
		}
	}
	free(cur.k);
	return ret;
}

static void mask_prefix(uint8_t *addr, size_t len, unsigned int plen)
{
	for (size_t i = 0; i < len; i++) {
		unsigned int bits = plen > 8 * i ? plen - 8 * (unsigned int)i : 0;

		if (bits < 8)
			addr[i] &= (uint8_t)(0xff00u >> bits);
	}
}

/* Make the tries m4/m6 hold exactly c[0..n) (value: each range's kind). */
static int set_tries(struct datapath *dp, int m4, int m6, const struct dp_cidr *c, size_t n,
		     bool add_first, const char *what, struct diag *d)
{
	struct dp_cidr4_v1 *k4 = calloc(n ? n : 1, sizeof(*k4));
	struct dp_cidr6_v1 *k6 = calloc(n ? n : 1, sizeof(*k6));
	__u32 *v4 = calloc(n ? n : 1, sizeof(*v4)), *v6 = calloc(n ? n : 1, sizeof(*v6));
	size_t n4 = 0, n6 = 0;
	int ret = -ENOMEM;

	if (!k4 || !k6 || !v4 || !v6) {
		diag_set(d, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (c[i].family == AF_INET && c[i].prefixlen <= 32) {
			k4[n4].prefixlen = c[i].prefixlen;
			memcpy(k4[n4].addr, c[i].addr, 4);
			mask_prefix(k4[n4].addr, 4, c[i].prefixlen);
			v4[n4++] = c[i].kind;
		} else if (c[i].family == AF_INET6 && c[i].prefixlen <= 128) {
			k6[n6].prefixlen = c[i].prefixlen;
			memcpy(k6[n6].addr, c[i].addr, 16);
			mask_prefix(k6[n6].addr, 16, c[i].prefixlen);
			v6[n6++] = c[i].kind;
		} else {
			diag_set(d, "%s %zu: bad family or prefix length", what, i);
			ret = -EINVAL;
			goto out;
		}
	}
	ret = sync_small(dp->map_fd[m4], (uint8_t *)k4, (uint8_t *)v4, sizeof(*v4), n4, sizeof(*k4),
			 sizeof(*v4), add_first);
	if (ret >= 0)
		ret = sync_small(dp->map_fd[m6], (uint8_t *)k6, (uint8_t *)v6, sizeof(*v6), n6,
				 sizeof(*k6), sizeof(*v6), add_first);
	if (ret < 0)
		diag_set(d, "cannot update the %s maps: %s", what, strerror(-ret));
out:
	free(k4);
	free(k6);
	free(v4);
	free(v6);
	return ret;
}

int datapath_set_cidrs(struct datapath *dp, const struct dp_cidr *c, size_t n, struct diag *d)
{
	/* Additions first: strict mode covers the union while the ranges change. */
	return set_tries(dp, M_CIDR4, M_CIDR6, c, n, true, "cluster CIDR", d);
}

int datapath_set_peer_nets(struct datapath *dp, const struct dp_cidr *c, size_t n, struct diag *d)
{
	/* Removals first: pods never reach more than the old or the new set of nodes. */
	return set_tries(dp, M_PEER_NET4, M_PEER_NET6, c, n, false, "attested node range", d);
}

int datapath_set_allow(struct datapath *dp, const struct dp_allow_v1 *a, size_t n, struct diag *d)
{
	struct dp_allow_v1 *k = calloc(n ? n : 1, sizeof(*k));
	const __u8 one = 1;
	int ret;

	if (!k) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		k[i].proto = a[i].proto;
		k[i].port = a[i].port;
	}
	/* Removals first: the allow list never admits more than the old or the new list. */
	ret = sync_small(dp->map_fd[M_ALLOW], (uint8_t *)k, &one, 0, n, sizeof(*k), sizeof(one),
			 false);
	if (ret < 0)
		diag_set(d, "cannot update the allow map: %s", strerror(-ret));
	free(k);
	return ret;
}

/* ---- config, counters ---- */

int datapath_set_config(struct datapath *dp, const struct dp_config_v1 *cfg, struct diag *d)
{
	struct dp_config_v1 c = *cfg;
	__u32 key = 0;
	int ret;

	c.abi = DP_ABI_VERSION;
	ret = bpf_map_update_elem(dp->map_fd[M_CONFIG], &key, &c, BPF_ANY);
	if (ret < 0)
		diag_set(d, "cannot write the datapath config: %s", strerror(-ret));
	return ret;
}

int datapath_get_config(struct datapath *dp, struct dp_config_v1 *cfg, struct diag *d)
{
	__u32 key = 0;
	int ret = bpf_map_lookup_elem(dp->map_fd[M_CONFIG], &key, cfg);

	if (ret < 0)
		diag_set(d, "cannot read the datapath config: %s", strerror(-ret));
	return ret;
}

int datapath_read_counters(struct datapath *dp, struct dp_counter_v1 out[DP_REASON_MAX],
			   struct diag *d)
{
	int ncpu = libbpf_num_possible_cpus();
	struct dp_counter_v1 *per_cpu;
	int ret = 0;

	memset(out, 0, DP_REASON_MAX * sizeof(*out));
	if (ncpu <= 0) {
		diag_set(d, "cannot count possible CPUs: %s", strerror(-ncpu));
		return ncpu < 0 ? ncpu : -EINVAL;
	}
	per_cpu = calloc((size_t)ncpu, sizeof(*per_cpu));
	if (!per_cpu) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	for (__u32 r = 0; r < DP_REASON_MAX; r++) {
		ret = bpf_map_lookup_elem(dp->map_fd[M_COUNTERS], &r, per_cpu);
		if (ret < 0) {
			diag_set(d, "cannot read counter %s: %s", datapath_reason_name(r),
				 strerror(-ret));
			break;
		}
		for (int c = 0; c < ncpu; c++) {
			out[r].packets += per_cpu[c].packets;
			out[r].bytes += per_cpu[c].bytes;
		}
	}
	free(per_cpu);
	return ret;
}

/* ---- events ---- */

struct dp_events {
	struct ring_buffer *rb;
	dp_event_fn fn;
	void *ctx;
};

static int on_sample(void *ctx, void *data, size_t size)
{
	struct dp_events *ev = ctx;
	struct dp_event_v1 e;

	if (size < sizeof(e))
		return 0; /* not ours: skip rather than misread */
	memcpy(&e, data, sizeof(e));
	return ev->fn(&e, ev->ctx);
}

int datapath_events_open(struct datapath *dp, dp_event_fn fn, void *ctx, struct dp_events **out,
			 struct diag *d)
{
	struct dp_events *ev = calloc(1, sizeof(*ev));
	int ret;

	*out = NULL;
	if (!ev) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	ev->fn = fn;
	ev->ctx = ctx;
	ev->rb = ring_buffer__new(dp->map_fd[M_EVENTS], on_sample, ev, NULL);
	if (!ev->rb) {
		ret = -errno;
		diag_set(d, "cannot read the events ring buffer %s/events: %s", dp->pin_root,
			 strerror(errno));
		free(ev);
		return ret ? ret : -EINVAL;
	}
	*out = ev;
	return 0;
}

int datapath_events_poll(struct dp_events *ev, int timeout_ms)
{
	return ring_buffer__poll(ev->rb, timeout_ms);
}

void datapath_events_close(struct dp_events *ev)
{
	if (!ev)
		return;
	ring_buffer__free(ev->rb);
	free(ev);
}
