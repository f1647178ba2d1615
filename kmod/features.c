// SPDX-License-Identifier: Apache-2.0
/* The kernel features a node needs, and how to tell that each one works here. A check first
 * looks at the providing modules (loading them with FEATURE_ENSURE), then probes the feature
 * itself: a registered generic netlink family, a device-mapper target, a BPF map and program, a
 * clsact qdisc with a bpf classifier in a private network namespace. Without FEATURE_ENSURE a
 * probe runs only when its modules are present, because some probes would make the kernel
 * load a module by itself (request_module) and "check only" must not change the system. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <linux/dm-ioctl.h>
#include <linux/genetlink.h>
#include <linux/magic.h>
#include <linux/netlink.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "conclave/datapath.h"
#include "conclave/features.h"
#include "conclave/util.h"

#define BPFFS	      "/sys/fs/bpf"
#define BTF_VMLINUX   "/sys/kernel/btf/vmlinux"
#define DM_CONTROL    "/dev/mapper/control"
#define TPM_DEVICE    "/dev/tpmrm0"
#define DM_LIST_MAX   (256u * 1024)
#define AS_ROOT	      "run as root"
#define GENL_BUF_SIZE 4096

static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	if (n + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + n, size - n, fmt, ap);
	va_end(ap);
}

static void set(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

#define DETAIL(r, ...) set((r)->detail, sizeof((r)->detail), __VA_ARGS__)
#define REMEDY(r, ...) set((r)->remedy, sizeof((r)->remedy), __VA_ARGS__)

static void remedy_config(const struct feature *f, struct feature_result *r)
{
	REMEDY(r, "use a kernel built with %s (the node image's Debian kernel has it)", f->config);
}

/* ---- wireguard: its generic netlink family ---- */

/* The id of generic netlink family name: -ENOENT if none is registered. */
static int genl_family_id(const char *name, unsigned int *id)
{
	struct {
		struct nlmsghdr n;
		struct genlmsghdr g;
		char attrs[64];
	} req;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	size_t nlen = strlen(name) + 1;
	struct nlattr *a;
	uint32_t *buf;
	ssize_t len;
	int fd, ret = -EBADMSG;

	if (NLA_HDRLEN + nlen > sizeof(req.attrs))
		return -EINVAL;
	memset(&req, 0, sizeof(req));
	req.n.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN) + NLA_ALIGN(NLA_HDRLEN + nlen);
	req.n.nlmsg_type = GENL_ID_CTRL;
	req.n.nlmsg_flags = NLM_F_REQUEST;
	req.n.nlmsg_seq = 1;
	req.g.cmd = CTRL_CMD_GETFAMILY;
	req.g.version = 1;
	a = (struct nlattr *)req.attrs;
	a->nla_type = CTRL_ATTR_FAMILY_NAME;
	a->nla_len = (uint16_t)(NLA_HDRLEN + nlen);
	memcpy(req.attrs + NLA_HDRLEN, name, nlen);

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (fd < 0)
		return -errno;
	buf = malloc(GENL_BUF_SIZE); /* uint32_t: aligned for the netlink headers */
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	if (sendto(fd, &req, req.n.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0 ||
	    (len = recv(fd, buf, GENL_BUF_SIZE, 0)) < 0) {
		ret = -errno;
		goto out;
	}
	for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len);
	     h = NLMSG_NEXT(h, len)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(h);

			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
				break;
			ret = e->error < 0 ? e->error : -EBADMSG;
			break;
		}
		if (h->nlmsg_type != GENL_ID_CTRL || h->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN))
			continue;
		size_t off = NLMSG_LENGTH(GENL_HDRLEN), end = h->nlmsg_len;

		while (off + NLA_HDRLEN <= end) {
			const struct nlattr *at = (const struct nlattr *)((const char *)h + off);

			if (at->nla_len < NLA_HDRLEN || off + at->nla_len > end)
				break;
			if ((at->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_FAMILY_ID &&
			    at->nla_len >= NLA_HDRLEN + sizeof(uint16_t)) {
				uint16_t v;

				memcpy(&v, (const char *)at + NLA_HDRLEN, sizeof(v));
				*id = v;
				ret = 0;
				goto out;
			}
			off += NLA_ALIGN(at->nla_len);
		}
	}
