// SPDX-License-Identifier: Apache-2.0
/* Test tool (debug image, host tests): the disk module from the command line.
 *
 *   disk_tool probe DEV [NODE_HEX [CLUSTER_HEX]]   prints "blank|unfinished|ready UUID"
 *   disk_tool unlock DEV KEY_HEX CLUSTER_HEX NODE_HEX [MOUNT]
 *   disk_tool close [MOUNT]
 *   disk_tool serial SERIAL                          prints /dev/NAME
 *   disk_tool active                                  prints the open disk's UUID, or exits 1
 *   disk_tool edit-header FILE FROM TO                 replace FROM by TO in the LUKS2 metadata of
 *                                                     both header copies and reseal them: the
 *                                                     tampering a host can do (tests)
 *
 * The key comes on the command line: test keys only, never a real node's. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conclave/disk.h"
#include "conclave/log.h"
#include "conclave/util.h"

static int hex32(const char *s, uint8_t out[32])
{
	size_t len = 0;

	return s && hex_decode(s, out, 32, &len) == 0 && len == 32 ? 0 : -1;
}

/* Rewrite the metadata of both copies of FILE's header: what a host with the disk can do. */
static int edit_header(const char *path, const char *from, const char *to)
{
	static uint8_t h[LUKS2_HEADER_BYTES];
	int fd = open(path, O_RDWR | O_CLOEXEC);
	int ret = 1;

	if (fd < 0 || pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		perror(path);
		goto out;
	}
	for (int copy = 0; copy < 2; copy++) {
		uint8_t *hdr = h + copy * LUKS2_HDR_SIZE;
		char *json = (char *)hdr + LUKS2_BIN_SIZE, out[LUKS2_JSON_SIZE];
		char *at = strstr(json, from);

		if (!at || strlen(json) - strlen(from) + strlen(to) >= sizeof(out)) {
			fprintf(stderr, "disk_tool: '%s' not in copy %d's metadata\n", from, copy);
			goto out;
		}
		snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - json), json, to,
			 at + strlen(from));
		memset(json, 0, LUKS2_JSON_SIZE);
		memcpy(json, out, strlen(out));
		luks2_header_seal(hdr);
	}
	if (pwrite(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || fsync(fd) < 0)
		perror(path);
	else
		ret = 0;
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

int main(int argc, char **argv)
{
	static const char *const states[] = { "blank", "unfinished", "ready" };
	struct disk_config c = { 0 };
	struct disk_probe p;
	struct diag d = { { 0 } };
	uint8_t node[32], cluster[32];
	char hex[33], dev[64];
	int ret;

	log_set_level(LOG_LVL_INFO);
	if (argc == 5 && !strcmp(argv[1], "edit-header"))
		return edit_header(argv[2], argv[3], argv[4]);
	if (argc >= 3 && !strcmp(argv[1], "serial")) {
		ret = disk_find_by_serial(argv[2], dev, sizeof(dev));
		if (ret == 0)
			puts(dev);
		return ret == 0 ? 0 : 1;
	}
	if (argc >= 2 && !strcmp(argv[1], "active")) {
		ret = disk_active(&c, node, &d);
		if (ret < 0)
			fprintf(stderr, "disk_tool: %s\n", d.msg);
		hex_encode(node, 16, hex);
		if (ret == 1)
			puts(hex);
		return ret != 1;
	}
	if (argc >= 2 && !strcmp(argv[1], "close")) {
		c.mountpoint = argc >= 3 ? argv[2] : NULL;
		ret = disk_close(&c, &d);
		if (ret < 0)
			fprintf(stderr, "disk_tool: %s\n", d.msg);
		return ret < 0;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: disk_tool probe|unlock|close|serial ...\n");
		return 2;
	}
	c.dev = argv[2];
	if (!strcmp(argv[1], "probe")) {
		if (argc >= 4 && hex32(argv[3], node) == 0)
			c.node_id = node;
		if (argc >= 5 && hex32(argv[4], cluster) == 0)
			c.cluster_id = cluster;
		ret = disk_probe(&c, &p, &d);
		if (ret < 0) {
			fprintf(stderr, "disk_tool: %s\n", d.msg);
			return 1;
		}
		hex_encode(p.uuid, 16, hex);
		printf("%s %s\n", states[p.state], hex);
		return 0;
	}
	if (!strcmp(argv[1], "unlock") && argc >= 6) {
		struct secret *key = secret_new(DISK_KEY_LEN);
		size_t len = 0;

		if (!key || hex_decode(argv[3], key->data, key->len, &len) < 0 ||
		    len != DISK_KEY_LEN || hex32(argv[4], cluster) || hex32(argv[5], node)) {
			fprintf(stderr, "disk_tool: bad key, cluster or node\n");
			secret_free(key);
			return 2;
		}
		c.cluster_id = cluster;
		c.node_id = node;
		c.mountpoint = argc >= 7 ? argv[6] : NULL;
		ret = disk_probe(&c, &p, &d);
		if (ret == 0)
			ret = disk_unlock(&c, &p, key, &d);
		secret_free(key);
		if (ret < 0) {
			fprintf(stderr, "disk_tool: %s\n", d.msg);
			return 1;
		}
		return 0;
	}
	fprintf(stderr, "usage: disk_tool probe|unlock|close|serial ...\n");
	return 2;
}
