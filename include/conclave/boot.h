/* SPDX-License-Identifier: Apache-2.0 */
/* PID 1 of the node image: the few things a minimal init does before the node's own work —
 * mount the kernel's file systems, load the image's kernel modules in the order the image
 * builder computed, read what the host handed in through QEMU fw_cfg, find a named
 * virtio-serial port, power off. */
#ifndef CONCLAVE_BOOT_H
#define CONCLAVE_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"

#define BOOT_MODULE_LIST "/etc/conclave/modules"
#define BOOT_FW_CFG_DIR	 "/sys/firmware/qemu_fw_cfg/by_name"

/* Mount /proc, /sys, /dev (devtmpfs), securityfs, and tmpfs on /run and /tmp. */
int boot_mount_basics(struct diag *d);

/* Make /dev/console stdin, stdout and stderr (the initramfs carries no device nodes). */
int boot_console(void);

/* Load every module listed in path (one absolute .ko path a line, dependencies first) with
 * finit_module; already-loaded modules are fine. *loaded counts the modules inserted, *skipped
 * those for hardware or a CPU this machine lacks (ENODEV: an accelerated cipher without its
 * instructions; the generic one serves). Any other failure does not stop the rest: the first
 * is returned (d says which) after all were tried. */
int boot_load_modules(const char *path, unsigned int *loaded, unsigned int *skipped,
		      struct diag *d);

/* Read the fw_cfg file name (e.g. "opt/conclave/nonce"), at most max bytes, into *buf
 * (malloc'ed, NUL-terminated). -ENOENT if the host did not provide it. */
int boot_fw_cfg_read(const char *name, size_t max, uint8_t **buf, size_t *len, struct diag *d);

/* Open the virtio-serial port the host named name, waiting up to timeout_ms for it to appear. */
int boot_virtio_port_open(const char *name, int timeout_ms, int *fd, struct diag *d);

/* Bring lo up, then the first Ethernet interface (sorted by name) with address cidr
 * ("10.88.0.10/24") over rtnetlink. *ifname (IFNAMSIZ bytes) gets the interface used. */
int boot_net_configure(const char *cidr, char *ifname, struct diag *d);

/* Memory in use (MemTotal - MemAvailable) and MemTotal, in KiB, from /proc/meminfo. */
int boot_memory(unsigned long *used_kb, unsigned long *total_kb);

/* Seconds since the kernel started (CLOCK_BOOTTIME). */
double boot_uptime(void);

/* Flush file systems and power the machine off. Never returns. */
void boot_poweroff(void) __attribute__((noreturn));

#endif
