// SPDX-License-Identifier: Apache-2.0
/* Find key material in a running process's locked memory, as root. The test of secrets in logs
 * (tests/integration/test_secrets.sh) needs the real keys a running agent holds, and the agent
 * never writes them anywhere. Keys live in locked mappings (struct secret), so only those are
 * searched, every 8-byte-aligned window:
 *   find_secret PID wg PUBLIC-KEY-HEX      print the X25519 private key of that public key (hex)
 *   find_secret PID bytes HEX              exit 0 if those bytes are there
 * Exit 1 if not found, 2 on a usage or access error. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conclave/secret.h"
#include "conclave/util.h"
#include "conclave/wg.h"

static int is_private_key_of(const uint8_t *cand, const uint8_t want[WG_KEY_LEN])
{
	struct secret *s = secret_new(WG_KEY_LEN);
	uint8_t pub[WG_KEY_LEN];
	int ok;

	if (!s)
		return 0;
	memcpy(s->data, cand, WG_KEY_LEN);
	ok = wg_public_key(s, pub, NULL) == 0 && !memcmp(pub, want, WG_KEY_LEN);
	secret_free(s);
	return ok;
}

int main(int argc, char **argv)
{
	static uint8_t buf[1 << 20];
	uint8_t want[64 + 2];
	size_t want_len = 0;
	char path[64], line[512];
	unsigned long lo = 0, hi = 0;
	bool wg;
	FILE *smaps;
	int mem;

	wg = argc == 4 && !strcmp(argv[2], "wg");
	if (argc == 4 && hex_decode(argv[3], want, sizeof(want), &want_len) < 0)
		want_len = 0;
	if ((wg && want_len != WG_KEY_LEN) || (!wg && argc == 4 && strcmp(argv[2], "bytes")))
		want_len = 0;
	if (want_len == 0) {
		fprintf(stderr, "usage: find_secret PID wg PUBLIC-KEY-HEX | PID bytes HEX\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/proc/%s/smaps", argv[1]);
	smaps = fopen(path, "re");
	snprintf(path, sizeof(path), "/proc/%s/mem", argv[1]);
	mem = open(path, O_RDONLY | O_CLOEXEC);
	if (!smaps || mem < 0) {
		fprintf(stderr, "find_secret: %s: %s\n", path, strerror(errno));
		return 2;
	}
	while (fgets(line, sizeof(line), smaps)) {
		unsigned long kb, a, b;

		/* Into temporaries: "Anonymous:" starts with a hex digit and would clobber lo. */
		if (sscanf(line, "%lx-%lx ", &a, &b) == 2) {
			lo = a;
			hi = b;
			continue;
		}
		if (sscanf(line, "Locked: %lu kB", &kb) != 1 || kb == 0 || hi - lo > sizeof(buf))
			continue;
		if (pread(mem, buf, hi - lo, (off_t)lo) != (ssize_t)(hi - lo))
			continue;
		for (size_t off = 0; off + want_len <= hi - lo; off += 8) {
			if (!wg) {
				if (!memcmp(buf + off, want, want_len))
					return 0;
				continue;
			}
			if (is_private_key_of(buf + off, want)) {
				for (size_t i = 0; i < WG_KEY_LEN; i++)
					printf("%02x", buf[off + i]);
				printf("\n");
				return 0;
			}
		}
	}
	return 1;
}
