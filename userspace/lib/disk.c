// SPDX-License-Identifier: Apache-2.0
/* The state disk through libcryptsetup (disk.h, docs/disk.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libcryptsetup.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "conclave/disk.h"
#include "conclave/kms.h"
#include "conclave/log.h"
#include "conclave/util.h"

#define WIPE_BLOCK   (1024u * 1024u)
#define VOLUME_INFO  "conclave/v1/luks2-volume-key"
#define MOUNT_FLAGS  (MS_NODEV | MS_NOSUID)
#define MOUNT_FSTYPE "ext4"

static const char *name_of(const struct disk_config *c)
{
	return c->name ? c->name : DISK_DEFAULT_NAME;
}

static const char *mount_of(const struct disk_config *c)
{
	return c->mountpoint ? c->mountpoint : DISK_DEFAULT_MOUNT;
}

/* libcryptsetup's last error, for the diag (its log goes through ours at debug level). */
static __thread char crypt_err[256];

static void on_crypt_log(int level, const char *msg, void *usrptr)
{
	size_t n = strcspn(msg, "\n");

	(void)usrptr;
	if (level == CRYPT_LOG_ERROR)
		snprintf(crypt_err, sizeof(crypt_err), "%.*s", (int)n, msg);
	log_debug("libcryptsetup: %.*s", (int)n, msg);
}

static int crypt_fail(struct diag *d, int ret, const char *what)
{
	diag_set(d, "%s: %s%s%s", what, strerror(-ret), crypt_err[0] ? ": " : "", crypt_err);
	crypt_err[0] = '\0';
	return ret < 0 ? ret : -EIO;
}

/* Without udev in the node, libdevmapper must create /dev/mapper nodes itself. */
static void crypt_setup_once(void)
{
	static bool done;

	if (done)
		return;
	setenv("DM_DISABLE_UDEV", "1", 0);
	crypt_set_log_callback(NULL, on_crypt_log, NULL);
	done = true;
}

/* ---- probe --------------------------------------------------------------------------------- */

static int read_header(const char *dev, uint8_t *buf, size_t cap, size_t *len, struct diag *d)
{
	int fd = open(dev, O_RDONLY | O_CLOEXEC);
	ssize_t n = 0;

	*len = 0;
	if (fd < 0) {
		diag_set(d, "cannot open %s: %s", dev, strerror(errno));
		return -errno;
	}
	while (*len < cap && (n = pread(fd, buf + *len, cap - *len, (off_t)*len)) > 0)
		*len += (size_t)n;
	close(fd);
	if (n < 0) {
		diag_set(d, "cannot read %s: %s", dev, strerror(errno));
		return -EIO;
	}
	return 0;
}

static void random_uuid(uint8_t uuid[16])
{
	RAND_bytes(uuid, 16);
	uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x40); /* RFC 4122 version 4 */
	uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
}

int disk_probe(const struct disk_config *c, struct disk_probe *p, struct diag *d)
{
	static const uint8_t zero[LUKS2_HEADER_BYTES];
	struct luks2_expect e = { c->cluster_id, c->node_id };
	uint8_t *buf = malloc(LUKS2_HEADER_BYTES);
	size_t len;
	int ret;

	memset(p, 0, sizeof(*p));
	if (!buf) {
		diag_set(d, "out of memory");
		return -ENOMEM;
	}
	ret = read_header(c->dev, buf, LUKS2_HEADER_BYTES, &len, d);
	if (ret == 0 && len == LUKS2_HEADER_BYTES && !memcmp(buf, zero, len)) {
		p->state = DISK_BLANK;
		random_uuid(p->uuid);
	} else if (ret == 0) {
		ret = luks2_check(buf, len, &e, &p->info, d);
		if (ret == -ENOMSG) {
			diag_set(d,
				 "%s holds data that is not a conclave state disk: not formatting "
				 "it (wipe its first %u bytes to start afresh)",
				 c->dev, LUKS2_HEADER_BYTES);
			ret = -EBADMSG;
		} else if (ret < 0) {
			diag_prefix(d, "%s", c->dev);
		} else {
			p->state = p->info.has_token ? DISK_READY : DISK_UNFINISHED;
			memcpy(p->uuid, p->info.uuid, sizeof(p->uuid));
		}
	}
	free(buf);
	return ret;
}

