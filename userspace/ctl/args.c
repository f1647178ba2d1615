// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conclave/util.h"
#include "ctl.h"

int parse_nonce(const char *hex, uint8_t *out, size_t *len)
{
	if (hex_decode(hex, out, 64, len) < 0 || *len < 8) {
		fprintf(stderr,
			"conclavectl: --nonce must be 16 to 128 hex characters (8-64 bytes)\n");
		return -1;
	}
	return 0;
}

int parse_pcr_list(const char *s, uint32_t *mask)
{
	char *end;

	*mask = 0;
	while (*s) {
		long lo = strtol(s, &end, 10), hi = lo;

		if (end == s)
			return -EINVAL;
		if (*end == '-') {
			s = end + 1;
			hi = strtol(s, &end, 10);
			if (end == s)
				return -EINVAL;
		}
		if (lo < 0 || hi > 23 || lo > hi)
			return -EINVAL;
		for (long i = lo; i <= hi; i++)
			*mask |= 1u << i;
		if (*end == ',')
			end++;
		else if (*end)
			return -EINVAL;
		s = end;
	}
	return *mask ? 0 : -EINVAL;
}

int read_input(const char *what, const char *path, size_t max, uint8_t **buf, size_t *len)
{
	int ret = read_file(path, max, buf, len);

	if (ret < 0)
		fprintf(stderr, "conclavectl: cannot read %s %s: %s\n", what, path,
			ret == -EFBIG ? "file too large" : strerror(-ret));
	return ret;
}

int write_output(const char *what, const char *path, const void *buf, size_t len, unsigned int mode)
{
	int ret;

	if (!strcmp(path, "-")) {
		if (fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0) {
			fprintf(stderr, "conclavectl: cannot write %s to stdout\n", what);
			return -EIO;
		}
		return 0;
	}
	ret = write_file_atomic(path, buf, len, mode);
	if (ret < 0)
		fprintf(stderr, "conclavectl: cannot write %s %s: %s\n", what, path,
			strerror(-ret));
	return ret;
}
