/* SPDX-License-Identifier: Apache-2.0 */
/* A verifier's memory of nodes as files (one per node, 0600, replaced atomically): enough for
 * the standalone CLI. The join service keeps the same record in its SQLite membership store. */
#ifndef CONCLAVE_NODESTORE_H
#define CONCLAVE_NODESTORE_H

#include <stdint.h>

#include "conclave/diag.h"
#include "conclave/verify.h"

/* Load the record of node id from dir; a node never seen leaves n->known false and returns 0. */
int nodestore_load(const char *dir, const uint8_t id[32], struct node_record *n, struct diag *d);

/* Save n (must be known) into dir (created 0700 if missing). */
int nodestore_save(const char *dir, const struct node_record *n, struct diag *d);

#endif
