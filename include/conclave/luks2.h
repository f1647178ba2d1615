/* SPDX-License-Identifier: Apache-2.0 */
/* The LUKS2 header of a conclave state disk, checked before anything unlocks it
 * (docs/disk.md). The host owns the disk and can rewrite its header: a header that asks for a
 * weaker cipher, no integrity, another sector size, extra keyslots or tokens, or another layout
 * (the class of CVE-2025-59054 / CVE-2025-58356) must be refused, never opened. The check accepts
 * exactly the header disk_format writes and nothing else. Pure functions over bytes: the input is
 * untrusted (fuzz target tests/fuzz/fuzz_luks2_header.c). */
#ifndef CONCLAVE_LUKS2_H
#define CONCLAVE_LUKS2_H

#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"

/* The layout disk_format writes: two 16 KiB metadata copies, a keyslot area up to 1 MiB, data
 * from 1 MiB on, in 4096-byte sectors of AES-256-XTS with an HMAC-SHA256 tag each. */
#define LUKS2_HDR_SIZE	     16384u /* one binary header + its JSON area */
#define LUKS2_BIN_SIZE	     4096u  /* the binary part */
#define LUKS2_JSON_SIZE	     (LUKS2_HDR_SIZE - LUKS2_BIN_SIZE)
#define LUKS2_HEADER_BYTES   (2 * LUKS2_HDR_SIZE) /* what luks2_check reads */
#define LUKS2_DATA_OFFSET    (1024u * 1024u)	  /* bytes */
#define LUKS2_KEYSLOTS_SIZE  (LUKS2_DATA_OFFSET - LUKS2_HEADER_BYTES)
#define LUKS2_CIPHER	     "aes"
#define LUKS2_CIPHER_MODE    "xts-plain64"
#define LUKS2_ENCRYPTION     LUKS2_CIPHER "-" LUKS2_CIPHER_MODE
#define LUKS2_INTEGRITY	     "hmac(sha256)"
#define LUKS2_SECTOR_SIZE    4096u
#define LUKS2_XTS_KEY_LEN    64u /* AES-256-XTS: two 256-bit keys */
#define LUKS2_HMAC_KEY_LEN   32u
#define LUKS2_VOLUME_KEY_LEN (LUKS2_XTS_KEY_LEN + LUKS2_HMAC_KEY_LEN)
#define LUKS2_TAG_SIZE	     32u
#define LUKS2_AF_STRIPES     4000u
#define LUKS2_PBKDF_ITER     1000u     /* the keyslot's passphrase is a random 256-bit key */
#define LUKS2_PBKDF_ITER_MAX 10000000u /* above this a header is a CPU trap, not ours */
#define LUKS2_LABEL	     "conclave-state"
#define LUKS2_TOKEN_TYPE     "conclave-state"
#define LUKS2_TOKEN_VERSION  1

/* What the disk must belong to; NULL members are not checked (a probe before the node knows
 * its cluster). */
struct luks2_expect {
	const uint8_t *cluster_id; /* 32 bytes */
	const uint8_t *node_id;	   /* 32 bytes: SHA-256 of the node's EK certificate */
};

struct luks2_info {
	uint8_t uuid[16];
	char uuid_text[37];
	int has_token; /* 0: a header without our token (an interrupted format) */
	uint8_t cluster_id[32], node_id[32];
	uint64_t seqid;
};

/* Check the first len bytes of a device (LUKS2_HEADER_BYTES wanted; fewer is a truncated
 * header): both binary headers (magic, version, size, offsets, SHA-256 checksums), identical
 * copies, and the metadata as luks2_check_json does. 0 and *out filled when it is a state disk
 * as disk_format writes it; -ENOMSG when the bytes are no LUKS header at all; -EBADMSG (d names
 * the first thing wrong) otherwise. A header without our token passes with has_token = 0. */
int luks2_check(const uint8_t *buf, size_t len, const struct luks2_expect *e,
		struct luks2_info *out, struct diag *d);

/* Check the LUKS2 metadata JSON (len bytes, need not be NUL-terminated): exactly one crypt
 * segment, one keyslot, one digest and at most one token, each with exactly our parameters, and
 * no key this code does not know. Fills out's token fields; -EBADMSG with d saying why. */
int luks2_check_json(const char *json, size_t len, const struct luks2_expect *e,
		     struct luks2_info *out, struct diag *d);

/* Our token's JSON for cluster and node (a static buffer of the caller's: cap >= 256). */
int luks2_token_json(const uint8_t cluster_id[32], const uint8_t node_id[32], char *out,
		     size_t cap);

/* Recompute the SHA-256 checksum of the binary header at hdr (LUKS2_HDR_SIZE bytes) in place:
 * for tests and the fuzz target, which build headers. */
void luks2_header_seal(uint8_t *hdr);

#endif
