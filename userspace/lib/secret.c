// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "conclave/secret.h"

struct secret *secret_new(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t map_len = (sizeof(struct secret) + len + page - 1) / page * page;
	struct secret *s;

	s = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return NULL;
	/* A secret that could be swapped out is a secret written to an untrusted disk. */
	if (mlock(s, map_len) < 0) {
		int e = errno;

		munmap(s, map_len);
		errno = e;
		return NULL;
	}
	(void)madvise(s, map_len, MADV_DONTDUMP);
	s->len = len;
	s->data = (uint8_t *)(s + 1);
	s->map_len = map_len;
	return s;
}

struct secret *secret_random(size_t len)
{
	struct secret *s = secret_new(len);

	if (s && RAND_priv_bytes(s->data, (int)len) != 1) {
		secret_free(s);
		errno = EIO;
		return NULL;
	}
	return s;
}

void secret_free(struct secret *s)
{
	size_t map_len;

	if (!s)
		return;
	map_len = s->map_len;
	explicit_bzero(s, map_len);
	munlock(s, map_len);
	munmap(s, map_len);
}

int secret_harden_process(void)
{
	const struct rlimit none = { 0, 0 };
	int ret = 0;

	if (setrlimit(RLIMIT_CORE, &none) < 0)
		ret = -errno;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 && ret == 0)
		ret = -errno;
	return ret;
}
