/* SPDX-License-Identifier: Apache-2.0 */
/* The peer-set hub of the join service (docs/joind.md): holds the attested sessions of
 * subscribed nodes and pushes every membership change to them, generation-numbered, as a delta
 * from the generation each session last saw (a snapshot when the change log no longer reaches
 * back that far). One thread; every send has a short deadline, so a node that stops reading
 * loses its session (it reconnects and gets a snapshot) instead of holding up the others. */
#ifndef CONCLAVE_HUB_H
#define CONCLAVE_HUB_H

#include <pthread.h>
#include <stdint.h>

#include "conclave/atls.h"
#include "conclave/diag.h"
#include "conclave/membership.h"

#define HUB_DEFAULT_MAX_SESSIONS 4096
#define HUB_DEFAULT_HEARTBEAT_MS 15000
#define HUB_SEND_TIMEOUT_MS	 500

struct hub_config {
	/* The store, shared with the workers under store_lock; a pointer to the owner's pointer,
	 * which a control plane with a state disk sets only at init or recover. */
	struct membership *const *store;
	pthread_mutex_t *store_lock; /* ... under this lock */
	unsigned int max_sessions;   /* 0 = HUB_DEFAULT_MAX_SESSIONS */
	int heartbeat_ms;	     /* an empty PEER_UPDATE after this much silence; 0 = default */
	/* A message from a held node (its re-attestation), on the hub thread: 1 = it re-attested
	 * (its deadline starts again), 0 = fine, < 0 = close the session. NULL: any message
	 * closes the session. */
	int (*on_message)(void *arg, struct atls_session *s, int64_t node_id, struct wire_msg *m);
	/* A held node whose last attestation is older than reattest_ms (0: no deadline); its
	 * session is closed after the call. */
	void (*on_overdue)(void *arg, int64_t node_id);
	void *arg;
	int reattest_ms;
};

struct hub;

int hub_start(const struct hub_config *c, struct hub **out, struct diag *d);

/* Stop the thread and close every held session. NULL is fine. */
void hub_stop(struct hub *h);

/* Take over an attested session of node node_id whose peer set is at generation gen: the hub
 * closes s and fd when done. An older session of the same node is closed. */
void hub_add(struct hub *h, struct atls_session *s, int fd, int64_t node_id, uint64_t gen);

/* The store changed: push to everyone. Cheap; safe from any thread. */
void hub_notify(struct hub *h);

/* Sessions held right now. */
unsigned int hub_sessions(struct hub *h);

#endif
