/* SPDX-License-Identifier: Apache-2.0 */
/* The node's state disk (docs/disk.md): LUKS2, AES-256-XTS in 4096-byte sectors, every sector
 * authenticated by dm-integrity with HMAC-SHA256, ext4 on top, mounted at the node's state
 * directory. Its key comes from the join service after attestation (kms_disk_key: bound to
 * this node's EK and this disk's UUID), lives in locked memory and is wiped after use.
 *
 *   disk_probe   read the header: blank, ours but unfinished, or ours (checked, luks2.h)
 *   disk_unlock  format a blank disk, or open ours, with the key; mount it
 *   disk_close   unmount and close
 *
 * A disk that is neither blank nor a valid state disk of this node is never formatted: its data
 * is kept and the caller is told why it stays closed. */
#ifndef CONCLAVE_DISK_H
#define CONCLAVE_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include "conclave/diag.h"
#include "conclave/luks2.h"
#include "conclave/secret.h"

#define DISK_DEFAULT_NAME  "conclave-state"
#define DISK_DEFAULT_MOUNT "/var/lib/conclave"
#define DISK_KEY_LEN	   32	  /* KMS_DISK_KEY_LEN */
#define DISK_DATA_SUBDIR   "data" /* the workloads' directory under the mount point */
/* The serial QEMU gives the state disk (virtio-blk serial=), found in /sys/block/ * /serial. */
#define DISK_SERIAL "conclave-state"

enum disk_state {
	DISK_BLANK,	 /* all zero: formatted at unlock, with the UUID probe chose */
	DISK_UNFINISHED, /* our header without our token: a format that did not finish */
	DISK_READY,	 /* a state disk: opened at unlock */
};

struct disk_probe {
	enum disk_state state;
	uint8_t uuid[16]; /* the header's, or a new random one for a blank disk */
	struct luks2_info info;
};

struct disk_config {
	const char *dev;	/* the block device (or, for tests, a file: probe only) */
	const char *name;	/* device-mapper name; NULL: DISK_DEFAULT_NAME */
	const char *mountpoint; /* NULL: DISK_DEFAULT_MOUNT */
	const uint8_t *cluster_id, *node_id; /* 32 bytes each: what the disk must belong to */
};

/* Look at c->dev: 0 and *p, or -EBADMSG / -EPERM (d says why: not ours, another node's or
 * cluster's, tampered) or -errno if it cannot be read. Only c->node_id/cluster_id that are set
 * are checked. Changes nothing. */
int disk_probe(const struct disk_config *c, struct disk_probe *p, struct diag *d);

/* Is the state disk already open (this boot, by us or the join service)? 1 and its UUID if
 * so, 0 if not, -errno if device-mapper cannot say. */
int disk_active(const struct disk_config *c, uint8_t uuid[16], struct diag *d);

/* Format (BLANK, UNFINISHED) or open (READY) the disk of probe p with key (DISK_KEY_LEN bytes,
 * locked), then mount it. The header libcryptsetup loads is checked again before the key is
 * used. An open disk that is not mounted is mounted. 0, or -errno with d saying why; on failure
 * the disk is left closed. */
int disk_unlock(const struct disk_config *c, const struct disk_probe *p, const struct secret *key,
		struct diag *d);

/* Unmount and close; 0 if it was not open. */
int disk_close(const struct disk_config *c, struct diag *d);

/* The block device whose virtio serial is serial (/sys/block/NAME/serial): "/dev/NAME" into
 * out, or -ENOENT. */
int disk_find_by_serial(const char *serial, char *out, size_t cap);

#endif
