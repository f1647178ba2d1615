// SPDX-License-Identifier: Apache-2.0
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conclave/log.h"

static int threshold = -1;

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void log_set_level(enum log_level lvl)
{
	threshold = (int)lvl;
}

static int current_threshold(void)
{
	const char *env;

	if (threshold >= 0)
		return threshold;
	threshold = LOG_LVL_WARN;
	env = getenv("CONCLAVE_LOG");
	for (int i = 0; env && i <= LOG_LVL_DEBUG; i++)
		if (!strcmp(env, level_names[i]) || (i == LOG_LVL_ERR && !strcmp(env, "err")) ||
		    (i == LOG_LVL_WARN && !strcmp(env, "warn")))
			threshold = i;
	return threshold;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if ((int)lvl > current_threshold())
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "conclave: %s: %s\n", level_names[lvl], line);
}
