/* SPDX-License-Identifier: Apache-2.0 */
/* The join service core (docs/joind.md): a TCP listener and a bounded pool of workers; each
 * connection runs attested TLS (joind proves first, then verifies the node), admits the node
 * into the membership store and answers with its disk key, allocation and the peer set. */
#ifndef CONCLAVE_JOIND_H
#define CONCLAVE_JOIND_H

#include <signal.h>
#include <stdint.h>

#include "conclave/diag.h"
#include "conclave/membership.h"

#define JOIND_DEFAULT_PORT    7443
#define JOIND_DEFAULT_WORKERS 8
#define JOIND_MAX_WORKERS     1024

struct joind_config {
	const char *listen_addr; /* numeric IPv4/IPv6 address */
	uint16_t port;		 /* 0 = any: the bound port is reported */
	const char *port_file;	 /* if set, the bound port is written there (atomically) */
	unsigned int workers;	 /* concurrent connections; more are closed at once */
	int timeout_ms;		 /* per message (atls); 0 = ATLS_DEFAULT_TIMEOUT_MS */
	/* Our own attestation. */
	const char *tcti, *ak_state, *event_log, *ek_chain;
	uint32_t pcr_mask;
	/* What nodes must show. */
	const char *node_policy; /* signed policy envelope */
	const char *policy_key;	 /* Ed25519 public key (PEM) that signed it */
	const char *ca_bundle;	 /* EK manufacturer roots (PEM) */
	/* State. */
	const char *db_path;  /* membership store */
	const char *recovery; /* recovery file with the master secret */
	struct membership_config ranges;
	volatile sig_atomic_t *stop; /* set (by a signal handler) to stop serving */
};

/* Load everything, listen, print "listening on ADDR PORT" to stdout and serve until *stop.
 * 0 after a requested stop; -errno (d says what) if the service cannot start. */
int joind_run(const struct joind_config *c, struct diag *d);

#endif
