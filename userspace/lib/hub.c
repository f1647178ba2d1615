// SPDX-License-Identifier: Apache-2.0
/* The peer-set hub: one thread polling the held sessions and an eventfd that says "the store
 * changed"; each change becomes one delta per distinct generation, sent to every session. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "conclave/hub.h"
#include "conclave/log.h"
#include "conclave/util.h"
#include "conclave/peerset.h"

#define HUB_POLL_MS 1000

struct held {
	struct atls_session *s;
	int fd;
	int64_t node_id;
	uint64_t gen;
	uint64_t last_send_ms;
	uint64_t attested_ms; /* its join, or its last re-attestation */
};

/* What one distinct generation gets from the store. */
struct change {
	uint64_t from, to;
	bool stale; /* the log does not reach back: a snapshot instead */
	struct peer_delta *deltas;
	size_t n;
	uint8_t *doc; /* encoded delta */
	size_t doc_len;
};

struct hub {
	struct hub_config cfg;
	pthread_t thread;
	bool started;
	int efd;
	pthread_mutex_t lock; /* guards pending, stopping and n_sessions */
	struct held *pending;
	size_t n_pending, cap_pending;
	bool stopping;
	unsigned int n_sessions;
	/* Owned by the thread. */
	struct held *held;
	size_t n_held;
	struct pollfd *pfds;
};

static void release(struct held *e)
{
	atls_close(e->s);
	close(e->fd);
}

/* Drop session i (the last one takes its place). */
static void drop(struct hub *h, size_t i, const char *why)
{
	log_info("hub: node %lld session closed: %s", (long long)h->held[i].node_id, why);
	release(&h->held[i]);
	h->held[i] = h->held[--h->n_held];
	pthread_mutex_lock(&h->lock);
	h->n_sessions--;
	pthread_mutex_unlock(&h->lock);
}

/* Move sessions handed over by workers into the held set; a node's older session goes. */
static void take_pending(struct hub *h)
{
	struct held *p;
	size_t n;

	pthread_mutex_lock(&h->lock);
	p = h->pending;
	n = h->n_pending;
	h->pending = NULL;
	h->n_pending = h->cap_pending = 0;
	pthread_mutex_unlock(&h->lock);
	for (size_t k = 0; k < n; k++) {
		for (size_t i = 0; i < h->n_held; i++)
			if (h->held[i].node_id == p[k].node_id) {
				drop(h, i, "replaced by a new session");
				break;
			}
		h->held[h->n_held++] = p[k];
	}
	free(p);
}

static int send_update(struct hub *h, struct held *e, uint64_t gen, const uint8_t *doc, size_t len)
{
	struct wire_msg m = { .type = WIRE_PEER_UPDATE, .generation = gen };
	struct diag d;
	int ret;

	if (doc)
		m.peer_set = (struct blob){ doc, len };
	ret = atls_send(e->s, &m, &d);
	if (ret == 0) {
		e->gen = gen;
		e->last_send_ms = mono_ms();
	} else {
		log_info("hub: node %lld: %s", (long long)e->node_id, d.msg);
	}
	return ret;
}

static struct change *change_for(struct change *c, size_t n, uint64_t gen)
{
	for (size_t i = 0; i < n; i++)
		if (c[i].from == gen)
			return &c[i];
	return NULL;
}

static void changes_free(struct change *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(c[i].deltas);
		free(c[i].doc);
	}
	free(c);
}

/* One store visit: the changes since every generation a session is at, and a snapshot if any
 * of them is too old for the log. */
static int collect(struct hub *h, struct change **out, size_t *n_out, struct peer **snap,
		   size_t *n_snap, uint64_t *snap_gen)
{
	struct change *c = calloc(h->n_held ? h->n_held : 1, sizeof(*c));
	size_t n = 0;
	bool need_snapshot = false;
	struct diag d;
	int ret = 0;

	if (!c)
		return -ENOMEM;
	pthread_mutex_lock(h->cfg.store_lock);
	for (size_t i = 0; i < h->n_held && ret == 0; i++) {
		struct change *x;

		if (change_for(c, n, h->held[i].gen))
			continue;
		x = &c[n++];
		x->from = h->held[i].gen;
		ret =
		    membership_deltas_since(*h->cfg.store, x->from, &x->to, &x->deltas, &x->n, &d);
		if (ret == -ESTALE) {
			x->stale = need_snapshot = true;
			ret = 0;
		}
	}
	if (ret == 0 && need_snapshot)
		ret = membership_snapshot(*h->cfg.store, snap_gen, snap, n_snap, &d);
	pthread_mutex_unlock(h->cfg.store_lock);
	for (size_t i = 0; ret == 0 && i < n; i++)
		if (!c[i].stale && c[i].to > c[i].from)
			ret = peerdelta_encode(c[i].from, c[i].to, c[i].deltas, c[i].n, &c[i].doc,
					       &c[i].doc_len);
	if (ret < 0) {
		log_warn("hub: reading the peer-set changes: %s",
			 ret == -ENOMEM ? "out of memory" : d.msg);
		changes_free(c, n);
		return ret;
	}
	*out = c;
	*n_out = n;
	return 0;
}