int disk_find_by_serial(const char *serial, char *out, size_t cap)
{
	DIR *dir = opendir("/sys/block");
	struct dirent *e;
	int ret = -ENOENT;

	if (!dir)
		return -ENOENT;
	while (ret < 0 && (e = readdir(dir))) {
		char path[300], buf[64] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/serial", e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f)) {
			buf[strcspn(buf, "\n")] = '\0';
			if (!strcmp(buf, serial) &&
			    (size_t)snprintf(out, cap, "/dev/%s", e->d_name) < cap)
				ret = 0;
		}
		fclose(f);
	}
	closedir(dir);
	return ret;
}

/* ---- open state ----------------------------------------------------------------------------- */

/* Active, whether in use (CRYPT_BUSY: mounted) or not. */
static bool mapping_active(const char *name)
{
	crypt_status_info st = crypt_status(NULL, name);

	return st == CRYPT_ACTIVE || st == CRYPT_BUSY;
}

int disk_active(const struct disk_config *c, uint8_t uuid[16], struct diag *d)
{
	struct crypt_device *cd = NULL;
	const char *text;
	int ret;

	crypt_setup_once();
	if (!mapping_active(name_of(c)))
		return 0;
	ret = crypt_init_by_name(&cd, name_of(c));
	if (ret < 0)
		return crypt_fail(d, ret, "state disk mapping");
	text = crypt_get_uuid(cd);
	ret = text && uuid_parse(text, uuid) == 0 ? 1 : -EINVAL;
	if (ret < 0)
		diag_set(d, "state disk mapping %s has no LUKS2 UUID", name_of(c));
	crypt_free(cd);
	return ret;
}

/* Is something mounted at dir? */
static bool mounted_at(const char *dir)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[1024], *save = NULL;
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *tok = strtok_r(line, " ", &save);

		for (int i = 0; tok && i < 4; i++) /* ID, parent, major:minor, root, mount point */
			tok = strtok_r(NULL, " ", &save);
		found = tok && !strcmp(tok, dir);
	}
	fclose(f);
	return found;
}

/* ---- keys ------------------------------------------------------------------------------------ */

/* The volume key: HKDF of the disk key with the disk's UUID. Opening with it, not through a
 * keyslot, means no header the host rewrote can substitute a volume key it knows: libcryptsetup
 * only checks this key against the header's digest. */
static int volume_key(const struct secret *key, const uint8_t uuid[16], struct secret **out,
		      struct diag *d)
{
	struct secret *vk = secret_new(LUKS2_VOLUME_KEY_LEN);

	if (!vk) {
		diag_set(d, "out of locked memory for the volume key");
		return -ENOMEM;
	}
	if (kms_hkdf(key->data, key->len, uuid, 16, (const uint8_t *)VOLUME_INFO,
		     strlen(VOLUME_INFO), vk->data, vk->len) < 0) {
		secret_free(vk);
		diag_set(d, "HKDF failed in OpenSSL");
		return -EIO;
	}
	*out = vk;
	return 0;
}

/* ---- format ---------------------------------------------------------------------------------- */

