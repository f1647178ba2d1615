// SPDX-License-Identifier: Apache-2.0
/* Cluster KMS: HKDF-SHA256 key derivation from a master secret in locked memory, and the
 * recovery file that hands that secret to the operator. Keys never reach a log. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "conclave/kms.h"
#include "conclave/util.h"

#define INFO_PREFIX "conclave/v1/"
#define INFO_MAX    (sizeof(INFO_PREFIX) + 2 * KMS_LABEL_MAX + 1)

/* The recovery file, byte for byte: four lines, lowercase hex. */
#define REC_MAGIC	"conclave-recovery v1\n"
#define REC_MASTER	"master "
#define REC_SALT	"salt "
#define REC_CHECK	"check "
#define REC_CHECK_LEN	4
#define REC_CHECK_LABEL "conclave/v1/recovery-check"

_Static_assert(sizeof(REC_MAGIC) - 1 + sizeof(REC_MASTER) - 1 + 2 * KMS_MASTER_LEN + 1 +
		       sizeof(REC_SALT) - 1 + 2 * KMS_SALT_LEN + 1 + sizeof(REC_CHECK) - 1 +
		       2 * REC_CHECK_LEN + 1 ==
		   KMS_RECOVERY_FILE_LEN,
	       "KMS_RECOVERY_FILE_LEN matches the format");

static uint8_t *master_of(const struct kms *k)
{
	return k->keys->data;
}

static uint8_t *salt_of(const struct kms *k)
{
	return k->keys->data + KMS_MASTER_LEN;
}

static struct kms *kms_alloc(struct diag *d)
{
	struct kms *k = calloc(1, sizeof(*k));

	if (!k) {
		diag_set(d, "kms: out of memory");
		return NULL;
	}
	k->keys = secret_new(KMS_MASTER_LEN + KMS_SALT_LEN);
	if (!k->keys) {
		diag_set(d,
			 "kms: cannot allocate locked memory for the master secret: %s "
			 "(raise RLIMIT_MEMLOCK)",
			 strerror(errno));
		free(k);
		return NULL;
	}
	return k;
}

void kms_free(struct kms *k)
{
	if (!k)
		return;
	secret_free(k->keys);
	free(k);
}

int kms_new_random(struct kms **out, struct diag *d)
{
	_cleanup_secret_ struct secret *rnd = NULL;
	struct kms *k;

	rnd = secret_random(KMS_MASTER_LEN + KMS_SALT_LEN);
	if (!rnd) {
		diag_set(d, "kms: cannot draw the master secret from the CSPRNG: %s",
			 strerror(errno));
		return -EIO;
	}
	k = kms_alloc(d);
	if (!k)
		return -ENOMEM;
	memcpy(k->keys->data, rnd->data, rnd->len);
	*out = k;
	return 0;
}

int kms_from_secret(const struct secret *master, const struct secret *salt, struct kms **out,
		    struct diag *d)
{
	struct kms *k;

	/* No silent stretching or truncation: a wrong length is a wrong secret. */
	if (!master || master->len != KMS_MASTER_LEN) {
		diag_set(d, "kms: master secret must be %d bytes", KMS_MASTER_LEN);
		return -EINVAL;
	}
	if (!salt || salt->len != KMS_SALT_LEN) {
		diag_set(d, "kms: cluster salt must be %d bytes", KMS_SALT_LEN);
		return -EINVAL;
	}
	k = kms_alloc(d);
	if (!k)
		return -ENOMEM;
	memcpy(master_of(k), master->data, KMS_MASTER_LEN);
	memcpy(salt_of(k), salt->data, KMS_SALT_LEN);
	*out = k;
	return 0;
}

int kms_hkdf(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
	     const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[5], *p = params;
	int ret = -EIO;

	EVP_KDF_free(kdf);
	if (!ctx)
		return -ENOMEM;
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
	/* An empty salt is RFC 5869's default (HashLen zeros); OpenSSL wants it left out. */
	if (salt_len)
		*p++ =
		    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(ctx, out, out_len, params) == 1)
		ret = 0;
	EVP_KDF_CTX_free(ctx);
	return ret;
}

/* Labels end up inside the info string: printable, no separator, bounded. */
static int check_label(const char *what, const char *s, struct diag *d)
{
	size_t n = s ? strnlen(s, KMS_LABEL_MAX + 1) : 0;

	if (n == 0 || n > KMS_LABEL_MAX) {
		diag_set(d, "kms: %s must be 1 to %d characters", what, KMS_LABEL_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '/') {
			diag_set(d, "kms: %s may hold only printable ASCII without '/' or spaces",
				 what);
			return -EINVAL;
		}
	}
	return 0;
}