static bool removes(const struct change *c, int64_t node_id)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->deltas[i].peer.node_id == node_id && c->deltas[i].op == PEER_REMOVE)
			return true;
	return false;
}

/* A full snapshot for one node: itself apart, everyone else as peers. */
static int send_snapshot(struct hub *h, struct held *e, struct peer *all, size_t n, uint64_t gen)
{
	struct peer *self = NULL, *others = calloc(n ? n : 1, sizeof(*others));
	uint8_t *doc = NULL;
	size_t k = 0, len = 0;
	int ret;

	if (!others)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (all[i].node_id == e->node_id)
			self = &all[i];
		else
			others[k++] = all[i];
	}
	ret = self ? peerset_encode(gen, self, others, k, &doc, &len) : -EACCES;
	if (ret == 0 && len > wire_body_max(WIRE_PEER_UPDATE) - 32) {
		log_warn("hub: node %lld: a snapshot of %zu peers does not fit one message",
			 (long long)e->node_id, k);
		ret = -E2BIG;
	}
	if (ret == 0)
		ret = send_update(h, e, gen, doc, len);
	free(doc);
	free(others);
	return ret;
}

/* false when the store could not be read: the caller tries again on its next tick. */
static bool push(struct hub *h)
{
	struct change *c = NULL;
	struct peer *snap = NULL;
	size_t n = 0, n_snap = 0;
	uint64_t snap_gen = 0;

	if (h->n_held == 0)
		return true;
	if (collect(h, &c, &n, &snap, &n_snap, &snap_gen) < 0)
		return false;
	for (size_t i = h->n_held; i-- > 0;) {
		struct held *e = &h->held[i];
		struct change *x = change_for(c, n, e->gen);
		int ret = 0;

		if (!x || (!x->stale && x->to <= x->from))
			continue;
		if (x->stale) {
			ret = send_snapshot(h, e, snap, n_snap, snap_gen);
			if (ret < 0)
				drop(h, i, ret == -EACCES ? "revoked" : "snapshot not delivered");
			continue;
		}
		ret = send_update(h, e, x->to, x->doc, x->doc_len);
		if (ret < 0)
			drop(h, i, "update not delivered");
		else if (removes(x, e->node_id))
			drop(h, i, "revoked");
	}
	changes_free(c, n);
	free(snap);
	return true;
}

static void heartbeats(struct hub *h)
{
	uint64_t now = mono_ms();

	for (size_t i = h->n_held; i-- > 0;)
		if (now - h->held[i].last_send_ms >= (uint64_t)h->cfg.heartbeat_ms &&
		    send_update(h, &h->held[i], h->held[i].gen, NULL, 0) < 0)
			drop(h, i, "heartbeat not delivered");
}

/* A held node speaks only to re-attest; a close or anything the handler refuses ends it. */
static void readable(struct hub *h, size_t i)
{
	struct held *e = &h->held[i];
	struct wire_msg m;
	struct diag d;
	int ret = atls_recv(e->s, &m, &d);

	if (ret < 0) {
		drop(h, i, ret == -ECONNRESET ? "the node closed it" : d.msg);
		return;
	}
	ret = h->cfg.on_message ? h->cfg.on_message(h->cfg.arg, e->s, e->node_id, &m) : -EPROTO;
	wire_msg_free(&m);
	if (ret == 1)
		e->attested_ms = mono_ms();
	if (ret < 0)
		drop(h, i, h->cfg.on_message ? "re-attestation refused" : "unexpected message");
}

/* Nodes that did not re-attest in time. */
static void deadlines(struct hub *h)
{
	uint64_t now = mono_ms();

	if (h->cfg.reattest_ms <= 0)
		return;
	for (size_t i = h->n_held; i-- > 0;)
		if (now - h->held[i].attested_ms > (uint64_t)h->cfg.reattest_ms) {
			if (h->cfg.on_overdue)
				h->cfg.on_overdue(h->cfg.arg, h->held[i].node_id);
			drop(h, i, "re-attestation overdue");
		}
}

