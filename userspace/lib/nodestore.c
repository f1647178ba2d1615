// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conclave/nodestore.h"
#include "conclave/util.h"

#define RECORD_MAGIC "conclave-node-record 1"

static void record_path(const char *dir, const uint8_t id[32], char *path, size_t len)
{
	char hex[65];

	hex_encode(id, 32, hex);
	snprintf(path, len, "%s/%s.node", dir, hex);
}

int nodestore_load(const char *dir, const uint8_t id_in[32], struct node_record *n, struct diag *d)
{
	uint8_t id[32];
	char path[PATH_MAX], node_hex[65], ak_hex[2 * TPMOBJ_NAME_MAX + 1];
	unsigned long long clock;
	uint8_t *buf = NULL;
	size_t len, got;
	uint8_t got_id[32];
	int ret;

	memcpy(id, id_in, sizeof(id)); /* id_in may live inside *n, which is cleared next */
	node_record_clear(n);
	record_path(dir, id, path, sizeof(path));
	ret = read_file(path, 4096, &buf, &len);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0) {
		diag_set(d, "cannot read node record %s: %s", path, strerror(-ret));
		return ret;
	}
	ret = -EBADMSG;
	if (sscanf((char *)buf,
		   RECORD_MAGIC "\nnode %64s\nak %132s\nreset %" SCNu32 "\nrestart %" SCNu32
				"\nclock %llu\n",
		   node_hex, ak_hex, &n->reset_count, &n->restart_count, &clock) != 5 ||
	    hex_decode(node_hex, got_id, sizeof(got_id), &got) < 0 || got != 32 ||
	    memcmp(got_id, id, 32) ||
	    hex_decode(ak_hex, n->ak_name, sizeof(n->ak_name), &n->ak_name_len) < 0) {
		diag_set(d, "node record %s is corrupt; refusing to guess (remove it to re-enrol)",
			 path);
		node_record_clear(n);
		goto out;
	}
	memcpy(n->node_id, id, 32);
	n->clock = clock;
	n->known = true;
	ret = 0;
out:
	free(buf);
	return ret;
}

int nodestore_save(const char *dir, const struct node_record *n, struct diag *d)
{
	char path[PATH_MAX], node_hex[65], ak_hex[2 * TPMOBJ_NAME_MAX + 1], text[512];
	int len, ret;

	if (!n->known)
		return -EINVAL;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		diag_set(d, "cannot create state directory %s: %s", dir, strerror(errno));
		return -errno;
	}
	record_path(dir, n->node_id, path, sizeof(path));
	hex_encode(n->node_id, 32, node_hex);
	hex_encode(n->ak_name, n->ak_name_len, ak_hex);
	len = snprintf(
	    text, sizeof(text),
	    RECORD_MAGIC "\nnode %s\nak %s\nreset %" PRIu32 "\nrestart %" PRIu32 "\nclock %llu\n",
	    node_hex, ak_hex, n->reset_count, n->restart_count, (unsigned long long)n->clock);
	ret = write_file_atomic(path, text, (size_t)len, 0600);
	if (ret < 0)
		diag_set(d, "cannot write node record %s: %s", path, strerror(-ret));
	return ret;
}
