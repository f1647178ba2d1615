// SPDX-License-Identifier: Apache-2.0
/* doctor: does this kernel have what a node needs (kmod/features.c), and if not, why not. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include <json.h>

#include "conclave/features.h"
#include "conclave/modules.h"
#include "conclave/util.h"
#include "ctl.h"

static void doctor_usage(FILE *f)
{
	fprintf(f,
		"usage: conclavectl doctor [--json] [--no-load] [FEATURE...]\n"
		"Check that this kernel provides what a node needs, one line a feature: ok, or\n"
		"MISSING with the reason and a remedy. Modules a feature needs are loaded first\n"
		"(with their dependencies, from /lib/modules/$(uname -r)), and bpffs is mounted\n"
		"on /sys/fs/bpf, unless --no-load is given.\n\n"
		"  --json     print {\"ok\": bool, \"features\": [{name, ok, detail, remedy}]}\n"
		"  --no-load  only check: load no module, mount nothing\n\n"
		"features:\n");
	for (size_t i = 0; i < features_count; i++)
		fprintf(f, "  %-13s %s\n", features[i].name, features[i].purpose);
	fprintf(f,
		"\nExit status: 0 every feature checked is ok, 1 one is missing, 2 usage error.\n");
}

static json_object *result_json(const struct feature *f, const struct feature_result *r)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(f->name));
	json_object_object_add(o, "ok", json_object_new_boolean(r->ok));
	json_object_object_add(o, "detail", json_object_new_string(r->detail));
	json_object_object_add(o, "remedy", r->ok ? NULL : json_object_new_string(r->remedy));
	json_object_object_add(o, "purpose", json_object_new_string(f->purpose));
	return o;
}

int cmd_doctor(int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'j' },
					      { "no-load", no_argument, NULL, 'n' },
					      { "help", no_argument, NULL, 'h' },
					      { 0 } };
	const struct feature *chosen[16];
	json_object *root = NULL, *list = NULL;
	unsigned int flags = FEATURE_ENSURE;
	struct feature_result r;
	struct diag d = { { 0 } };
	struct modules *m;
	size_t n = 0;
	bool json = false, all_ok = true;
	struct utsname u;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'n': flags &= ~(unsigned int)FEATURE_ENSURE; break;
		case 'h': doctor_usage(stdout); return EXIT_OK;
		default: doctor_usage(stderr); return EXIT_USAGE;
		}
	}
	for (; optind < argc; optind++) {
		const struct feature *f = feature_find(argv[optind]);

		if (!f) {
			fprintf(stderr, "conclavectl: doctor: unknown feature '%s'\n",
				argv[optind]);
			doctor_usage(stderr);
			return EXIT_USAGE;
		}
		if (n < ARRAY_SIZE(chosen))
			chosen[n++] = f;
	}
	if (!n)
		for (; n < features_count && n < ARRAY_SIZE(chosen); n++)
			chosen[n] = &features[n];

	if (modules_open(&m, NULL, &d) < 0) {
		fprintf(stderr, "conclavectl: doctor: %s\n", d.msg);
		return EXIT_REFUSED;
	}
	uname(&u);
	if (json) {
		root = json_object_new_object();
		list = json_object_new_array();
		json_object_object_add(root, "kernel", json_object_new_string(u.release));
		json_object_object_add(root, "module_dir", json_object_new_string(modules_dir(m)));
	} else {
		printf("kernel %s, modules from %s%s\n", u.release, modules_dir(m),
		       modules_loadable() ? "" : " (this kernel cannot load modules)");
	}
	for (size_t i = 0; i < n; i++) {
		feature_check(m, chosen[i], flags, &r);
		all_ok &= r.ok;
		if (json)
			json_object_array_add(list, result_json(chosen[i], &r));
		else if (r.ok)
			printf("ok      %-12s (%s)\n", chosen[i]->name, r.detail);
		else
			printf("MISSING %-12s %s; remedy: %s\n", chosen[i]->name, r.detail,
			       r.remedy);
	}
	modules_close(m);
	if (json) {
		json_object_object_add(root, "ok", json_object_new_boolean(all_ok));
		json_object_object_add(root, "features", list);
		printf("%s\n", json_object_to_json_string_ext(
				   root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(root);
	}
	return all_ok ? EXIT_OK : EXIT_REFUSED;
}
