// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target: the address text a node receives about other nodes (endpoints and
 * allowed IPs in peer sets, which other nodes chose in their JOIN_REQUEST), the join address
 * an agent is configured with, and the nonce the host passes through fw_cfg. Each parser must
 * accept or refuse without reading past the text; accepted values must be well formed. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conclave/datapath.h"
#include "conclave/mesh.h"
#include "conclave/net.h"
#include "conclave/node.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss;
	struct dp_endpoint_v1 ep;
	struct dp_cidr c;
	uint8_t nonce[64];
	char host[64], *s;
	uint16_t port;
	size_t n;

	if (size > 4096)
		return 0;
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	for (unsigned int i = 0; i < 4; i++)
		if (mesh_parse_endpoint(s, i, &ss) == 0 && ss.ss_family != AF_INET &&
		    ss.ss_family != AF_INET6)
			abort();
	(void)dp_cidr_parse(s, DP_CIDR_NODE, &c);
	(void)dp_cidr_parse(s, DP_CIDR_POD, &c);
	(void)dp_endpoint_parse(s, 51820, &ep);
	if (net_parse_hostport(s, host, sizeof(host), &port) == 0 &&
	    strnlen(host, sizeof(host)) == sizeof(host))
		abort();
	if (node_parse_nonce(data, size, nonce, &n) == 0 && (n < 8 || n > sizeof(nonce)))
		abort();
	free(s);
	return 0;
}