static int derive_info(const struct kms *k, const char *info, size_t len, struct secret **out,
		       struct diag *d)
{
	struct secret *s = secret_new(len);
	int ret;

	if (!s) {
		diag_set(d, "kms: cannot allocate locked memory for a key: %s", strerror(errno));
		return -ENOMEM;
	}
	ret = kms_hkdf(master_of(k), KMS_MASTER_LEN, salt_of(k), KMS_SALT_LEN,
		       (const uint8_t *)info, strlen(info), s->data, len);
	if (ret < 0) {
		secret_free(s);
		diag_set(d, "kms: HKDF-SHA256 failed in OpenSSL");
		return ret;
	}
	*out = s;
	return 0;
}

int kms_derive(const struct kms *k, const char *purpose, const char *id, size_t len,
	       struct secret **out, struct diag *d)
{
	char info[INFO_MAX];
	int ret;

	if (!k || !out || len == 0 || len > KMS_KEY_MAX) {
		diag_set(d, "kms: key length must be 1 to %d bytes", KMS_KEY_MAX);
		return -EINVAL;
	}
	ret = check_label("key purpose", purpose, d);
	if (ret == 0)
		ret = check_label("key id", id, d);
	if (ret < 0)
		return ret;
	snprintf(info, sizeof(info), INFO_PREFIX "%s/%s", purpose, id);
	return derive_info(k, info, len, out, d);
}

int kms_disk_key(const struct kms *k, const uint8_t node_id[KMS_NODE_ID_LEN],
		 const uint8_t uuid[KMS_UUID_LEN], struct secret **out, struct diag *d)
{
	char node_hex[2 * KMS_NODE_ID_LEN + 1], uuid_s[37], info[INFO_MAX];

	if (!k || !node_id || !uuid || !out) {
		diag_set(d, "kms: disk key needs a node id and a disk UUID");
		return -EINVAL;
	}
	/* Two '/' after "disk": no kms_derive info (one '/' after the purpose) can equal it. */
	hex_encode(node_id, KMS_NODE_ID_LEN, node_hex);
	uuid_format(uuid, uuid_s);
	snprintf(info, sizeof(info), INFO_PREFIX "disk/%s/%s", node_hex, uuid_s);
	return derive_info(k, info, KMS_DISK_KEY_LEN, out, d);
}

/* Typo check for a file an operator may copy by hand; 32 bits reveal nothing useful about a
 * 512-bit secret. */
static int recovery_check(const uint8_t *keys, uint8_t check[REC_CHECK_LEN])
{
	uint8_t md[32];
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ret = -EIO;

	if (!c)
		return -ENOMEM;
	if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(c, REC_CHECK_LABEL, sizeof(REC_CHECK_LABEL) - 1) == 1 &&
	    EVP_DigestUpdate(c, keys, KMS_MASTER_LEN + KMS_SALT_LEN) == 1 &&
	    EVP_DigestFinal_ex(c, md, NULL) == 1) {
		memcpy(check, md, REC_CHECK_LEN);
		ret = 0;
	}
	EVP_MD_CTX_free(c);
	explicit_bzero(md, sizeof(md));
	return ret;
}

