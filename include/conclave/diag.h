/* SPDX-License-Identifier: Apache-2.0 */
/* Diagnostics: one human-readable reason for a failure, filled where it is decided. */
#ifndef CONCLAVE_DIAG_H
#define CONCLAVE_DIAG_H

#include <stddef.h>

struct diag {
	char msg[512];
};

/* Set d->msg (printf-style) unless d is NULL; returns nothing so callers can chain a return. */
void diag_set(struct diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix d->msg with "prefix: " (for adding context while unwinding). */
void diag_prefix(struct diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