out:
	free(buf);
	close(fd);
	return ret;
}

static int probe_genl(const struct feature *f, unsigned int flags, struct feature_result *r)
{
	unsigned int id = 0;
	int ret = genl_family_id(f->probe_arg, &id);

	if (ret == 0) {
		DETAIL(r, "generic netlink family %s registered (id %u)", f->probe_arg, id);
		return 0;
	}
	if (ret == -ENOENT) {
		DETAIL(r, "no generic netlink family %s", f->probe_arg);
		remedy_config(f, r);
	} else {
		DETAIL(r, "cannot ask generic netlink for family %s: %s", f->probe_arg,
		       strerror(-ret));
		REMEDY(r, "check that netlink sockets are allowed here");
	}
	return ret;
}

/* ---- dm-crypt, dm-integrity: device-mapper targets ---- */

int dm_versions_find(const void *data, size_t len, const char *target, unsigned int version[3])
{
	const char *p = data;
	struct dm_target_versions tv;
	size_t off = 0, nlen;

	if (len == 0)
		return -ENOENT;
	for (;;) {
		if (len - off < sizeof(tv))
			return -EBADMSG;
		memcpy(&tv, p + off, sizeof(tv));
		nlen = strnlen(p + off + sizeof(tv), len - off - sizeof(tv));
		if (nlen == len - off - sizeof(tv))
			return -EBADMSG; /* no NUL inside the buffer */
		if (!strcmp(p + off + sizeof(tv), target)) {
			for (int i = 0; i < 3; i++)
				version[i] = tv.version[i];
			return 0;
		}
		if (tv.next == 0)
			return -ENOENT;
		/* The next entry starts after this one's name and inside the buffer. */
		if (tv.next < sizeof(tv) + nlen + 1 || tv.next > len - off)
			return -EBADMSG;
		off += tv.next;
	}
}

/* The version of device-mapper target name, from DM_LIST_VERSIONS on /dev/mapper/control. */
static int dm_target_version(const char *name, unsigned int version[3])
{
	size_t size = 16384;
	struct dm_ioctl *io;
	int fd, ret;

	fd = open(DM_CONTROL, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		io = calloc(1, size);
		if (!io) {
			ret = -ENOMEM;
			break;
		}
		/* Major must match; minor 0 is accepted by every kernel of that major. */
		io->version[0] = DM_VERSION_MAJOR;
		io->data_size = (uint32_t)size;
		io->data_start = sizeof(*io);
		if (ioctl(fd, DM_LIST_VERSIONS, io) < 0) {
			ret = -errno;
		} else if (io->flags & DM_BUFFER_FULL_FLAG) {
			free(io);
			if (size >= DM_LIST_MAX) {
				ret = -E2BIG;
				break;
			}
			size *= 4;
			continue;
		} else if (io->data_size < io->data_start || io->data_size > size) {
			ret = -EBADMSG;
		} else {
			ret = dm_versions_find((const char *)io + io->data_start,
					       io->data_size - io->data_start, name, version);
		}
		free(io);
		break;
	}
	close(fd);
	return ret;
}

static int probe_dm(const struct feature *f, unsigned int flags, struct feature_result *r)
{
	unsigned int v[3] = { 0 };
	int ret = dm_target_version(f->probe_arg, v);

	switch (ret) {
	case 0:
		DETAIL(r, "device-mapper target %s v%u.%u.%u", f->probe_arg, v[0], v[1], v[2]);
		return 0;
	case -ENOENT:
		if (access(DM_CONTROL, F_OK) != 0)
			DETAIL(r, "no device-mapper (%s missing)", DM_CONTROL);
		else
			DETAIL(r, "device-mapper has no target %s", f->probe_arg);
		remedy_config(f, r);
		break;
	case -EACCES:
	case -EPERM:
		DETAIL(r, "cannot open %s: %s", DM_CONTROL, strerror(-ret));
		REMEDY(r, AS_ROOT);
		break;
	default:
		DETAIL(r, "cannot list device-mapper targets through %s: %s", DM_CONTROL,
		       strerror(-ret));
		remedy_config(f, r);
	}
	return ret;
}

