// SPDX-License-Identifier: Apache-2.0
/* The mesh: one peer set, two places it must hold (WireGuard, the datapath), one order. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/log.h"
#include "conclave/mesh.h"
#include "conclave/net.h"

#define MAX_ENDPOINTS 4

struct mesh {
	struct mesh_config c;
	struct peer *cur; /* applied, sorted by node id */
	size_t n_cur;
	bool synced;  /* WireGuard's own peers were reconciled (a restarted agent finds old ones) */
	bool applied; /* a first apply happened: cur describes what the datapath holds */
};

int mesh_new(const struct mesh_config *c, struct mesh **out, struct diag *d)
{
	struct mesh *m = calloc(1, sizeof(*m));

	if (!m) {
		diag_set(d, "mesh: out of memory");
		return -ENOMEM;
	}
	m->c = *c;
	*out = m;
	return 0;
}

void mesh_free(struct mesh *m)
{
	if (!m)
		return;
	free(m->cur);
	free(m);
}

size_t mesh_peer_count(const struct mesh *m)
{
	return m->n_cur;
}

/* The index-th "host:port" of a comma-separated list into host and port. */
static int endpoint_at(const char *endpoints, unsigned int index, char *host, size_t cap,
		       uint16_t *port)
{
	char tok[MEMBERSHIP_ENDPOINTS_MAX];
	const char *p = endpoints;

	for (unsigned int i = 0;; i++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (i == index) {
			if (len == 0 || len >= sizeof(tok))
				return -EINVAL;
			memcpy(tok, p, len);
			tok[len] = '\0';
			return net_parse_hostport(tok, host, cap, port);
		}
		if (!comma)
			return -ENOENT;
		p = comma + 1;
	}
}

int mesh_parse_endpoint(const char *endpoints, unsigned int index, struct sockaddr_storage *out)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
	char host[INET6_ADDRSTRLEN];
	uint16_t port;
	int ret = endpoint_at(endpoints, index, host, sizeof(host), &port);

	memset(out, 0, sizeof(*out));
	if (ret < 0)
		return ret;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		return 0;
	}
	return -EINVAL;
}

/* One allowed IP from a peer's address ("10.100.0.2": bits is its prefix) or CIDR. */
static int add_allowed(const char *text, unsigned int bits, struct wg_allowed_ip *out, size_t cap,
		       size_t *n)
{
	char cidr[INET6_ADDRSTRLEN + 8];
	struct dp_cidr c;
	unsigned int max;

	if (!text[0])
		return 0;
	if (*n == cap)
		return -E2BIG;
	if (strchr(text, '/'))
		snprintf(cidr, sizeof(cidr), "%s", text);
	else
		snprintf(cidr, sizeof(cidr), "%s/%u", text, bits);
	if (dp_cidr_parse(cidr, 0, &c) < 0)
		return -EINVAL;
	max = c.family == AF_INET ? 32 : 128;
	/* WireGuard wants networks: clear host bits rather than refuse a whole update. */
	for (unsigned int bit = c.prefixlen; bit < max; bit++)
		c.addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	out[*n] = (struct wg_allowed_ip){ .family = c.family, .cidr = c.prefixlen };
	memcpy(out[*n].addr, c.addr, sizeof(out[*n].addr));
	(*n)++;
	return 0;
}

int mesh_allowed_ips(const struct peer *p, struct wg_allowed_ip *out, size_t cap, size_t *n)
{
	int ret;

	*n = 0;
	ret = add_allowed(p->overlay_v4, 32, out, cap, n);
	if (ret == 0)
		ret = add_allowed(p->overlay_v6, 128, out, cap, n);
	if (ret == 0)
		ret = add_allowed(p->pod_cidr, 32, out, cap, n);
	return ret;
}

/* What the datapath holds of a peer: its node id and endpoints (not its key). */
static bool same_entries(const struct peer *a, const struct peer *b)
{
	return a->node_id == b->node_id && !strcmp(a->endpoints, b->endpoints);
}

