/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded readers and growable writers for binary formats (TPM: big-endian, UEFI: little-endian).
 * A reader never reads past its end: every call returns -EBADMSG and leaves off unchanged
 * when the bytes are not there. */
#ifndef CONCLAVE_BYTES_H
#define CONCLAVE_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct reader {
	const uint8_t *p;
	size_t len;
	size_t off;
};

static inline struct reader reader_init(const uint8_t *p, size_t len)
{
	return (struct reader){ .p = p, .len = len, .off = 0 };
}

static inline size_t reader_left(const struct reader *r)
{
	return r->len - r->off;
}

int rd_u8(struct reader *r, uint8_t *v);
int rd_le16(struct reader *r, uint16_t *v);
int rd_le32(struct reader *r, uint32_t *v);
int rd_be16(struct reader *r, uint16_t *v);
int rd_be32(struct reader *r, uint32_t *v);
int rd_be64(struct reader *r, uint64_t *v);
/* Point *out at the next n bytes (no copy) and advance. */
int rd_bytes(struct reader *r, size_t n, const uint8_t **out);

struct writer {
	uint8_t *p;
	size_t len;
	size_t cap;
	bool failed; /* set on allocation failure; further writes are ignored */
};

int wr_u8(struct writer *w, uint8_t v);
int wr_be16(struct writer *w, uint16_t v);
int wr_be32(struct writer *w, uint32_t v);
int wr_be64(struct writer *w, uint64_t v);
int wr_bytes(struct writer *w, const void *p, size_t n);
/* Release the buffer (no wipe: writers never hold secrets). */
void writer_free(struct writer *w);

#endif
