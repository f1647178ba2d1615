/* SPDX-License-Identifier: Apache-2.0 */
/* conclavectl internals: one function per subcommand, shared argument helpers. */
#ifndef CONCLAVE_CTL_H
#define CONCLAVE_CTL_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes are part of the command-line contract. */
enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2 };

int cmd_attest(int argc, char **argv);
int cmd_make_credential(int argc, char **argv);
int cmd_verify_evidence(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_measure(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_monitor(int argc, char **argv);
int cmd_pods(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_cluster_status(int argc, char **argv);
int cmd_recover(int argc, char **argv);
int cmd_revoke(int argc, char **argv);
int cmd_replace_disk(int argc, char **argv);
int cmd_set_policy(int argc, char **argv);
int cmd_doctor(int argc, char **argv);

/* --nonce HEX: 8 to 64 bytes. Prints the error and returns -1 on bad input. */
int parse_nonce(const char *hex, uint8_t *out, size_t *len);

/* "0-9,11,14": PCR indices below 24 as a bit mask. */
int parse_pcr_list(const char *s, uint32_t *mask);

/* Read a whole input file, printing "conclavectl: cannot read WHAT PATH: reason" on failure. */
int read_input(const char *what, const char *path, size_t max, uint8_t **buf, size_t *len);

/* Write an output file (mode 0600 for secrets, 0644 otherwise) or "-" for stdout. */
int write_output(const char *what, const char *path, const void *buf, size_t len,
		 unsigned int mode);

#endif