/* ---- tpm ---- */

static int probe_tpm(const struct feature *f, unsigned int flags, struct feature_result *r)
{
	struct stat st;

	if (stat(TPM_DEVICE, &st) == 0 && S_ISCHR(st.st_mode)) {
		DETAIL(r, "TPM 2.0 resource manager %s", TPM_DEVICE);
		return 0;
	}
	DETAIL(r, "no %s", TPM_DEVICE);
	REMEDY(r,
	       "give the machine a TPM 2.0 (a VM: swtpm with -device tpm-tis) and a kernel with "
	       "%s; on a development host use swtpm through the tpm2-tss swtpm TCTI",
	       f->config);
	return -ENODEV;
}

/* ---- bpf: the syscall, and bpffs ---- */

/* r0 = 0; exit: the smallest valid program (socket filter: drop; tc: TC_ACT_OK). */
static const struct bpf_insn return_zero[] = {
	{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
	{ .code = BPF_JMP | BPF_EXIT },
};

static bool is_bpffs(const char *path)
{
	struct statfs st;

	return statfs(path, &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

static int probe_bpf(const struct feature *f, unsigned int flags, struct feature_result *r)
{
	struct diag d = { { 0 } };
	const char *what = "map";
	bool mounted = false;
	int fd, ret;

	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, NULL, sizeof(uint32_t), sizeof(uint32_t), 1, NULL);
	if (fd >= 0) {
		close(fd);
		what = "program";
		fd = bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, NULL, "GPL", return_zero,
				   ARRAY_SIZE(return_zero), NULL);
	}
	if (fd < 0) {
		ret = fd;
		DETAIL(r, "bpf() cannot create a %s: %s", what, strerror(-ret));
		if (ret == -EPERM || ret == -EACCES)
			REMEDY(r, AS_ROOT " (CAP_BPF and CAP_SYS_ADMIN)");
		else
			remedy_config(f, r);
		return ret;
	}
	close(fd);
	if (!is_bpffs(BPFFS)) {
		if (!(flags & FEATURE_ENSURE)) {
			DETAIL(r, "bpf() works, but no bpffs is mounted on %s", BPFFS);
			REMEDY(r,
			       "mount bpffs: mount -t bpf bpf %s (doctor without --no-load does)",
			       BPFFS);
			return -ENOENT;
		}
		ret = datapath_ensure_bpffs(BPFFS, &d);
		if (ret < 0) {
			DETAIL(r, "bpf() works, but %s", d.msg);
			REMEDY(r, AS_ROOT ", or mount bpffs: mount -t bpf bpf %s", BPFFS);
			return ret;
		}
		mounted = true;
	}
	DETAIL(r, "bpf() creates maps and loads programs; bpffs %s %s",
	       mounted ? "mounted now on" : "on", BPFFS);
	return 0;
}

/* ---- tc-bpf: clsact + cls_bpf, tried in a private network namespace ---- */

enum tc_stage { TC_NETNS, TC_QDISC, TC_PROG, TC_FILTER, TC_DONE };

struct tc_probe {
	enum tc_stage stage;
	int err;
};

/* A thread of its own: unshare(CLONE_NEWNET) moves only this thread, and the namespace goes
 * away with it. */
static void *tc_probe_thread(void *arg)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = 1 /* lo, in a new namespace */,
		    .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 1, .priority = 1);
	struct tc_probe *t = arg;
	int fd, ret;

	t->stage = TC_NETNS;
	if (unshare(CLONE_NEWNET) < 0) {
		t->err = -errno;
		return NULL;
	}
	t->stage = TC_QDISC;
	ret = bpf_tc_hook_create(&hook);
	if (ret < 0 && ret != -EEXIST) {
		t->err = ret;
		return NULL;
	}
	t->stage = TC_PROG;
	fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, NULL, "GPL", return_zero,
			   ARRAY_SIZE(return_zero), NULL);
	if (fd < 0) {
		t->err = fd;
		return NULL;
	}
	t->stage = TC_FILTER;
	opts.prog_fd = fd;
	ret = bpf_tc_attach(&hook, &opts);
	close(fd);
	if (ret < 0) {
		t->err = ret;
		return NULL;
	}
	t->stage = TC_DONE;
	t->err = 0;
	return NULL;
}

