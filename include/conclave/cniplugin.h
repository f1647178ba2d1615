/* SPDX-License-Identifier: Apache-2.0 */
/* conclave-cni's commands (docs/cni.md): ADD registers the pod the previous plugins made with
 * the node datapath and attaches the per-pod program to its host-side veth, passing prevResult
 * on unchanged; DEL undoes that, best effort and idempotent; CHECK verifies it; VERSION,
 * STATUS and GC as the spec says. Input is checked completely before the node is touched. */
#ifndef CONCLAVE_CNIPLUGIN_H
#define CONCLAVE_CNIPLUGIN_H

#include <stddef.h>

#include "conclave/cni.h"

/* Run the command of e with the stdin bytes in[0..len). 0 with *out the text to print (NULL:
 * print nothing), or -1 with err set. *version gets the cniVersion to answer with ("" if the
 * configuration did not say). */
int cni_plugin_run(const struct cni_env *e, const char *in, size_t len, char **out,
		   char version[16], struct cni_error *err);

#endif
