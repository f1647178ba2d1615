/* SPDX-License-Identifier: Apache-2.0 */
/* Secret buffers: page-locked (never swapped), excluded from core dumps, wiped on free. */
#ifndef CONCLAVE_SECRET_H
#define CONCLAVE_SECRET_H

#include <stddef.h>
#include <stdint.h>

struct secret {
	size_t len;
	uint8_t *data;
	size_t map_len; /* private: size of the locked mapping */
};

/* Allocate a zeroed, locked secret of len bytes; NULL on failure (errno set). */
struct secret *secret_new(size_t len);

/* Allocate a locked secret filled from the CSPRNG (OpenSSL RAND_priv_bytes). */
struct secret *secret_random(size_t len);

/* Wipe, unlock and free; NULL is fine. */
void secret_free(struct secret *s);

/* For a process that will hold keys, before it holds any: no core dumps at all (RLIMIT_CORE 0,
 * soft and hard), and not dumpable (PR_SET_DUMPABLE 0: no ptrace attach by its user, /proc/PID
 * files owned by root). 0, or -errno of the first that failed (both are tried). */
int secret_harden_process(void);

static inline void secret_freep(struct secret **s)
{
	secret_free(*s);
}
#define _cleanup_secret_ __attribute__((cleanup(secret_freep)))

#endif
