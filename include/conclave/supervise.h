/* SPDX-License-Identifier: Apache-2.0 */
/* PID 1's services in cluster mode (docs/image.md): conclave-joind on the control plane and
 * conclave-agent on every node, started from the node's configuration and restarted when they
 * exit. Everything but the trust inputs comes from QEMU fw_cfg, which the host controls; the
 * trust inputs (who signs policies, which EK roots, who the operator is) are files of the
 * measured image, so a host cannot swap them. */
#ifndef CONCLAVE_SUPERVISE_H
#define CONCLAVE_SUPERVISE_H

#include <stdbool.h>
#include <stddef.h>

#include "conclave/diag.h"

#define NODE_TRUST_DIR	      "/etc/conclave/trust"
#define NODE_POLICY_KEY	      NODE_TRUST_DIR "/policy-key.pub"
#define NODE_EK_ROOTS	      NODE_TRUST_DIR "/ek-roots.pem"
#define NODE_OPERATOR_KEY     NODE_TRUST_DIR "/operator-key.pub"
#define NODE_RUN_DIR	      "/run/conclave"
#define NODE_STATE_DIR	      "/var/lib/conclave" /* the state disk, mounted (DISK_DEFAULT_MOUNT) */
#define NODE_JOIND_DB	      "/var/lib/conclave/joind/members.db" /* under NODE_STATE_DIR */
#define NODE_OVERLAY_V4	      "10.100.0.0/16"
#define NODE_OVERLAY_V6	      "fd00:100::/64"
#define NODE_POD_POOL	      "10.244.0.0/16"
#define NODE_RESTART_DELAY_MS 1000

/* fw_cfg names (under opt/conclave/) of cluster mode. */
#define FW_JOIN	      "opt/conclave/join"	/* "10.88.0.10:7443": cluster mode */
#define FW_ROLE	      "opt/conclave/role"	/* "control-plane" or "worker" */
#define FW_POLICY     "opt/conclave/policy"	/* signed policy of this image */
#define FW_REATTEST_S "opt/conclave/reattest-s" /* optional */

struct node_config {
	char join[64]; /* HOST:PORT */
	bool control_plane;
	char state_disk[64]; /* the block device with serial DISK_SERIAL */
	char underlay_if[16];
	char underlay_ip[48];
	char reattest_s[12]; /* "" = the agent's default */
};

/* Read cluster mode's configuration: -ENOENT when the host asked for none (not cluster mode),
 * -EINVAL (d says which) when it is incomplete, the trust files are missing or it is malformed.
 * Writes the policy to NODE_RUN_DIR/policy.json. */
int node_config_read(const char *underlay_if, const char *underlay_cidr, struct node_config *c,
		     struct diag *d);

/* Start the services and supervise them forever (PID 1): never returns. log(fmt) is init's
 * console logger. */
void supervise(const struct node_config *c, void (*log)(const char *fmt, ...))
    __attribute__((noreturn));

#endif
