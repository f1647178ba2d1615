/* SPDX-License-Identifier: Apache-2.0 */
/* Predicting the SHA-256 PCRs a Unified Kernel Image produces when OVMF boots it with
 * QEMU -kernel, before any VM runs it:
 *
 *   PCR 4   the firmware's events of a reference boot, with its two EFI applications replaced
 *           by this image's: the UKI (Authenticode) and the kernel in its .linux section
 *   PCR 9   what the kernel's EFI stub measures: the LoadOptions systemd-stub hands it (the
 *           .cmdline as UTF-16LE with its NUL) and the initrd bytes (EV_EVENT_TAG each)
 *   PCR 11  what systemd-stub 252 measures: for .linux, .osrel, .cmdline, .initrd, .splash,
 *           .dtb, .pcrpkey in that order, if present, the name with its NUL, then the section
 *           as loaded (EV_IPL each)
 *   PCR 12, 13, 14  nothing (a command-line override, credentials, system extensions or shim
 *           would measure there)
 *   PCRs 0-3, 5-8  replayed from the reference boot's log: same OVMF build, same QEMU config
 *
 * The result is a measurement policy (policy.h) whose "reference" is the predicted event
 * sequence, ready to review and sign. */
#ifndef CONCLAVE_MEASURE_H
#define CONCLAVE_MEASURE_H

#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"
#include "conclave/eventlog.h"
#include "conclave/pe.h"
#include "conclave/policy.h"

#define EV_IPL				 0x0000000du
#define EV_EFI_ACTION			 0x80000007u
#define EV_EFI_BOOT_SERVICES_APPLICATION 0x80000003u

/* The only systemd-stub whose measurements this module reproduces. */
#define MEASURE_SYSTEMD_STUB_VERSION 252

/* Predict the PCRs of the UKI image[0..len) booted on the firmware that produced ref (a UKI
 * boot's log). out gets every PCR in 0-9 and 11-14 and the predicted events. */
int measure_predict(const uint8_t *image, size_t len, const struct eventlog *ref,
		    struct policy *out, struct diag *d);

/* The systemd-stub version embedded in a UKI (from its .sdmagic section), or -ENOENT. */
int measure_stub_version(const struct pe_image *uki, unsigned int *major);

/* systemd-stub's PCR 11 events for uki into ev[0..max); *n gets the count. */
int measure_uki_sections(const struct pe_image *uki, struct policy_ref_event *ev, size_t max,
			 size_t *n, struct diag *d);

/* SHA-256 of the LoadOptions systemd-stub gives the kernel for an ASCII command line: each
 * character widened to UTF-16LE, then a UTF-16 NUL. Stops at the first NUL. -EINVAL for
 * non-ASCII. */
int measure_load_options_digest(const uint8_t *cmdline, size_t len, uint8_t out[32]);

#endif
