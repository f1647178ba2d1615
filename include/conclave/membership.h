/* SPDX-License-Identifier: Apache-2.0 */
/* The join service's membership store (SQLite, WAL, synchronous=FULL): which nodes are
 * members, their addresses, the disk each registered at first join, their TPM counters, and
 * the generation-numbered peer set pushed to agents. One connection, one thread. */
#ifndef CONCLAVE_MEMBERSHIP_H
#define CONCLAVE_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"

#define MEMBERSHIP_SCHEMA_VERSION 4
#define MEMBERSHIP_EK_ID_LEN	  32
#define MEMBERSHIP_AK_NAME_MAX	  68 /* TPMOBJ_NAME_MAX: nameAlg + SHA-512 */
#define MEMBERSHIP_WG_KEY_LEN	  32
#define MEMBERSHIP_UUID_LEN	  16
#define MEMBERSHIP_DIGEST_LEN	  32
#define MEMBERSHIP_ENDPOINTS_MAX  256 /* "ip:port[,ip:port...]", printable ASCII */

/* Address ranges, fixed when the store is created; a later open must pass the same ones. */
struct membership_config {
	const char *overlay_v4;	 /* e.g. "10.100.0.0/16": node i gets base + i */
	const char *overlay_v6;	 /* e.g. "fd00:100::/64": node i gets base + i */
	const char *pod_pool;	 /* e.g. "10.244.0.0/16", split into pod_prefix-sized CIDRs */
	unsigned int pod_prefix; /* e.g. 24 */
	unsigned int log_keep;	 /* change-log entries kept for deltas (0: 4096) */
};

/* What the verifier established about a joining node (all of it from attested evidence). */
struct join_record {
	uint8_t ek_id[MEMBERSHIP_EK_ID_LEN]; /* evidence_node_id: SHA-256 of the EK certificate */
	uint8_t ak_name[MEMBERSHIP_AK_NAME_MAX];
	size_t ak_name_len;
	uint8_t wg_pubkey[MEMBERSHIP_WG_KEY_LEN];
	char endpoints[MEMBERSHIP_ENDPOINTS_MAX];
	uint8_t disk_uuid[MEMBERSHIP_UUID_LEN];
	uint32_t reset_count, restart_count;
	uint64_t clock;
	uint8_t evidence_digest[MEMBERSHIP_DIGEST_LEN];
	/* The attested SHA-256 PCR values (pcr_mask selects which): kept so a reloaded policy can
	 * be checked against every member without asking it to attest again. */
	uint32_t pcr_mask;
	uint8_t pcrs[24][32];
};

/* A member as peers see it; allowed IPs are overlay_v4/32, overlay_v6/128 and pod_cidr. */
struct peer {
	int64_t node_id;
	uint8_t wg_pubkey[MEMBERSHIP_WG_KEY_LEN];
	char endpoints[MEMBERSHIP_ENDPOINTS_MAX];
	char overlay_v4[16];
	char overlay_v6[46];
	char pod_cidr[19];
};

struct join_result {
	bool rejoin;	     /* the EK was already a member */
	bool disk_bound;     /* a rejoin after membership_release_disk bound the presented disk */
	uint64_t generation; /* peer-set generation after the join */
	struct peer peer;    /* the node's id and allocation */
};

enum peer_op { PEER_ADD, PEER_UPDATE, PEER_REMOVE };

struct peer_delta {
	enum peer_op op;  /* relative to the generation asked about */
	struct peer peer; /* current data; only node_id is meaningful for PEER_REMOVE */
};

struct membership;

/* Open (creating if missing, mode 0600) the store at path, migrate its schema, and check that
 * cfg matches the ranges it was created with. Refuses a schema newer than this code. */
int membership_open(const char *path, const struct membership_config *cfg, struct membership **out,
		    struct diag *d);

/* Close; NULL is fine. */
void membership_close(struct membership *m);

/* Admit or readmit an attested node in one transaction. A new EK gets a node id, addresses
 * and its disk registered; a known EK must be active, present the same disk (after
 * membership_release_disk: any disk never registered, which is then bound), and TPM counters
 * that moved forward (-EPERM otherwise; -EKEYREVOKED when it presents a released disk: refused,
 * but no sign of a compromised node). -ENOSPC when an address range is exhausted. */
