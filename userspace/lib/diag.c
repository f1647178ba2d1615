// SPDX-License-Identifier: Apache-2.0
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conclave/diag.h"

void diag_set(struct diag *d, const char *fmt, ...)
{
	va_list ap;

	if (!d)
		return;
	va_start(ap, fmt);
	vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
	va_end(ap);
}

void diag_prefix(struct diag *d, const char *fmt, ...)
{
	char prefix[sizeof(d->msg)], joined[2 * sizeof(d->msg) + 2];
	va_list ap;

	if (!d)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(joined, sizeof(joined), "%s: %s", prefix, d->msg);
	/* Truncating an over-long message is fine: the prefix matters most. */
	memcpy(d->msg, joined, sizeof(d->msg) - 1);
	d->msg[sizeof(d->msg) - 1] = '\0';
}
