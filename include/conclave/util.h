/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers shared by every module: hex, files, cleanup attributes. */
#ifndef CONCLAVE_UTIL_H
#define CONCLAVE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(freep)))

/* Write 2*len lowercase hex chars plus NUL into out (size >= 2*len+1). */
void hex_encode(const uint8_t *in, size_t len, char *out);

/* Value of one hex digit (either case), or -1. */
int hex_digit(char c);

/* Decode a hex string (upper or lower case, even length) into out (max bytes); -EINVAL on bad
 * input, -E2BIG if it does not fit. *out_len gets the decoded length. */
int hex_decode(const char *hex, uint8_t *out, size_t max, size_t *out_len);

/* Read a whole file of at most max bytes into a malloc'ed buffer (NUL-terminated for convenience,
 * NUL not counted in *len). -EFBIG if larger than max. */
int read_file(const char *path, size_t max, uint8_t **buf, size_t *len);

/* Atomically create or replace path with data: written to a temporary file in the same
 * directory with the given mode (O_EXCL, O_NOFOLLOW), fsync'ed, then renamed over path. */
int write_file_atomic(const char *path, const void *data, size_t len, unsigned int mode);

/* Create path, which must not exist (O_EXCL, O_NOFOLLOW), with data and exactly mode, fsync'ed;
 * removed again on failure. For files that must never be overwritten, such as keys. */
int write_file_new(const char *path, const void *data, size_t len, unsigned int mode);

/* A UUID in its canonical text form, 8-4-4-4-12 lower-case hex (what cryptsetup prints and
 * blkid reports): out holds 37 bytes. */
void uuid_format(const uint8_t uuid[16], char out[37]);

/* Parse exactly that form (36 characters, lower case, dashes in place): 0 or -EINVAL. */
int uuid_parse(const char *text, uint8_t uuid[16]);

/* mkdir -p: missing parents 0755, path itself mode; an existing directory is fine. 0 or
 * -errno. */
int mkdir_p(const char *path, unsigned int mode);

/* CLOCK_MONOTONIC in nanoseconds and milliseconds: deadlines, timers, rate limits. */
uint64_t mono_ns(void);
static inline uint64_t mono_ms(void)
{
	return mono_ns() / 1000000;
}

#endif
