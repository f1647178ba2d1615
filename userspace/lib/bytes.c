// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/bytes.h"

int rd_bytes(struct reader *r, size_t n, const uint8_t **out)
{
	if (n > reader_left(r))
		return -EBADMSG;
	*out = r->p + r->off;
	r->off += n;
	return 0;
}

static int rd_uint(struct reader *r, size_t n, bool big_endian, uint64_t *v)
{
	const uint8_t *b;
	uint64_t x = 0;

	if (rd_bytes(r, n, &b) < 0)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++)
		x |= (uint64_t)b[i] << (8 * (big_endian ? n - 1 - i : i));
	*v = x;
	return 0;
}

#define DEFINE_RD(name, type, n, be)             \
	int name(struct reader *r, type *v)      \
	{                                        \
		uint64_t x;                      \
		int ret = rd_uint(r, n, be, &x); \
		if (ret == 0)                    \
			*v = (type)x;            \
		return ret;                      \
	}

DEFINE_RD(rd_u8, uint8_t, 1, true)
DEFINE_RD(rd_le16, uint16_t, 2, false)
DEFINE_RD(rd_le32, uint32_t, 4, false)
DEFINE_RD(rd_be16, uint16_t, 2, true)
DEFINE_RD(rd_be32, uint32_t, 4, true)
DEFINE_RD(rd_be64, uint64_t, 8, true)

int wr_bytes(struct writer *w, const void *p, size_t n)
{
	if (w->failed)
		return -ENOMEM;
	if (n > w->cap - w->len) {
		size_t cap = w->cap ? w->cap : 256;
		uint8_t *np;

		while (cap - w->len < n) {
			if (cap > SIZE_MAX / 2)
				goto fail;
			cap *= 2;
		}
		np = realloc(w->p, cap);
		if (!np)
			goto fail;
		w->p = np;
		w->cap = cap;
	}
	if (n)
		memcpy(w->p + w->len, p, n);
	w->len += n;
	return 0;
fail:
	w->failed = true;
	return -ENOMEM;
}

static int wr_uint(struct writer *w, uint64_t v, size_t n)
{
	uint8_t b[8];

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return wr_bytes(w, b, n);
}

int wr_u8(struct writer *w, uint8_t v)
{
	return wr_uint(w, v, 1);
}

int wr_be16(struct writer *w, uint16_t v)
{
	return wr_uint(w, v, 2);
}

int wr_be32(struct writer *w, uint32_t v)
{
	return wr_uint(w, v, 4);
}

int wr_be64(struct writer *w, uint64_t v)
{
	return wr_uint(w, v, 8);
}

void writer_free(struct writer *w)
{
	free(w->p);
	*w = (struct writer){ 0 };
}
