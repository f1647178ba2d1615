/* SPDX-License-Identifier: Apache-2.0 */
/* The join service core (docs/joind.md): a TCP listener and a bounded pool of workers; each
 * connection runs attested TLS (joind proves first, then verifies the node), admits the node
 * into the membership store and answers with its disk key, allocation and the peer set. */
#ifndef CONCLAVE_JOIND_H
#define CONCLAVE_JOIND_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "conclave/diag.h"
#include "conclave/membership.h"

#define JOIND_DEFAULT_PORT    7443
#define JOIND_DEFAULT_WORKERS 8
#define JOIND_MAX_WORKERS     1024
#define JOIND_DEFAULT_RATE    20.0 /* new connections per second per client address */
#define JOIND_DEFAULT_BURST   40.0
#define JOIND_NODE_CERT_DAYS  30 /* nodes get a fresh certificate at every (re)join */
/* Agents re-attest every 10 minutes by default: two missed rounds and a minute of slack. */
#define JOIND_DEFAULT_REATTEST_DEADLINE_S 1260

struct joind_config {
	const char *listen_addr; /* numeric IPv4/IPv6 address */
	uint16_t port;		 /* 0 = any: the bound port is reported */
	const char *port_file;	 /* if set, the bound port is written there (atomically) */
	unsigned int workers;	 /* concurrent connections; more are closed at once */
	int timeout_ms;		 /* per message (atls); 0 = ATLS_DEFAULT_TIMEOUT_MS */
	/* Our own attestation. */
	const char *tcti, *ak_state, *event_log, *ek_chain;
	uint32_t pcr_mask;
	bool ak_per_boot; /* see attest_opts */
	/* What nodes must show. */
	const char *node_policy; /* signed policy envelope (replaced by an operator's update) */
	const char *policy_key;	 /* Ed25519 public key (PEM) that signed it */
	const char *ca_bundle;	 /* EK manufacturer roots (PEM) */
	bool enforce;		 /* revoke members a new policy no longer admits */
	/* Who may change the cluster (init, recover, revoke, policy): an Ed25519 public key. */
	const char *operator_key;
	/* State. */
	const char *db_path; /* membership store */
	/* The control plane's state disk (disk.h): with it, the store at db_path (which must lie
	 * under state_dir) opens only once init or recover brought the master secret, which the
	 * disk's key derives from. NULL: the store opens at start (hosts without device-mapper). */
	const char *state_disk;
	const char *state_dir; /* NULL: DISK_DEFAULT_MOUNT */
	/* Recovery file with the master secret, for a control plane that unseals it from its own
	 * encrypted disk; NULL = wait for `conclavectl init` or `recover`. */
	const char *recovery;
	struct membership_config ranges;
	/* Limits. */
	double rate, burst;	   /* per client address; 0 = defaults */
	unsigned int max_sessions; /* held node sessions; 0 = HUB_DEFAULT_MAX_SESSIONS */
	int heartbeat_ms;	   /* 0 = HUB_DEFAULT_HEARTBEAT_MS */
	/* A held node that has not re-attested for this long is revoked (0: never). */
	int reattest_deadline_ms;
	volatile sig_atomic_t *reload; /* set (by SIGHUP) to re-read the node policy file */
	volatile sig_atomic_t *stop;   /* set (by a signal handler) to stop serving */
};

/* Load everything, listen, print "listening on ADDR PORT" to stdout and serve until *stop.
 * 0 after a requested stop; -errno (d says what) if the service cannot start. */
int joind_run(const struct joind_config *c, struct diag *d);

#endif
