/* SPDX-License-Identifier: Apache-2.0 */
/* The node's attestation step over the interim host channel (a virtio-serial port backed by
 * the host; see docs/image.md). INTERIM: the node agent and the join service replace this
 * exchange with an attested TLS session; the evidence and activation are the same.
 *
 *   node -> host   BEGIN EVIDENCE ... END EVIDENCE     quote over the fw_cfg nonce, AK created
 *   host -> node   BEGIN CHALLENGE ... END CHALLENGE   make-credential for that EK and AK
 *                  or "ABORT reason"                   the host will not activate this node
 *   node -> host   BEGIN EVIDENCE ... END EVIDENCE     same nonce, with the activation proof
 *   node -> host   DONE | ERROR reason */
#ifndef CONCLAVE_NODE_H
#define CONCLAVE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"

#define NODE_PORT_NAME	   "org.conclave.attest.0"
#define NODE_FW_CFG_NONCE  "opt/conclave/nonce"
#define NODE_CHALLENGE_MAX (16u << 10)
#define NODE_HOST_LINE_MAX (64u << 10)
#define NODE_DEFAULT_TCTI  "device:/dev/tpmrm0"
#define NODE_AK_STATE	   "/run/conclave/ak"

struct node_exchange {
	int fd;		       /* the channel, open for reading and writing */
	const char *tcti;      /* NODE_DEFAULT_TCTI on a node */
	const char *ak_state;  /* where the AK record lives (tmpfs on the interim node) */
	const char *event_log; /* NULL: none */
	const uint8_t *nonce;  /* from the host, 8-64 bytes */
	size_t nonce_len;
	int reply_timeout_ms; /* how long to wait for the host's challenge */
};

/* Run the exchange above. *activated tells whether the host sent a challenge that the TPM
 * answered. On failure the reason is also sent to the host as an ERROR line. */
int node_attest_exchange(const struct node_exchange *x, bool *activated, struct diag *d);

/* Parse the nonce the host passed (hex, surrounding whitespace ignored) into out (64 bytes). */
int node_parse_nonce(const uint8_t *text, size_t len, uint8_t *out, size_t *out_len);

#endif