static int probe_tc(const struct feature *f, unsigned int flags, struct feature_result *r)
{
	static const char *const what[] = {
		[TC_NETNS] = "cannot create a network namespace to try it in",
		[TC_QDISC] = "cannot add a clsact qdisc",
		[TC_PROG] = "cannot load a tc (SCHED_CLS) program",
		[TC_FILTER] = "cannot attach a bpf classifier",
	};
	struct tc_probe t = { TC_NETNS, -EINVAL };
	pthread_t th;
	int ret;

	ret = pthread_create(&th, NULL, tc_probe_thread, &t);
	if (ret) {
		DETAIL(r, "cannot start the tc probe: %s", strerror(ret));
		return -ret;
	}
	pthread_join(th, NULL);
	if (t.stage == TC_DONE) {
		DETAIL(r, "clsact qdisc and bpf classifier attach, tried in a private network "
			  "namespace");
		return 0;
	}
	DETAIL(r, "%s: %s", what[t.stage], strerror(-t.err));
	if (t.err == -EPERM || t.err == -EACCES)
		REMEDY(r, AS_ROOT " (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF)");
	else
		remedy_config(f, r);
	return t.err;
}

/* ---- btf ---- */

static int probe_btf(const struct feature *f, unsigned int flags, struct feature_result *r)
{
	struct stat st;

	if (stat(BTF_VMLINUX, &st) == 0 && S_ISREG(st.st_mode)) {
		DETAIL(r, "kernel BTF at %s", BTF_VMLINUX);
		return 0;
	}
	DETAIL(r, "no %s: CO-RE programs cannot be relocated", BTF_VMLINUX);
	remedy_config(f, r);
	return -ENOENT;
}

/* ---- the table ---- */

const struct feature features[] = {
	{ .name = "wireguard",
	  .purpose = "encrypts all traffic between nodes",
	  .config = "CONFIG_WIREGUARD",
	  .modules = { "wireguard" },
	  .probe = probe_genl,
	  .probe_arg = "wireguard" },
	{ .name = "dm-crypt",
	  .purpose = "encrypts the node's state disk",
	  .config = "CONFIG_BLK_DEV_DM and CONFIG_DM_CRYPT",
	  .modules = { "dm_crypt" },
	  .probe = probe_dm,
	  .probe_arg = "crypt" },
	{ .name = "dm-integrity",
	  .purpose = "authenticates every sector of the state disk",
	  .config = "CONFIG_BLK_DEV_DM and CONFIG_DM_INTEGRITY",
	  .modules = { "dm_integrity" },
	  .probe = probe_dm,
	  .probe_arg = "integrity" },
	/* Debian builds both drivers in; either one gives /dev/tpmrm0. */
	{ .name = "tpm",
	  .purpose = "measured boot and attestation",
	  .config = "CONFIG_TCG_TPM and CONFIG_TCG_CRB or CONFIG_TCG_TIS",
	  .modules = { "tpm_crb", "tpm_tis" },
	  .any_module = true,
	  .probe = probe_tpm },
	{ .name = "bpf",
	  .purpose = "loads the datapath's programs and pins its maps",
	  .config = "CONFIG_BPF_SYSCALL",
	  .probe = probe_bpf },
	/* Modules in Debian's 6.1, not loaded at boot: the image has them for libkmod. */
	{ .name = "tc-bpf",
	  .purpose = "attaches the datapath to network interfaces",
	  .config = "CONFIG_NET_SCH_INGRESS and CONFIG_NET_CLS_BPF",
	  .modules = { "sch_ingress", "cls_bpf" },
	  .probe = probe_tc },
	{ .name = "btf",
	  .purpose = "CO-RE relocation of the datapath's programs",
	  .config = "CONFIG_DEBUG_INFO_BTF",
	  .probe = probe_btf },
};
const size_t features_count = ARRAY_SIZE(features);

const struct feature *feature_find(const char *name)
{
	for (size_t i = 0; i < features_count; i++)
		if (!strcmp(features[i].name, name))
			return &features[i];
	return NULL;
}

