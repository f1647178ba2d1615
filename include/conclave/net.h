/* SPDX-License-Identifier: Apache-2.0 */
/* TCP client connections for the join protocol. */
#ifndef CONCLAVE_NET_H
#define CONCLAVE_NET_H

#include <stddef.h>
#include <stdint.h>

#include "conclave/diag.h"

/* A TCP connection to a numeric IPv4/IPv6 host and port within timeout_ms; *out is a
 * non-blocking, close-on-exec socket. */
int net_connect(const char *host, uint16_t port, int timeout_ms, int *out, struct diag *d);

/* Split "HOST:PORT" or "[V6]:PORT" into host (NUL-terminated, cap bytes) and port. */
int net_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port);

#endif
