// SPDX-License-Identifier: Apache-2.0
/* conclave-cni's commands over the CNI codec (cni.c), rtnetlink (rtnl.c) and the pods' part of
 * the datapath (podpath.c). ADD reads everything it needs (config, prevResult, the pod's
 * interface inside CNI_NETNS and its veth peer on the node) before it changes anything, and
 * podpath_add undoes itself on failure: a refused ADD leaves the node as it was. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conclave/cniplugin.h"
#include "conclave/podpath.h"
#include "conclave/rtnl.h"
#include "conclave/util.h"

/* The pod's interface, read inside its network namespace. */
static int pod_link(const char *netns, const char *ifname, struct rtnl_link *l,
		    struct cni_error *err)
{
	struct diag d = { { 0 } };
	int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	int ns = open(netns, O_RDONLY | O_CLOEXEC);
	int ret = -1;

	if (self < 0)
		cni_fail(err, CNI_ERR_IO, "cannot open our network namespace: %s", strerror(errno));
	else if (ns < 0)
		cni_fail(err, CNI_ERR_INVALID_ENV, "CNI_NETNS %s: %s", netns, strerror(errno));
	else if (setns(ns, CLONE_NEWNET) < 0)
		cni_fail(err, CNI_ERR_INVALID_ENV, "CNI_NETNS %s is not a network namespace: %s",
			 netns, strerror(errno));
	else {
		ret = rtnl_link_info(ifname, 0, l, &d);
		/* Without our own namespace back every later step would act on the pod's. */
		if (setns(self, CLONE_NEWNET) < 0) {
			fprintf(stderr,
				"conclave-cni: cannot return to our network namespace: %s\n",
				strerror(errno));
			abort();
		}
		if (ret < 0)
			cni_fail(err, CNI_ERR_INVALID_CONFIG, "%s in %s: %s", ifname, netns, d.msg);
	}
	if (self >= 0)
		close(self);
	if (ns >= 0)
		close(ns);
	return ret < 0 ? -1 : 0;
}

/* The host side of the pod's veth, in our namespace: it must be a veth whose peer is the pod's
 * interface. Returns its ifindex. */
static int host_veth(const struct cni_env *e, uint32_t *ifindex, struct cni_error *err)
{
	struct rtnl_link pod, host;
	struct diag d = { { 0 } };

	if (pod_link(e->netns, e->ifname, &pod, err) < 0)
		return -1;
	if (strcmp(pod.kind, "veth") || pod.peer_ifindex <= 0)
		return cni_fail(err, CNI_ERR_INVALID_CONFIG,
				"%s in %s is a '%s' link, not a veth: conclave-cni chains after "
				"plugins that make veth pairs (bridge, ptp)",
				e->ifname, e->netns, pod.kind[0] ? pod.kind : "none");
	if (rtnl_link_info(NULL, pod.peer_ifindex, &host, &d) < 0)
		return cni_fail(err, CNI_ERR_INVALID_CONFIG,
				"the host side of %s's veth (ifindex %d) is not in our network "
				"namespace: %s",
				e->ifname, pod.peer_ifindex, d.msg);
	if (strcmp(host.kind, "veth") || host.peer_ifindex != pod.ifindex)
		return cni_fail(err, CNI_ERR_INVALID_CONFIG,
				"ifindex %d here is not the peer of %s in %s", pod.peer_ifindex,
				e->ifname, e->netns);
	*ifindex = (uint32_t)host.ifindex;
	return 0;
}

/* The record ADD writes for this pod (CHECK compares against the same). */
static int pod_record(const struct cni_env *e, const struct cni_config *c, struct dp_pod_v1 *pod,
		      struct cni_error *err)
{
	struct cni_ip ips[DP_POD_ADDRS_MAX];
	size_t n;

	if (cni_pod_addresses(c, e->ifname, ips, DP_POD_ADDRS_MAX, &n, err) < 0)
		return -1;
	memset(pod, 0, sizeof(*pod));
	pod->naddrs = (uint32_t)n;
	for (size_t i = 0; i < n; i++)
		podpath_addr(ips[i].family, ips[i].addr, pod->addrs[i]);
	snprintf(pod->name, sizeof(pod->name), "%s", e->pod_name);
	snprintf(pod->container_id, sizeof(pod->container_id), "%s", e->container_id);
	snprintf(pod->ifname, sizeof(pod->ifname), "%s", e->ifname);
	return 0;
}

/* ADD registers the pod and attaches the program; CHECK verifies that both are in place. Both
 * start from prevResult, the pod's record and its host-side veth. */
static int cmd_pod(const struct cni_env *e, const struct cni_config *c, char **out,
		   struct cni_error *err)
{
	bool add = e->cmd == CNI_CMD_ADD;
	struct podpath *pp = NULL;
	struct dp_pod_v1 pod;
	struct diag d = { { 0 } };
	uint32_t ifindex = 0;
	int ret;