static bool same_peer(const struct peer *a, const struct peer *b)
{
	return a->node_id == b->node_id && !memcmp(a->wg_pubkey, b->wg_pubkey, 32) &&
	       !strcmp(a->endpoints, b->endpoints) && !strcmp(a->overlay_v4, b->overlay_v4) &&
	       !strcmp(a->overlay_v6, b->overlay_v6) && !strcmp(a->pod_cidr, b->pod_cidr);
}

static const struct peer *find(const struct peer *v, size_t n, int64_t id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid].node_id == id)
			return &v[mid];
		if (v[mid].node_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The datapath entries of peers: one per endpoint. */
static int dp_entries(const struct peer *const *peers, size_t n, struct dp_peer_entry **out,
		      size_t *n_out, struct diag *d)
{
	struct dp_peer_entry *e = calloc(n * MAX_ENDPOINTS + 1, sizeof(*e));
	size_t k = 0;

	if (!e) {
		diag_set(d, "mesh: out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		for (unsigned int j = 0; j < MAX_ENDPOINTS; j++) {
			char host[INET6_ADDRSTRLEN];
			uint16_t port;
			int ret = endpoint_at(peers[i]->endpoints, j, host, sizeof(host), &port);

			if (ret == -ENOENT)
				break;
			if (ret < 0 || dp_endpoint_parse(host, port, &e[k].ep) < 0) {
				diag_set(d, "mesh: node %lld has a bad endpoint list '%s'",
					 (long long)peers[i]->node_id, peers[i]->endpoints);
				free(e);
				return -EINVAL;
			}
			e[k].peer.node_id = (uint32_t)peers[i]->node_id;
			k++;
		}
	*out = e;
	*n_out = k;
	return 0;
}

/* The ranges pods may reach (bpf/pod.bpf.c): every node's allowed IPs, this node's included,
 * each with its node id. */
static int dp_nets(const struct peer *self, const struct peer *const *peers, size_t n,
		   struct dp_cidr **out, size_t *n_out, struct diag *d)
{
	struct dp_cidr *c = calloc((n + 1) * WG_MAX_ALLOWED, sizeof(*c));
	struct wg_allowed_ip ips[WG_MAX_ALLOWED];
	size_t k = 0, n_ips;

	if (!c) {
		diag_set(d, "mesh: out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i <= n; i++) {
		const struct peer *p = i < n ? peers[i] : self;

		if (mesh_allowed_ips(p, ips, WG_MAX_ALLOWED, &n_ips) < 0) {
			diag_set(d, "mesh: node %lld has bad addresses", (long long)p->node_id);
			free(c);
			return -EINVAL;
		}
		for (size_t j = 0; j < n_ips; j++, k++) {
			c[k].family = ips[j].family;
			c[k].prefixlen = ips[j].cidr;
			memcpy(c[k].addr, ips[j].addr, sizeof(c[k].addr));
			c[k].kind = (uint32_t)p->node_id;
		}
	}
	*out = c;
	*n_out = k;
	return 0;
}

/* The datapath holds exactly these peers: their endpoints, and their ranges for pods. */
static int dp_set(struct mesh *m, const struct peer *self, const struct peer *const *peers,
		  size_t n, struct diag *d)
{
	struct dp_peer_entry *e = NULL;
	struct dp_apply_stats st;
	struct dp_cidr *nets = NULL;
	size_t k = 0, n_nets = 0;
	int ret;

	if (!m->c.dp)
		return 0;
	ret = dp_entries(peers, n, &e, &k, d);
	if (ret == 0)
		ret = datapath_apply_peers(m->c.dp, e, k, &st, d);
	if (ret == 0)
		ret = dp_nets(self, peers, n, &nets, &n_nets, d);
	if (ret == 0)
		ret = datapath_set_peer_nets(m->c.dp, nets, n_nets, d);
	free(e);
	free(nets);
	return ret;
}

static int wg_peer_of(const struct mesh *m, const struct peer *p, struct wg_peer *w, struct diag *d)
{
	memset(w, 0, sizeof(*w));
	memcpy(w->pubkey, p->wg_pubkey, WG_KEY_LEN);
	w->keepalive_s = m->c.keepalive_s;
	if (mesh_parse_endpoint(p->endpoints, 0, &w->endpoint) < 0 ||
	    mesh_allowed_ips(p, w->allowed, WG_MAX_ALLOWED, &w->n_allowed) < 0) {
		diag_set(d, "mesh: node %lld: bad endpoint '%s' or addresses",
			 (long long)p->node_id, p->endpoints);
		return -EINVAL;
	}
	return 0;
}

static bool key_in(const struct peerset *ps, const uint8_t key[WG_KEY_LEN])
{
	for (size_t i = 0; i < ps->n_peers; i++)
		if (!memcmp(ps->peers[i].wg_pubkey, key, WG_KEY_LEN))
			return true;
	return false;
}

/* Peers WireGuard holds that the set does not: left by an agent that ran before us. */
static int stale_keys(struct mesh *m, const struct peerset *ps, uint8_t (**out)[WG_KEY_LEN],
		      size_t *n, struct diag *d)
{
	struct wg_device dev = { 0 };
	int ret;

	*out = NULL;
	*n = 0;
	if (!m->c.wg || m->synced)
		return 0;
	ret = wg_get_device(m->c.wg, m->c.wg_ifname, &dev, d);
	if (ret < 0)
		return ret;
	*out = calloc(dev.n_peers + 1, WG_KEY_LEN);
	if (!*out) {
		wg_device_free(&dev);
		return -ENOMEM;
	}
	for (size_t i = 0; i < dev.n_peers; i++)
		if (!key_in(ps, dev.peers[i].pubkey))
			memcpy((*out)[(*n)++], dev.peers[i].pubkey, WG_KEY_LEN);
	wg_device_free(&dev);
	return 0;
}

/* WireGuard: forget the old keys of removed and changed peers (and stale ones), set new and
 * changed ones. */
static int wg_set(struct mesh *m, const struct peerset *ps, const struct peer *const *upsert,
		  size_t n_up, const struct peer *const *gone, size_t n_gone, struct diag *d)
{
	uint8_t(*stale)[WG_KEY_LEN] = NULL;
	size_t n_stale = 0;
	int ret = stale_keys(m, ps, &stale, &n_stale, d);
	struct wg_peer *w = calloc(n_up + 1, sizeof(*w));
	uint8_t(*rm)[WG_KEY_LEN] = calloc(n_gone + n_stale + 1, WG_KEY_LEN);

	if (ret == 0 && (!w || !rm))
		ret = -ENOMEM;
	for (size_t i = 0; ret == 0 && i < n_up; i++)
		ret = wg_peer_of(m, upsert[i], &w[i], d);
	for (size_t i = 0; ret == 0 && i < n_gone; i++)
		memcpy(rm[i], gone[i]->wg_pubkey, WG_KEY_LEN);
	if (ret == 0 && n_stale)
		memcpy(rm[n_gone], stale, n_stale * WG_KEY_LEN);
	free(stale);
	if (ret == 0 && m->c.wg && (n_up || n_gone || n_stale))
		ret = wg_set_peers(m->c.wg, m->c.wg_ifname, w, n_up,
				   (const uint8_t(*)[WG_KEY_LEN])rm, n_gone + n_stale, d);
	if (ret == 0)
		m->synced = true;
	if (ret == -ENOMEM)
		diag_set(d, "mesh: out of memory");
	free(w);
	free(rm);
	return ret;
}

int mesh_kick(struct mesh *m, struct diag *d)
{
	uint8_t(*keys)[WG_KEY_LEN];
	struct wg_peer *w;
	int ret = 0;

	if (!m->c.wg || !m->n_cur)
		return 0;
	w = calloc(m->n_cur, sizeof(*w));
	keys = calloc(m->n_cur, WG_KEY_LEN);
	if (!w || !keys) {
		free(w);
		free(keys);
		diag_set(d, "mesh: out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; ret == 0 && i < m->n_cur; i++) {
		ret = wg_peer_of(m, &m->cur[i], &w[i], d);
		memcpy(keys[i], m->cur[i].wg_pubkey, WG_KEY_LEN);
	}
	/* Fresh peer objects: WireGuard sends at most one handshake initiation per peer every 5 s,
	 * and a new peer with a keepalive interval sends one at once. Our key change already ended
	 * every session, so nothing established is lost. Removals go before additions. */
	if (ret == 0)
		ret = wg_set_peers(m->c.wg, m->c.wg_ifname, w, m->n_cur,
				   (const uint8_t(*)[WG_KEY_LEN])keys, m->n_cur, d);
	free(w);
	free(keys);
	return ret;
}

int mesh_apply(struct mesh *m, const struct peerset *ps, struct mesh_stats *st, struct diag *d)
{
	size_t n_new = ps->n_peers, n_keep = 0, n_up = 0, n_gone = 0;
	/* Arrays of pointers into the old and new sets. */
	const struct peer **keep = calloc(m->n_cur + 1, sizeof(void *));
	const struct peer **gone = calloc(m->n_cur + 1, sizeof(void *));
	const struct peer **up = calloc(n_new + 1, sizeof(void *));
	const struct peer **all = calloc(n_new + 1, sizeof(void *));
	struct peer *next = calloc(n_new + 1, sizeof(*next));
	struct mesh_stats s = { 0 };
	int ret = keep && gone && up && all && next ? 0 : -ENOMEM;

	for (size_t i = 0; ret == 0 && i < m->n_cur; i++) {
		const struct peer *now = find(ps->peers, n_new, m->cur[i].node_id);

		/* A re-keyed peer keeps its datapath entries: they name its endpoints only. */
		if (now && same_entries(now, &m->cur[i]))
			keep[n_keep++] = &m->cur[i];
		if (now && same_peer(now, &m->cur[i]))
			continue;
		/* Removed, or changed: its old key and entries go (a changed key is a new peer
		 * to WireGuard; the same key is simply updated in place). */
		if (!now || memcmp(now->wg_pubkey, m->cur[i].wg_pubkey, 32) != 0)
			gone[n_gone++] = &m->cur[i];
		if (!now)
			s.removed++;
	}
	for (size_t i = 0; ret == 0 && i < n_new; i++) {
		const struct peer *was = find(m->cur, m->n_cur, ps->peers[i].node_id);

		all[i] = &ps->peers[i];
		if (was && same_peer(was, &ps->peers[i])) {
			s.unchanged++;
			continue;
		}
		up[n_up++] = &ps->peers[i];
		if (was)
			s.updated++;
		else
			s.added++;
	}
	/* 1. The datapath stops admitting what goes or changes. Not on the first apply of a
	 * restarted agent: it does not know what the pinned map holds, and an empty keep set
	 * would drop every peer's traffic for a moment; step 3 removes what is stale (WireGuard,
	 * reconciled in step 2, already refuses those peers). */
	if (ret == 0 && m->applied)
		ret = dp_set(m, &ps->self, keep, n_keep, d);
	/* 2. WireGuard: old keys out, new and changed peers in. */
	if (ret == 0)
		ret = wg_set(m, ps, up, n_up, gone, n_gone, d);
	/* 3. The datapath admits the new set. */
	if (ret == 0)
		ret = dp_set(m, &ps->self, all, n_new, d);
	if (ret == 0) {
		if (n_new)
			memcpy(next, ps->peers, n_new * sizeof(*next));
		free(m->cur);
		m->cur = next;
		m->n_cur = n_new;
		m->applied = true;
		next = NULL;
		if (st)
			*st = s;
	} else if (ret == -ENOMEM) {
		diag_set(d, "mesh: out of memory");
	}
	free(keep);
	free(gone);
	free(up);
	free(all);
	free(next);
	return ret;
}
