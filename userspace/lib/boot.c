// SPDX-License-Identifier: Apache-2.0
/* PID 1 basics for the node image. Linux-only by nature: mount(2), finit_module(2), reboot(2),
 * rtnetlink. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "conclave/boot.h"
#include "conclave/util.h"

#define PORTS_DIR "/sys/class/virtio-ports"

int boot_mount_basics(struct diag *d)
{
	static const struct {
		const char *source, *target, *type;
		unsigned long flags;
		const char *data;
	} mounts[] = {
		{ "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755" },
		{ "securityfs", "/sys/kernel/security", "securityfs",
		  MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755" },
		{ "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(mounts); i++) {
		if (mount(mounts[i].source, mounts[i].target, mounts[i].type, mounts[i].flags,
			  mounts[i].data) < 0 &&
		    errno != EBUSY) {
			int e = errno;

			diag_set(d, "mounting %s on %s: %s", mounts[i].type, mounts[i].target,
				 strerror(e));
			return -e;
		}
	}
	return 0;
}

int boot_console(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	for (int i = 0; i < 3; i++)
		if (dup2(fd, i) < 0)
			return -errno;
	if (fd > 2)
		close(fd);
	return 0;
}

static int insert_module(const char *path, struct diag *d)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), e;

	if (fd < 0) {
		e = errno;
		diag_set(d, "opening module %s: %s", path, strerror(e));
		return -e;
	}
	if (syscall(SYS_finit_module, fd, "", 0) == 0) {
		close(fd);
		return 0;
	}
	e = errno;
	close(fd);
	if (e == EEXIST)
		return 1; /* built in or already loaded */
	diag_set(d, "loading module %s: %s", path, strerror(e));
	return -e;
}

int boot_load_modules(const char *path, unsigned int *loaded, unsigned int *skipped, struct diag *d)
{
	struct diag first = { { 0 } };
	char line[4096];
	FILE *f = fopen(path, "re");
	int ret = 0;

	*loaded = *skipped = 0;
	if (!f) {
		int e = errno;

		diag_set(d, "module list %s: %s", path, strerror(e));
		return -e;
	}
	errno = 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		switch (insert_module(line, &first)) {
		case 0: (*loaded)++; break;
		case 1: break;
		case -ENODEV: (*skipped)++; break;
		default:
			if (ret == 0) {
				ret = -EIO;
				diag_set(d, "%s", first.msg);
			}
		}
	}
	fclose(f);
	return ret;
}

int boot_fw_cfg_read(const char *name, size_t max, uint8_t **buf, size_t *len, struct diag *d)
{
	char path[512];
	int ret;

	if (snprintf(path, sizeof(path), "%s/%s/raw", BOOT_FW_CFG_DIR, name) >= (int)sizeof(path))
		return diag_set(d, "fw_cfg name %s is too long", name), -ENAMETOOLONG;
	ret = read_file(path, max, buf, len);
	if (ret < 0 && ret != -ENOENT)
		diag_set(d, "reading fw_cfg %s: %s", name,
			 ret == -EFBIG ? "larger than expected" : strerror(-ret));
	else if (ret == -ENOENT)
		diag_set(d, "the host provided no fw_cfg file %s", name);
	return ret;
}

/* The /dev entry of the virtio port called name, if it exists yet. */
static int find_port(const char *name, char *dev, size_t len)
{
	struct dirent *e;
	DIR *dir = opendir(PORTS_DIR);
	int ret = -ENOENT;

	if (!dir)
		return -ENOENT;
	while ((e = readdir(dir))) {
		char path[512];
		uint8_t *buf = NULL;
		size_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/name", PORTS_DIR, e->d_name);
		if (read_file(path, 256, &buf, &n) < 0)
			continue;
		while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
			buf[--n] = '\0';
		if (!strcmp((char *)buf, name)) {
			snprintf(dev, len, "/dev/%s", e->d_name);
			ret = 0;
		}
		free(buf);
		if (ret == 0)
			break;
	}
	closedir(dir);
	return ret;
}

int boot_virtio_port_open(const char *name, int timeout_ms, int *fd, struct diag *d)
{
	const struct timespec step = { 0, 50 * 1000 * 1000 };
	char dev[300];
	int e;

	for (int waited = 0;; waited += 50) {
		if (find_port(name, dev, sizeof(dev)) == 0) {
			*fd = open(dev, O_RDWR | O_NOCTTY | O_CLOEXEC);
			if (*fd >= 0)
				return 0;
			/* devtmpfs creates the node a moment after sysfs shows the port */
			if (errno != ENOENT) {
				e = errno;
				diag_set(d, "opening virtio port %s (%s): %s", name, dev,
					 strerror(e));
				return -e;
			}
		}
		if (waited >= timeout_ms)
			break;
		nanosleep(&step, NULL);
	}
	diag_set(d, "no virtio-serial port named %s after %d ms (is virtio_console loaded?)", name,
		 timeout_ms);
	return -ETIMEDOUT;
}