/* ---- the check ---- */

/* The modules of f: 0, or the first reason the feature cannot work (said in r; nothing is
 * probed then). note gets what each module is; soft a reason that matters only if the probe
 * fails: a kernel that cannot load modules may still have the code built in without a trace
 * in /sys/module. */
static int check_modules(struct modules *m, const struct feature *f, unsigned int flags,
			 struct feature_result *r, char *note, size_t note_size, char *soft,
			 size_t soft_size)
{
	struct diag d = { { 0 } };
	int blocking = 0, satisfied = 0, ret;
	char path[PATH_MAX];
	enum module_state st;
	struct utsname u;
	unsigned int n;

	for (const char *const *mod = f->modules; *mod; mod++) {
		ret = modules_state(m, *mod, &st);
		if (ret == 0 &&
		    (st == MODULE_BUILTIN || st == MODULE_LIVE || st == MODULE_COMING)) {
			append(note, note_size, "%smodule %s %s", note[0] ? ", " : "", *mod,
			       module_state_name(st));
			satisfied++;
			continue;
		}
		if (!modules_loadable()) {
			append(soft, soft_size, "%s%s", soft[0] ? " or " : "", *mod);
			continue;
		}
		if (!(flags & FEATURE_ENSURE)) {
			if (blocking)
				continue;
			blocking = -ENOENT;
			DETAIL(r, "module %s is not loaded", *mod);
			if (modules_find(m, *mod, path, sizeof(path), &d) < 0) {
				append(r->detail, sizeof(r->detail), " (%s)", d.msg);
				REMEDY(r,
				       "install the modules of this kernel (%s) or use a kernel "
				       "with %s",
				       modules_dir(m), f->config);
			} else {
				REMEDY(r,
				       "load module %s (doctor without --no-load, or modprobe %s)",
				       *mod, *mod);
			}
			continue;
		}
		ret = modules_ensure(m, *mod, &n, &d);
		if (ret == 0) {
			append(note, note_size, "%smodule %s loaded now", note[0] ? ", " : "",
			       *mod);
			if (n > 1)
				append(note, note_size, " with %u dependencies", n - 1);
			satisfied++;
			continue;
		}
		if (blocking)
			continue;
		blocking = ret;
		DETAIL(r, "%s", d.msg);
		if (ret == -ENOENT)
			REMEDY(r, "install the modules of this kernel (%s) or use a kernel with %s",
			       modules_dir(m), f->config);
		else if (ret == -EPERM)
			REMEDY(r, AS_ROOT);
		else
			REMEDY(r, "see the kernel log (dmesg) for why %s was refused", *mod);
	}
	if (f->any_module && satisfied)
		soft[0] = '\0';
	if (soft[0]) {
		char names[128];

		uname(&u);
		snprintf(names, sizeof(names), "%s", soft);
		snprintf(
		    soft, soft_size,
		    "kernel %s cannot load modules (no /proc/modules) and shows no built-in %s",
		    u.release, names);
	}
	if (f->any_module && satisfied)
		return 0;
	return blocking;
}

int feature_check(struct modules *m, const struct feature *f, unsigned int flags,
		  struct feature_result *r)
{
	struct modules *own = NULL;
	char note[256] = "", soft[256] = "";
	int ret;

	memset(r, 0, sizeof(*r));
	if (!m) {
		struct diag d = { { 0 } };

		ret = modules_open(&own, NULL, &d);
		if (ret < 0) {
			DETAIL(r, "%s", d.msg);
			REMEDY(r, "check libkmod");
			return ret;
		}
		m = own;
	}
	ret = check_modules(m, f, flags, r, note, sizeof(note), soft, sizeof(soft));
	if (ret == 0) {
		ret = f->probe(f, flags, r);
		if (ret == 0 && note[0])
			append(r->detail, sizeof(r->detail), "; %s", note);
		else if (ret < 0 && soft[0])
			append(r->detail, sizeof(r->detail), "; %s", soft);
	}
	modules_close(own);
	r->ok = ret == 0;
	if (r->ok)
		r->remedy[0] = '\0';
	return ret;
}