static void *run(void *arg)
{
	struct hub *h = arg;

	bool retry = false; /* a change not yet pushed: the store could not be read */

	for (;;) {
		bool dirty = retry, stopping;
		size_t n = h->n_held;
		int rc;

		h->pfds[0] = (struct pollfd){ .fd = h->efd, .events = POLLIN };
		for (size_t i = 0; i < n; i++)
			h->pfds[i + 1] = (struct pollfd){ .fd = h->held[i].fd, .events = POLLIN };
		rc = poll(h->pfds, n + 1, HUB_POLL_MS);
		pthread_mutex_lock(&h->lock);
		stopping = h->stopping;
		pthread_mutex_unlock(&h->lock);
		if (stopping)
			break;
		if (rc > 0 && (h->pfds[0].revents & POLLIN)) {
			uint64_t v;

			dirty = read(h->efd, &v, sizeof(v)) == sizeof(v);
		}
		/* Highest index first: drop() moves the last session into the hole. */
		for (size_t i = n; rc > 0 && i-- > 0;)
			if (h->pfds[i + 1].revents)
				readable(h, i);
		take_pending(h);
		deadlines(h);
		retry = dirty && !push(h);
		heartbeats(h);
	}
	while (h->n_held)
		drop(h, h->n_held - 1, "the join service stops");
	return NULL;
}

int hub_start(const struct hub_config *c, struct hub **out, struct diag *d)
{
	struct hub *h = calloc(1, sizeof(*h));
	int rc;

	if (!h) {
		diag_set(d, "hub: out of memory");
		return -ENOMEM;
	}
	h->cfg = *c;
	if (!h->cfg.max_sessions)
		h->cfg.max_sessions = HUB_DEFAULT_MAX_SESSIONS;
	if (h->cfg.heartbeat_ms <= 0)
		h->cfg.heartbeat_ms = HUB_DEFAULT_HEARTBEAT_MS;
	pthread_mutex_init(&h->lock, NULL);
	h->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h->held = calloc(h->cfg.max_sessions, sizeof(*h->held));
	h->pfds = calloc(h->cfg.max_sessions + 1, sizeof(*h->pfds));
	if (h->efd < 0 || !h->held || !h->pfds) {
		diag_set(d, "hub: cannot set up %u sessions", h->cfg.max_sessions);
		hub_stop(h);
		return -ENOMEM;
	}
	rc = pthread_create(&h->thread, NULL, run, h);
	if (rc != 0) {
		diag_set(d, "hub: cannot start its thread: %s", strerror(rc));
		hub_stop(h);
		return -rc;
	}
	h->started = true;
	*out = h;
	return 0;
}

void hub_notify(struct hub *h)
{
	uint64_t one = 1;

	if (h && write(h->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("hub: cannot wake: %s", strerror(errno));
}

void hub_add(struct hub *h, struct atls_session *s, int fd, int64_t node_id, uint64_t gen)
{
	struct held e = { s, fd, node_id, gen, mono_ms(), mono_ms() };
	bool taken = false;

	atls_set_timeout(s, HUB_SEND_TIMEOUT_MS);
	pthread_mutex_lock(&h->lock);
	/* Sessions held plus those waiting must fit the thread's table. */
	if (!h->stopping && h->n_sessions < h->cfg.max_sessions) {
		if (h->n_pending == h->cap_pending) {
			size_t cap = h->cap_pending ? 2 * h->cap_pending : 16;
			struct held *p = realloc(h->pending, cap * sizeof(*p));

			if (p) {
				h->pending = p;
				h->cap_pending = cap;
			}
		}
		if (h->n_pending < h->cap_pending) {
			h->pending[h->n_pending++] = e;
			h->n_sessions++;
			taken = true;
		}
	}
	pthread_mutex_unlock(&h->lock);
	if (!taken) {
		log_warn("hub: no room for node %lld's session (%u held)", (long long)node_id,
			 h->cfg.max_sessions);
		release(&e);
		return;
	}
	/* The change log may have moved since gen: the thread checks on waking. */
	hub_notify(h);
}

unsigned int hub_sessions(struct hub *h)
{
	unsigned int n;

	pthread_mutex_lock(&h->lock);
	n = h->n_sessions;
	pthread_mutex_unlock(&h->lock);
	return n;
}

void hub_stop(struct hub *h)
{
	if (!h)
		return;
	if (h->started) {
		pthread_mutex_lock(&h->lock);
		h->stopping = true;
		pthread_mutex_unlock(&h->lock);
		hub_notify(h);
		pthread_join(h->thread, NULL);
	}
	for (size_t i = 0; i < h->n_pending; i++)
		release(&h->pending[i]);
	if (h->efd >= 0)
		close(h->efd);
	pthread_mutex_destroy(&h->lock);
	free(h->pending);
	free(h->held);
	free(h->pfds);
	free(h);
}