	if (!c->has_prev)
		return cni_fail(err, CNI_ERR_INVALID_CONFIG,
				"no prevResult: conclave-cni is a chained plugin and must follow "
				"the plugin that creates the pod's interface (e.g. bridge)");
	if (pod_record(e, c, &pod, err) < 0 || host_veth(e, &ifindex, err) < 0)
		return -1;
	ret = podpath_open(c->pin_root, true, &pp, &d);
	if (ret < 0)
		return cni_fail(
		    err, ret == -ENOENT || ret == -EAGAIN ? CNI_ERR_TRY_AGAIN : CNI_ERR_DATAPATH,
		    "%s", d.msg);
	pod.added_ns = mono_ns();
	ret = add ? podpath_add(pp, ifindex, &pod, &d) : podpath_check(pp, ifindex, &pod, &d);
	podpath_close(pp);
	if (ret < 0)
		return cni_fail(err, add ? CNI_ERR_DATAPATH : CNI_ERR_CHECK, "pod %s%s: %s",
				pod.name, add ? "" : " is not enforced", d.msg);
	if (add && !(*out = cni_result_text(c)))
		return cni_fail(err, CNI_ERR_IO, "out of memory");
	return 0;
}

/* Best effort: a pod that is not registered (a second DEL, a failed ADD, no datapath) is
 * already deleted. The netns is not needed: the record says where the pod was. */
static int cmd_del(const struct cni_env *e, const struct cni_config *c, struct cni_error *err)
{
	struct podpath *pp = NULL;
	struct diag d = { { 0 } };
	int ret = podpath_open(c->pin_root, false, &pp, &d);

	if (ret == -ENOENT)
		return 0;
	if (ret == 0)
		ret = podpath_forget(pp, e->container_id, e->ifname, &d);
	podpath_close(pp);
	if (ret < 0)
		return cni_fail(err, CNI_ERR_DATAPATH, "%s", d.msg);
	return 0;
}

struct gc_ctx {
	const struct cni_config *c;
	struct podpath *pp;
	struct diag *d;
	int first;
};

static int gc_one(uint32_t ifindex, const struct dp_pod_v1 *pod, void *ctx)
{
	struct gc_ctx *g = ctx;
	char id[DP_POD_ID_MAX + 1], ifname[17];
	int ret;

	snprintf(id, sizeof(id), "%.*s", (int)sizeof(pod->container_id), pod->container_id);
	snprintf(ifname, sizeof(ifname), "%.*s", (int)sizeof(pod->ifname), pod->ifname);
	if (cni_attachment_valid(g->c, id, ifname))
		return 0;
	ret = podpath_del(g->pp, ifindex, pod, g->d);
	if (ret < 0 && !g->first)
		g->first = ret;
	return 0;
}

/* Forget every pod the runtime no longer knows. */
static int cmd_gc(const struct cni_config *c, struct cni_error *err)
{
	struct diag d = { { 0 } };
	struct gc_ctx g = { c, NULL, &d, 0 };
	int ret;

	if (!c->valid)
		return cni_fail(err, CNI_ERR_INVALID_CONFIG,
				"GC needs cni.dev/valid-attachments in the configuration");
	ret = podpath_open(c->pin_root, false, &g.pp, &d);
	if (ret == -ENOENT)
		return 0;
	if (ret == 0)
		ret = podpath_for_each(g.pp, gc_one, &g, &d);
	podpath_close(g.pp);
	if (ret < 0 || g.first < 0)
		return cni_fail(err, CNI_ERR_DATAPATH, "%s", d.msg);
	return 0;
}

static int cmd_status(const struct cni_config *c, struct cni_error *err)
{
	struct podpath *pp = NULL;
	struct diag d = { { 0 } };
	int ret = podpath_open(c->pin_root, true, &pp, &d);

	podpath_close(pp);
	if (ret < 0)
		return cni_fail(err, CNI_ERR_NOT_AVAILABLE, "%s", d.msg);
	return 0;
}

int cni_plugin_run(const struct cni_env *e, const char *in, size_t len, char **out,
		   char version[16], struct cni_error *err)
{
	struct cni_config c;
	int ret;

	*out = NULL;
	version[0] = '\0';
	if (e->cmd == CNI_CMD_VERSION) {
		*out = cni_version_answer(in, len);
		return *out ? 0 : cni_fail(err, CNI_ERR_IO, "out of memory");
	}
	if (cni_config_parse(in, len, &c, err) < 0)
		return -1;
	snprintf(version, 16, "%s", c.version);
	switch (e->cmd) {
	case CNI_CMD_ADD:
	case CNI_CMD_CHECK: ret = cmd_pod(e, &c, out, err); break;
	case CNI_CMD_DEL: ret = cmd_del(e, &c, err); break;
	case CNI_CMD_GC: ret = cmd_gc(&c, err); break;
	default: ret = cmd_status(&c, err); break;
	}
	cni_config_free(&c);
	return ret;
}