int membership_join(struct membership *m, const struct join_record *in, struct join_result *out,
		    struct diag *d);

/* Mark a node revoked (it leaves the peer set; its addresses stay reserved). */
int membership_revoke(struct membership *m, int64_t node_id, struct diag *d);

/* The operator's replace-disk: retire node_id's registered disk for good (no key is derived
 * for it again, no node registers it again) and let the node's next successful join bind the
 * disk it presents. The peer set does not change. -ENOENT for an unknown node, -EPERM for a
 * revoked one, -EALREADY when the disk is already released. */
int membership_release_disk(struct membership *m, int64_t node_id, struct diag *d);

/* Current generation and every active member (malloc'ed array, free() it). */
int membership_snapshot(struct membership *m, uint64_t *generation, struct peer **peers, size_t *n,
			struct diag *d);

/* Changes after generation since, one per changed node (malloc'ed array, free() it);
 * -ESTALE when the log no longer reaches back that far (or since is in the future): send a
 * snapshot instead. */
int membership_deltas_since(struct membership *m, uint64_t since, uint64_t *generation,
			    struct peer_delta **deltas, size_t *n, struct diag *d);

/* The disk UUID node_id registered at first join; -ENOENT for an unknown node. */
int membership_disk_uuid_of(struct membership *m, int64_t node_id,
			    uint8_t uuid[MEMBERSHIP_UUID_LEN], struct diag *d);

/* The gate before a disk key is derived: 0 only if node_id is an active member that
 * registered exactly this disk UUID and whose disk is not released; fills its EK id (the disk
 * key's node binding). */
int membership_check_disk_key(struct membership *m, int64_t node_id,
			      const uint8_t uuid[MEMBERSHIP_UUID_LEN],
			      uint8_t ek_id[MEMBERSHIP_EK_ID_LEN], struct diag *d);

/* The node id of an EK, -ENOENT if it never joined. */
int membership_node_of(struct membership *m, const uint8_t ek_id[MEMBERSHIP_EK_ID_LEN],
		       int64_t *node_id, struct diag *d);

/* What the store recorded about an EK's TPM at its last join (the verifier's node record). */
struct member_tpm {
	int64_t node_id;
	bool active;
	bool disk_released; /* by the operator; the next join binds a new disk */
	uint8_t ak_name[MEMBERSHIP_AK_NAME_MAX];
	size_t ak_name_len;
	uint32_t reset_count, restart_count;
	uint64_t clock;
	char endpoints[MEMBERSHIP_ENDPOINTS_MAX]; /* as registered (a re-attestation keeps them) */
};

/* The TPM record of an EK, -ENOENT if it never joined. */
int membership_tpm_of(struct membership *m, const uint8_t ek_id[MEMBERSHIP_EK_ID_LEN],
		      struct member_tpm *out, struct diag *d);

/* Everything the store knows about one member, active or revoked (for status and verify). */
struct member_info {
	struct peer peer;
	uint8_t ek_id[MEMBERSHIP_EK_ID_LEN];
	bool active;
	uint64_t joined_at, attested_at, revoked_at; /* unix seconds; revoked_at 0 if active */
	uint32_t pcr_mask;			     /* of its last attestation */
	uint8_t pcrs[24][32];
};

/* Every member ever admitted, by node id (malloc'ed array, free() it). */
int membership_members(struct membership *m, struct member_info **out, size_t *n, struct diag *d);

/* Small named values of the cluster (e.g. the master-secret check value), in the same
 * transactional store. get: -ENOENT if unset; the value is copied into buf (up to cap bytes,
 * *len set to its size; -E2BIG if larger). set: inserts or replaces. */
int membership_meta_get(struct membership *m, const char *key, uint8_t *buf, size_t cap,
			size_t *len, struct diag *d);
int membership_meta_set(struct membership *m, const char *key, const uint8_t *val, size_t len,
			struct diag *d);

/* Group commit: joins between begin and commit share one transaction (and one fsync); a join
 * that fails inside rolls back alone. Without begin, every join commits by itself. */
int membership_batch_begin(struct membership *m, struct diag *d);
int membership_batch_commit(struct membership *m, struct diag *d);

#endif