int boot_memory(unsigned long *used_kb, unsigned long *total_kb)
{
	unsigned long total = 0, avail = 0, v;
	char line[128], key[64];
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63[^:]: %lu", key, &v) != 2)
			continue;
		if (!strcmp(key, "MemTotal"))
			total = v;
		else if (!strcmp(key, "MemAvailable"))
			avail = v;
	}
	fclose(f);
	if (!total || avail > total)
		return -EBADMSG;
	*used_kb = total - avail;
	*total_kb = total;
	return 0;
}

double boot_uptime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void boot_poweroff(void)
{
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

/* One rtnetlink request with NLM_F_ACK; 0 or the kernel's -errno. */
static int rtnl_call(int fd, struct nlmsghdr *req)
{
	union {
		struct nlmsghdr h;
		char buf[512];
	} ack;
	ssize_t n;

	if (send(fd, req, req->nlmsg_len, 0) < 0)
		return -errno;
	n = recv(fd, &ack, sizeof(ack), 0);
	if (n < 0)
		return -errno;
	if ((size_t)n < NLMSG_LENGTH(sizeof(struct nlmsgerr)) || ack.h.nlmsg_type != NLMSG_ERROR)
		return -EBADMSG;
	return ((struct nlmsgerr *)NLMSG_DATA(&ack.h))->error;
}

static int link_up(int fd, unsigned int index)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = {
		.h = { .nlmsg_len = sizeof(req),
		       .nlmsg_type = RTM_NEWLINK,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK,
		       .nlmsg_seq = 1 },
		.i = { .ifi_family = AF_UNSPEC,
		       .ifi_index = (int)index,
		       .ifi_flags = IFF_UP,
		       .ifi_change = IFF_UP },
	};

	return rtnl_call(fd, &req.h);
}

static int add_address(int fd, unsigned int index, struct in_addr addr, unsigned int prefix)
{
	struct {
		struct nlmsghdr h;
		struct ifaddrmsg a;
		struct rtattr local;
		struct in_addr local_v;
		struct rtattr address;
		struct in_addr address_v;
	} req = {
		.h = { .nlmsg_len = sizeof(req),
		       .nlmsg_type = RTM_NEWADDR,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
		       .nlmsg_seq = 2 },
		.a = { .ifa_family = AF_INET,
		       .ifa_prefixlen = (unsigned char)prefix,
		       .ifa_index = index },
		.local = { .rta_len = RTA_LENGTH(sizeof(struct in_addr)), .rta_type = IFA_LOCAL },
		.local_v = addr,
		.address = { .rta_len = RTA_LENGTH(sizeof(struct in_addr)),
			     .rta_type = IFA_ADDRESS },
		.address_v = addr,
	};

	return rtnl_call(fd, &req.h);
}

/* The first Ethernet interface by name (ARPHRD_ETHER in /sys/class/net/NAME/type). */
static int first_ethernet(char *ifname)
{
	struct dirent **names;
	int n = scandir("/sys/class/net", &names, NULL, alphasort), ret = -ENODEV;

	for (int i = 0; i < n; i++) {
		char path[300];
		uint8_t *buf = NULL;
		size_t len;

		snprintf(path, sizeof(path), "/sys/class/net/%s/type", names[i]->d_name);
		if (ret < 0 && names[i]->d_name[0] != '.' && read_file(path, 32, &buf, &len) == 0 &&
		    atoi((char *)buf) == 1 && strlen(names[i]->d_name) < IFNAMSIZ) {
			snprintf(ifname, IFNAMSIZ, "%s", names[i]->d_name);
			ret = 0;
		}
		free(buf);
		free(names[i]);
	}
	if (n >= 0)
		free(names);
	return ret;
}

int boot_net_configure(const char *cidr, char *ifname, struct diag *d)
{
	char addr_text[INET_ADDRSTRLEN];
	const char *slash = strchr(cidr, '/');
	struct in_addr addr;
	unsigned int index;
	char *end;
	long prefix;
	int fd, ret;

	if (!slash || (size_t)(slash - cidr) >= sizeof(addr_text))
		return diag_set(d, "address %s is not ADDRESS/PREFIX", cidr), -EINVAL;
	memcpy(addr_text, cidr, (size_t)(slash - cidr));
	addr_text[slash - cidr] = '\0';
	prefix = strtol(slash + 1, &end, 10);
	if (inet_pton(AF_INET, addr_text, &addr) != 1 || *end || end == slash + 1 || prefix < 1 ||
	    prefix > 32)
		return diag_set(d, "address %s is not an IPv4 ADDRESS/PREFIX", cidr), -EINVAL;
	if (first_ethernet(ifname) < 0)
		return diag_set(d, "no Ethernet interface (is virtio_net loaded?)"), -ENODEV;
	index = if_nametoindex(ifname);
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0 || !index) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		return diag_set(d, "rtnetlink for %s: %s", ifname, strerror(-ret)), ret;
	}
	ret = link_up(fd, if_nametoindex("lo"));
	if (ret == 0)
		ret = link_up(fd, index);
	if (ret == 0)
		ret = add_address(fd, index, addr, (unsigned int)prefix);
	close(fd);
	if (ret < 0)
		diag_set(d, "configuring %s with %s: %s", ifname, cidr, strerror(-ret));
	return ret;
}
