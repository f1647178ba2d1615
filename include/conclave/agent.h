/* SPDX-License-Identifier: Apache-2.0 */
/* conclave-agent: the node's one long-running process (docs/agent.md). A state machine:
 *
 *   starting -> modules -> keys -> mesh-setup -> joining -> running
 *                                        ^          |          |
 *                                        |          v          v
 *                                        +---- reconnecting <--+   (session lost: mesh kept)
 *   joining -> refused (the join service refused us: retried slowly)
 *
 * It generates the node's WireGuard key pair (private key only in locked memory), attests and
 * joins over mutual attested TLS, extends PCR 15 with the cluster identity, keeps WireGuard and
 * the datapath equal to the attested peer set, re-attests on its session every interval with a
 * fresh key pair, and answers status requests on a unix socket. One line of log per state
 * change. */
#ifndef CONCLAVE_AGENT_H
#define CONCLAVE_AGENT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "conclave/attest.h"
#include "conclave/diag.h"
#include "conclave/policy.h"

#define AGENT_DEFAULT_WG_IFNAME	  "cnc0"
#define AGENT_DEFAULT_WG_PORT	  51820
#define AGENT_DEFAULT_REATTEST_S  600
#define AGENT_DEFAULT_SILENCE_S	  45 /* three of joind's default 15 s heartbeats */
#define AGENT_DEFAULT_STATUS_PATH "/run/conclave/agent.sock"
#define AGENT_DEFAULT_KEEPALIVE_S 25
#define AGENT_BACKOFF_MIN_MS	  200
#define AGENT_BACKOFF_MAX_MS	  30000
#define AGENT_REFUSED_RETRY_MS	  60000
/* PCR 15 holds the cluster identity once a node has joined since boot. */
#define AGENT_CLUSTER_PCR 15

struct agent_config {
	/* The join service, and what it must show. */
	const char *join_host;
	uint16_t join_port;
	const struct policy *cp_policy;
	X509_STORE *cp_ca;
	const uint8_t *expect_cluster; /* 32 bytes or NULL */
	int timeout_ms;		       /* per message; 0: default */
	/* Our TPM and what we quote (the PCR mask must cover AGENT_CLUSTER_PCR). */
	struct attest_opts attest;
	bool extend_pcr;
	/* This node. Its state disk (disk.h): formatted or opened with the key the join service
	 * sends, mounted at state_dir; on the control plane the join service opens it and the
	 * agent binds its UUID once it is open. Without a state disk (hosts without
	 * device-mapper), disk_uuid is bound instead and the key is not used. */
	const char *state_disk; /* block device, or NULL */
	const char *state_dir;	/* NULL: DISK_DEFAULT_MOUNT */
	uint8_t disk_uuid[16];
	const char *endpoint; /* "ip:port" peers reach our WireGuard at */
	const char *node_name;
	/* The mesh. */
	const char *wg_ifname; /* NULL: no WireGuard (hosts without it) */
	uint16_t wg_port;
	const char *underlay_ifname; /* the datapath's interface and the MTU's source; NULL: none */
	const char *pin_root;	     /* NULL: DP_PIN_ROOT */
	const char *overlay_v4, *overlay_v6, *pod_pool; /* the cluster's ranges */
	bool control_plane;				/* this node serves the join port */
	uint16_t keepalive_s;
	/* Continuous attestation: 0 = never. */
	int reattest_s;
	/* A held session with no message (not even a heartbeat) for this long is presumed lost and
	 * the agent reconnects; 0: AGENT_DEFAULT_SILENCE_S. */
	int silence_s;
	/* Local status (JSON on connect); NULL: none. */
	const char *status_path;
	volatile sig_atomic_t *stop;
};

/* Run until *stop. 0 after a requested stop; -errno (d says what) when the node cannot run at
 * all (no TPM, a datapath that does not load, WireGuard missing when asked for). */
int agent_run(const struct agent_config *c, struct diag *d);

/* The PCR 15 value after extending a zero PCR with the cluster identity. */
void agent_cluster_pcr(const uint8_t cluster_id[32], uint8_t out[32]);

#endif
