/* SPDX-License-Identifier: Apache-2.0 */
/* Binary documents on a line-oriented text channel (the node's interim attestation port):
 *
 *   BEGIN LABEL\n
 *   base64, 64 characters a line\n   (canonical padding)
 *   END LABEL\n
 *
 * LABEL is 1-32 characters of [A-Z0-9-]. The decoder is strict: the BEGIN and END labels must
 * match, every line but the last must be full, and nothing may follow the END line. */
#ifndef CONCLAVE_FRAME_H
#define CONCLAVE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"

#define FRAME_LABEL_MAX 32
#define FRAME_LINE	64

/* Encode data as one frame into a malloc'ed, NUL-terminated string. */
int frame_encode(const char *label, const uint8_t *data, size_t len, char **out, size_t *out_len);

/* Decode exactly one frame text[0..len) whose label must equal label; at most max decoded
 * bytes. *data is malloc'ed. -EBADMSG with d->msg = "line N: reason" on malformed input. */
int frame_decode(const char *text, size_t len, const char *label, size_t max, uint8_t **data,
		 size_t *data_len, struct diag *d);

#endif
