/* SPDX-License-Identifier: Apache-2.0 */
/* Inside the join service: state shared by the listener, the workers, the hub and the
 * operator requests (joind.c, joind_admin.c). */
#ifndef CONCLAVE_JOIND_PRIV_H
#define CONCLAVE_JOIND_PRIV_H

#include <pthread.h>
#include <stdbool.h>

#include <openssl/evp.h>

#include "conclave/atls.h"
#include "conclave/clusterca.h"
#include "conclave/hub.h"
#include "conclave/joind.h"
#include "conclave/kms.h"
#include "conclave/membership.h"
#include "conclave/policy.h"
#include "conclave/ratelimit.h"

/* A node policy shared by the sessions verifying against it; replaced, never changed. */
struct policy_ref {
	struct policy p;
	unsigned int refs;
};

struct joind {
	const struct joind_config *cfg;
	struct attest_opts self; /* our own attestation */
	X509_STORE *ca;
	EVP_PKEY *policy_pub, *operator_pub;
	struct atls_ctx *ctx;
	struct hub *hub;
	struct ratelimit *rl;
	/* The store has one connection: every use holds store_lock. */
	struct membership *store;
	pthread_mutex_t store_lock;
	/* Guards kms, cluster_ca, cluster_id and node_policy; kms and cluster_ca are set once
	 * (init or recover) and live until the service stops. */
	pthread_mutex_t state_lock;
	struct kms *kms;
	struct cluster_ca *cluster_ca;
	/* One init or recover at a time: the first may be formatting the state disk. */
	pthread_mutex_t install_lock;
	uint8_t node_id[32]; /* our EK's hash: the state disk's owner */
	uint8_t cluster_id[CLUSTER_ID_LEN];
	struct policy_ref *node_policy;
	/* Our TPM, kept open across joins (self.ctx): workers share it one proof at a time (it
	 * may have no resource manager, as swtpm), never across network I/O. */
	struct attest_ctx *prover;
	/* The pool: the acceptor queues fds, idle workers take them. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int *queue; /* ring of cfg->workers fds */
	size_t head, queued;
	unsigned int busy;
	bool stopping;
	pthread_t *threads;
	unsigned int n_threads;
};

/* The cluster's key holder, or NULL before init/recover (then the cluster identity is unset). */
struct cluster_ca *joind_cluster(struct joind *j, uint8_t id[CLUSTER_ID_LEN], struct kms **kms);

/* Take and drop a reference to the current node policy. */
struct policy_ref *joind_policy_get(struct joind *j);
void joind_policy_put(struct joind *j, struct policy_ref *r);

enum install_mode {
	INSTALL_NEW,	  /* init: the store must belong to no cluster yet */
	INSTALL_EXISTING, /* recover: the store's check value must match */
	INSTALL_ANY,	  /* a recovery file at start: either */
};

/* Take over k (freed on failure too): check it against the store's check value (or record one
 * for a new cluster) and derive the CA. -EEXIST if the service already has a master secret or
 * (INSTALL_NEW) the store belongs to a cluster; -ENOENT (INSTALL_EXISTING) if it does not; -EPERM
 * if k is another cluster's. */
int joind_install_kms(struct joind *j, struct kms *k, enum install_mode mode, struct diag *d);

/* Verify and install a signed node policy; with persist, also write it over cfg->node_policy.
 * Then check every active member against it: *mismatched of them fail, and with cfg->enforce
 * those are revoked (*revoked). */
int joind_set_policy(struct joind *j, const uint8_t *doc, size_t len, bool persist,
		     unsigned int *mismatched, unsigned int *revoked, struct diag *d);

/* Serve one operator session (joind already proved itself on it; bound: with the cluster
 * identity in its quote, so the CA and member list may be shown on it). */
void joind_admin(struct joind *j, struct atls_session *s, bool bound);

#endif