static char *put(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

static char *put_hex_line(char *p, const char *key, const uint8_t *b, size_t n)
{
	p = put(p, key);
	hex_encode(b, n, p);
	p += 2 * n;
	*p++ = '\n';
	return p;
}

int kms_recovery_write(const struct kms *k, const char *path, struct diag *d)
{
	_cleanup_secret_ struct secret *text = secret_new(KMS_RECOVERY_FILE_LEN + 1);
	uint8_t check[REC_CHECK_LEN];
	char *p;
	int ret;

	if (!text) {
		diag_set(d, "kms: cannot allocate locked memory: %s", strerror(errno));
		return -ENOMEM;
	}
	ret = recovery_check(k->keys->data, check);
	if (ret < 0) {
		diag_set(d, "kms: cannot compute the recovery file check value");
		return ret;
	}
	p = put((char *)text->data, REC_MAGIC);
	p = put_hex_line(p, REC_MASTER, master_of(k), KMS_MASTER_LEN);
	p = put_hex_line(p, REC_SALT, salt_of(k), KMS_SALT_LEN);
	put_hex_line(p, REC_CHECK, check, REC_CHECK_LEN);
	ret = write_file_new(path, text->data, KMS_RECOVERY_FILE_LEN, 0600);
	if (ret == -EEXIST)
		diag_set(d, "%s: exists; a recovery file is never overwritten: choose a new name",
			 path);
	else if (ret < 0)
		diag_set(d, "%s: cannot write the recovery file: %s", path, strerror(-ret));
	return ret;
}

static int nibble(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Expect "<key><2n lowercase hex>\n" at *p; decode into out. */
static int take_hex_line(const uint8_t **p, const uint8_t *end, const char *key, uint8_t *out,
			 size_t n)
{
	size_t klen = strlen(key);
	const uint8_t *s = *p;

	if ((size_t)(end - s) < klen + 2 * n + 1 || memcmp(s, key, klen) != 0)
		return -EBADMSG;
	s += klen;
	for (size_t i = 0; i < n; i++) {
		int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EBADMSG;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	s += 2 * n;
	if (*s != '\n')
		return -EBADMSG;
	*p = s + 1;
	return 0;
}

int kms_recovery_parse(const uint8_t *buf, size_t len, struct kms **out, struct diag *d)
{
	const uint8_t *p = buf, *end = buf + len;
	uint8_t check[REC_CHECK_LEN], want[REC_CHECK_LEN];
	struct kms *k;
	int ret;

	if (len != KMS_RECOVERY_FILE_LEN || memcmp(p, REC_MAGIC, sizeof(REC_MAGIC) - 1) != 0) {
		diag_set(d, "not a conclave recovery file (v1): wrong size or header");
		return -EBADMSG;
	}
	p += sizeof(REC_MAGIC) - 1;
	k = kms_alloc(d);
	if (!k)
		return -ENOMEM;
	ret = take_hex_line(&p, end, REC_MASTER, master_of(k), KMS_MASTER_LEN);
	if (ret == 0)
		ret = take_hex_line(&p, end, REC_SALT, salt_of(k), KMS_SALT_LEN);
	if (ret == 0)
		ret = take_hex_line(&p, end, REC_CHECK, check, REC_CHECK_LEN);
	if (ret < 0) {
		kms_free(k);
		diag_set(d, "recovery file is malformed: expected 'master', 'salt' and 'check' "
			    "lines of lowercase hex");
		return ret;
	}
	ret = recovery_check(k->keys->data, want);
	if (ret == 0 && CRYPTO_memcmp(check, want, REC_CHECK_LEN) != 0)
		ret = -EBADMSG;
	if (ret < 0) {
		kms_free(k);
		diag_set(d, "recovery file check value does not match: the file was altered or "
			    "mistyped");
		return ret;
	}
	*out = k;
	return 0;
}

/* Read at most max bytes of path straight into locked memory. */
static int read_secret_file(const char *path, size_t max, struct secret **out, size_t *len)
{
	struct secret *s = secret_new(max + 1);
	struct stat st;
	size_t n = 0;
	int fd, ret = 0;

	if (!s)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ret = errno > 0 ? -errno : -EIO;
		secret_free(s);
		return ret;
	}
	/* Like ssh with private keys: a secret others could read is refused, not used. */
	if (fstat(fd, &st) < 0 || (st.st_mode & 077)) {
		ret = -EACCES;
		n = max + 1;
	}
	while (ret == 0 && n <= max) {
		ssize_t r = read(fd, s->data + n, max + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = errno > 0 ? -errno : -EIO;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (ret == 0 && n > max)
		ret = -EFBIG;
	if (ret < 0) {
		secret_free(s);
		return ret;
	}
	*out = s;
	*len = n;
	return 0;
}

int kms_recovery_read(const char *path, struct kms **out, struct diag *d)
{
	_cleanup_secret_ struct secret *text = NULL;
	size_t len;
	int ret;

	ret = read_secret_file(path, KMS_RECOVERY_FILE_LEN, &text, &len);
	if (ret == -EFBIG) {
		diag_set(d, "%s: too large for a recovery file", path);
		return -EBADMSG;
	}
	if (ret == -EACCES) {
		diag_set(d, "%s: the recovery file is accessible by group or others; chmod 600 it",
			 path);
		return ret;
	}
	if (ret < 0 || !text) {
		diag_set(d, "%s: cannot read the recovery file: %s", path, strerror(-ret));
		return ret < 0 ? ret : -EIO;
	}
	ret = kms_recovery_parse(text->data, len, out, d);
	if (ret < 0)
		diag_prefix(d, "%s", path);
	return ret;
}