static int run_mkfs(const char *dev, struct diag *d)
{
	static const char *const paths[] = { "/usr/sbin/mke2fs", "/sbin/mke2fs",
					     "/usr/bin/mke2fs" };
	const char *mkfs = NULL;
	int status = 0;
	pid_t pid;

	for (size_t i = 0; !mkfs && i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			mkfs = paths[i];
	if (!mkfs) {
		diag_set(d, "mke2fs is missing (e2fsprogs)");
		return -ENOENT;
	}
	pid = fork();
	if (pid == 0) {
		/* The device reads as zeros after the wipe: no need to zero tables or journal. */
		execl(mkfs, "mke2fs", "-q", "-F", "-t", MOUNT_FSTYPE, "-b", "4096", "-L",
		      LUKS2_LABEL, "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", dev,
		      (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		diag_set(d, "mke2fs on %s failed (status %d)", dev, status);
		return -EIO;
	}
	return 0;
}

/* The header, the keyslot (passphrase: the disk key), the integrity tags of every sector
 * (wiped through a journal-less mapping), the file system; our token last, so that a disk
 * without it is known to hold nothing yet. */
static int format(const struct disk_config *c, const struct disk_probe *p, const struct secret *key,
		  const struct secret *vk, struct diag *d)
{
	struct crypt_pbkdf_type pbkdf = {
		.type = CRYPT_KDF_PBKDF2,
		.hash = "sha256",
		.iterations = LUKS2_PBKDF_ITER,
		.flags = CRYPT_PBKDF_NO_BENCHMARK,
	};
	struct crypt_params_luks2 params = {
		.pbkdf = &pbkdf,
		.integrity = LUKS2_INTEGRITY,
		.sector_size = LUKS2_SECTOR_SIZE,
		.label = LUKS2_LABEL,
	};
	struct crypt_device *cd = NULL;
	char uuid[37], token[256], wipe_name[64], path[128];
	int ret;

	uuid_format(p->uuid, uuid);
	if (luks2_token_json(c->cluster_id, c->node_id, token, sizeof(token)) < 0) {
		diag_set(d, "token too long");
		return -EINVAL;
	}
	log_info("disk: formatting %s (LUKS2 %s, %s, %u-byte sectors, UUID %s)", c->dev,
		 LUKS2_ENCRYPTION, LUKS2_INTEGRITY, LUKS2_SECTOR_SIZE, uuid);
	ret = crypt_init(&cd, c->dev);
	if (ret < 0)
		return crypt_fail(d, ret, "cannot open the state disk");
	ret = crypt_set_metadata_size(cd, LUKS2_HDR_SIZE, LUKS2_KEYSLOTS_SIZE);
	if (ret == 0)
		ret = crypt_set_data_offset(cd, LUKS2_DATA_OFFSET / 512);
	if (ret == 0)
		ret = crypt_format(cd, CRYPT_LUKS2, LUKS2_CIPHER, LUKS2_CIPHER_MODE, uuid,
				   (const char *)vk->data, vk->len, &params);
	if (ret < 0) {
		crypt_fail(d, ret, "LUKS2 format");
		goto out;
	}
	ret = crypt_keyslot_add_by_volume_key(cd, 0, (const char *)vk->data, vk->len,
					      (const char *)key->data, key->len);
	if (ret < 0) {
		crypt_fail(d, ret, "LUKS2 keyslot");
		goto out;
	}
	/* Until every sector has its tag, reading one fails: zero them all once. */
	snprintf(wipe_name, sizeof(wipe_name), "%s-wipe", name_of(c));
	snprintf(path, sizeof(path), "/dev/mapper/%s", wipe_name);
	ret = crypt_activate_by_volume_key(cd, wipe_name, (const char *)vk->data, vk->len,
					   CRYPT_ACTIVATE_PRIVATE | CRYPT_ACTIVATE_NO_JOURNAL);
	if (ret == 0) {
		ret = crypt_wipe(cd, path, CRYPT_WIPE_ZERO, 0, 0, WIPE_BLOCK,
				 CRYPT_WIPE_NO_DIRECT_IO, NULL, NULL);
		if (ret < 0)
			crypt_fail(d, ret, "initialising the integrity tags");
		crypt_deactivate(cd, wipe_name);
	} else {
		crypt_fail(d, ret, "opening the new disk");
	}
	if (ret < 0)
		goto out;
	ret = crypt_activate_by_volume_key(cd, name_of(c), (const char *)vk->data, vk->len, 0);
	if (ret < 0) {
		crypt_fail(d, ret, "opening the new disk");
		goto out;
	}
	snprintf(path, sizeof(path), "/dev/mapper/%s", name_of(c));
	ret = run_mkfs(path, d);
	if (ret == 0) {
		ret = crypt_token_json_set(cd, 0, token);
		if (ret < 0)
			crypt_fail(d, ret, "LUKS2 token");
		else
			ret = 0;
	}
	if (ret < 0)
		crypt_deactivate(cd, name_of(c));
out:
	crypt_free(cd);
	return ret;
}

/* ---- open ------------------------------------------------------------------------------------ */

/* What libcryptsetup loaded is what it will use: check that, not only the bytes we read. */
static int check_loaded(struct crypt_device *cd, const struct disk_config *c,
			const struct disk_probe *p, struct diag *d)
{
	struct luks2_expect e = { c->cluster_id, c->node_id };
	struct crypt_params_integrity ip = { 0 };
	struct luks2_info info;
	const char *json = NULL, *cipher, *mode;
	uint8_t uuid[16];
	int ret;

	ret = crypt_dump_json(cd, &json, 0);
	if (ret < 0 || !json)
		return crypt_fail(d, ret < 0 ? ret : -EIO, "reading the loaded LUKS2 metadata");
	ret = luks2_check_json(json, strlen(json), &e, &info, d);
	if (ret < 0)
		return ret;
	cipher = crypt_get_cipher(cd);
	mode = crypt_get_cipher_mode(cd);
	if (!info.has_token || !cipher || !mode || strcmp(cipher, LUKS2_CIPHER) ||
	    strcmp(mode, LUKS2_CIPHER_MODE) ||
	    crypt_get_volume_key_size(cd) != (int)LUKS2_VOLUME_KEY_LEN ||
	    crypt_get_sector_size(cd) != (int)LUKS2_SECTOR_SIZE ||
	    crypt_get_data_offset(cd) != LUKS2_DATA_OFFSET / 512 ||
	    crypt_get_integrity_info(cd, &ip) < 0 || !ip.integrity ||
	    strcmp(ip.integrity, LUKS2_INTEGRITY) || ip.tag_size != LUKS2_TAG_SIZE ||
	    !crypt_get_uuid(cd) || uuid_parse(crypt_get_uuid(cd), uuid) < 0 ||
	    memcmp(uuid, p->uuid, 16) != 0) {
		diag_set(d, "the LUKS2 header libcryptsetup loaded is not the one checked");
		return -EBADMSG;
	}
	return 0;
}

static int open_existing(const struct disk_config *c, const struct disk_probe *p,
			 const struct secret *vk, struct diag *d)
{
	struct crypt_device *cd = NULL;
	int ret = crypt_init(&cd, c->dev);

	if (ret < 0)
		return crypt_fail(d, ret, "cannot open the state disk");
	ret = crypt_load(cd, CRYPT_LUKS2, NULL);
	if (ret < 0)
		crypt_fail(d, ret, "LUKS2 header");
	else
		ret = check_loaded(cd, c, p, d);
	if (ret == 0) {
		ret = crypt_activate_by_volume_key(cd, name_of(c), (const char *)vk->data, vk->len,
						   0);
		if (ret == -EPERM)
			diag_set(d, "the key does not open this disk");
		else if (ret < 0)
			crypt_fail(d, ret, "opening the state disk");
	}
	crypt_free(cd);
	return ret < 0 ? ret : 0;
}

static int mount_disk(const struct disk_config *c, struct diag *d)
{
	char path[128];
	int ret;

	if (mounted_at(mount_of(c)))
		return 0;
	snprintf(path, sizeof(path), "/dev/mapper/%s", name_of(c));
	ret = mkdir_p(mount_of(c), 0700);
	if (ret < 0) {
		diag_set(d, "cannot create %s: %s", mount_of(c), strerror(-ret));
		return ret;
	}
	if (mount(path, mount_of(c), MOUNT_FSTYPE, MOUNT_FLAGS, NULL) < 0) {
		diag_set(d, "cannot mount %s at %s: %s", path, mount_of(c), strerror(errno));
		return -errno;
	}
	/* The workloads' directory (docs/disk.md): on the disk, like everything under the mount. */
	snprintf(path, sizeof(path), "%s/%s", mount_of(c), DISK_DATA_SUBDIR);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		diag_set(d, "cannot create %s: %s", path, strerror(errno));
		return -errno;
	}
	return 0;
}

int disk_unlock(const struct disk_config *c, const struct disk_probe *p, const struct secret *key,
		struct diag *d)
{
	_cleanup_secret_ struct secret *vk = NULL;
	uint8_t uuid[16];
	int ret;

	if (!c->cluster_id || !c->node_id || !key || key->len != DISK_KEY_LEN) {
		diag_set(d, "state disk: no cluster, node or %d-byte key", DISK_KEY_LEN);
		return -EINVAL;
	}
	crypt_setup_once();
	ret = disk_active(c, uuid, d);
	if (ret == 1 && memcmp(uuid, p->uuid, 16) != 0) {
		diag_set(d, "another disk is open as %s", name_of(c));
		return -EBUSY;
	}
	if (ret == 1)
		return mount_disk(c, d);
	if (ret < 0)
		return ret;
	ret = volume_key(key, p->uuid, &vk, d);
	if (ret < 0)
		return ret;
	ret = p->state == DISK_READY ? open_existing(c, p, vk, d) : format(c, p, key, vk, d);
	if (ret < 0)
		return ret;
	ret = mount_disk(c, d);
	if (ret < 0) {
		struct diag ignored = { { 0 } };

		disk_close(c, &ignored);
		return ret;
	}
	log_info("disk: %s open at %s", c->dev, mount_of(c));
	return 0;
}

int disk_close(const struct disk_config *c, struct diag *d)
{
	struct crypt_device *cd = NULL;
	int ret;

	crypt_setup_once();
	if (mounted_at(mount_of(c)) && umount(mount_of(c)) < 0) {
		diag_set(d, "cannot unmount %s: %s", mount_of(c), strerror(errno));
		return -errno;
	}
	if (!mapping_active(name_of(c)))
		return 0;
	ret = crypt_init_by_name(&cd, name_of(c));
	if (ret == 0)
		ret = crypt_deactivate(cd, name_of(c));
	crypt_free(cd);
	return ret < 0 ? crypt_fail(d, ret, "closing the state disk") : 0;
}
