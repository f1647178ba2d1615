// SPDX-License-Identifier: Apache-2.0
/* BEGIN/END base64 framing. The decoder reads what the host (or a node) wrote on a serial
 * channel, so it is strict and bounded; it has its own fuzz target. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conclave/frame.h"

#define RAW_PER_LINE (FRAME_LINE / 4 * 3)

static bool label_ok(const char *l, size_t n)
{
	if (n == 0 || n > FRAME_LABEL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((l[i] >= 'A' && l[i] <= 'Z') || (l[i] >= '0' && l[i] <= '9') || l[i] == '-'))
			return false;
	return true;
}

int frame_encode(const char *label, const uint8_t *data, size_t len, char **out, size_t *out_len)
{
	size_t lines = (len + RAW_PER_LINE - 1) / RAW_PER_LINE, cap, n;
	char *s, *p;

	if (!label_ok(label, strlen(label)))
		return -EINVAL;
	cap = 2 * (sizeof("BEGIN \n") + FRAME_LABEL_MAX) + lines * (FRAME_LINE + 1) + 1;
	s = malloc(cap);
	if (!s)
		return -ENOMEM;
	p = s + sprintf(s, "BEGIN %s\n", label);
	for (size_t off = 0; off < len; off += RAW_PER_LINE) {
		n = len - off < RAW_PER_LINE ? len - off : RAW_PER_LINE;
		p += EVP_EncodeBlock((unsigned char *)p, data + off, (int)n);
		*p++ = '\n';
	}
	p += sprintf(p, "END %s\n", label);
	*out = s;
	*out_len = (size_t)(p - s);
	return 0;
}

static bool b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/* One base64 line of n characters: a multiple of 4, '=' padding only at its end. The caller
 * makes sure a short or padded line is the last one. */
static int decode_line(const char *l, size_t n, uint8_t *out, size_t *out_len)
{
	char again[FRAME_LINE + 1];
	size_t pad = 0;
	int got;

	if (n == 0 || n % 4 || n > FRAME_LINE)
		return -EBADMSG;
	if (l[n - 1] == '=')
		pad = l[n - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < n - pad; i++)
		if (!b64_char(l[i]))
			return -EBADMSG;
	got = EVP_DecodeBlock(out, (const unsigned char *)l, (int)n);
	if (got != (int)(n / 4 * 3) || (size_t)got < pad)
		return -EBADMSG;
	*out_len = (size_t)got - pad;
	/* canonical only: unused bits of the last character must be zero */
	if (EVP_EncodeBlock((unsigned char *)again, out, (int)*out_len) != (int)n ||
	    memcmp(again, l, n) != 0)
		return -EBADMSG;
	return 0;
}

struct lines {
	const char *p, *end;
	size_t no; /* 1-based number of the line last returned */
};

/* Next '\n'-terminated line without its newline; false at the end or on an unterminated line. */
static bool next_line(struct lines *ls, const char **l, size_t *n)
{
	const char *nl;

	if (ls->p >= ls->end)
		return false;
	nl = memchr(ls->p, '\n', (size_t)(ls->end - ls->p));
	if (!nl)
		return false;
	*l = ls->p;
	*n = (size_t)(nl - ls->p);
	ls->p = nl + 1;
	ls->no++;
	return true;
}

static int fail(struct diag *d, size_t line, const char *what)
{
	diag_set(d, "line %zu: %s", line, what);
	return -EBADMSG;
}

static bool is_marker(const char *l, size_t n, const char *word, const char *label)
{
	size_t w = strlen(word), lab = strlen(label);

	return n == w + 1 + lab && !memcmp(l, word, w) && l[w] == ' ' &&
	       !memcmp(l + w + 1, label, lab);
}

int frame_decode(const char *text, size_t len, const char *label, size_t max, uint8_t **data,
		 size_t *data_len, struct diag *d)
{
	struct lines ls = { text, text + len, 0 };
	uint8_t *buf, chunk[RAW_PER_LINE];
	size_t n, got, used = 0;
	bool done = false, short_seen = false;
	const char *l;
	int ret = -EBADMSG;

	if (!label_ok(label, strlen(label)))
		return -EINVAL;
	if (!next_line(&ls, &l, &n) || !is_marker(l, n, "BEGIN", label))
		return fail(d, 1, "expected the BEGIN line");
	buf = malloc(max ? max : 1);
	if (!buf)
		return -ENOMEM;
	while (next_line(&ls, &l, &n)) {
		if (is_marker(l, n, "END", label)) {
			done = true;
			break;
		}
		if (n >= 4 && !memcmp(l, "END ", 4)) {
			fail(d, ls.no, "END line of another document");
			goto out;
		}
		if (short_seen) {
			fail(d, ls.no, "data after the last (short or padded) base64 line");
			goto out;
		}
		if (decode_line(l, n, chunk, &got) < 0) {
			fail(d, ls.no, "not a base64 line of at most 64 characters");
			goto out;
		}
		short_seen = n != FRAME_LINE || got != RAW_PER_LINE;
		if (got > max - used) {
			fail(d, ls.no, "document larger than allowed");
			goto out;
		}
		memcpy(buf + used, chunk, got);
		used += got;
	}
	if (!done) {
		fail(d, ls.no + 1, "missing END line");
		goto out;
	}
	if (ls.p != ls.end) {
		fail(d, ls.no + 1, "bytes after the END line");
		goto out;
	}
	*data = buf;
	*data_len = used;
	return 0;
out:
	free(buf);
	return ret;
}
