#!/usr/bin/env bash
# The node images without booting them: reproducible bytes, what the initramfs holds (and the
# production one's lack of any shell or interpreter), and the measurement prediction's contract.
# Prints TAP.
set -u
# shellcheck source=tests/e2e/tap.bash
source "$(dirname "$0")/tap.bash"
work=$(mktemp -d /tmp/conclave-image-test-XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "1..19"
for tool in objcopy objdump cpio; do
	command -v $tool >/dev/null || { echo "Bail out! $tool missing (scripts/install-deps)"; exit 1; }
done
"$root/scripts/build-image" --build "$build" --out "$work/a" >"$work/build-a.log" 2>&1 ||
	{ echo "Bail out! build-image failed: $(tail -3 "$work/build-a.log")"; exit 1; }
[ -f "$work/a/node.efi" ] && [ -f "$work/a/node-debug.efi" ] &&
	ok "build-image writes node.efi and node-debug.efi" ||
	not_ok "build-image writes node.efi and node-debug.efi" "$(ls "$work/a")"

SOURCE_DATE_EPOCH=0 "$root/scripts/build-image" --build "$build" --out "$work/b" >/dev/null 2>&1
for v in node node-debug; do
	a=$(sha256sum <"$work/a/$v.efi") b=$(sha256sum <"$work/b/$v.efi" 2>/dev/null)
	[ "$a" = "$b" ] && ok "$v.efi: two builds give identical bytes" ||
		not_ok "$v.efi: two builds give identical bytes" "$a" "$b"
done

initrd_of "$work/a/node.efi" "$work/node.cpio"
initrd_of "$work/a/node-debug.efi" "$work/debug.cpio"
cpio -t --quiet <"$work/node.cpio" >"$work/node.list" 2>/dev/null
cpio -t --quiet <"$work/debug.cpio" >"$work/debug.list" 2>/dev/null
interpreters='^(sh|ash|bash|dash|zsh|ksh|mksh|csh|tcsh|busybox|toybox|python.*|perl.*|ruby.*|lua.*|tclsh.*|wish.*|node|nodejs|php.*|awk|gawk|mawk|sed|env)$'
found=$(awk -F/ '{ print $NF }' "$work/node.list" | grep -E "$interpreters")
[ -z "$found" ] && ok "production initramfs holds no shell or interpreter" ||
	not_ok "production initramfs holds no shell or interpreter" "found: $found"
mkdir -p "$work/x" && (cd "$work/x" && cpio -id --quiet <"$work/node.cpio" 2>/dev/null)
scripts=$(cd "$work/x" && find . -type f -exec sh -c 'head -c2 "$1" | grep -q "#!" && echo "$1"' _ {} \;)
[ -z "$scripts" ] && ok "production initramfs holds no script" ||
	not_ok "production initramfs holds no script" "$scripts"
grep -qx 'usr/bin/busybox' "$work/debug.list" && grep -qx 'usr/bin/sh' "$work/debug.list" &&
	ok "debug initramfs has busybox and /bin/sh" || not_ok "debug initramfs has busybox and /bin/sh"
services=$(for l in "$work/node.list" "$work/debug.list"; do
	grep -cx 'usr/bin/conclave-agent\|usr/bin/conclave-joind' "$l"; done | tr '\n' ' ')
[ "$services" = "2 2 " ] && ! grep -q '^etc/conclave/trust' "$work/node.list" "$work/debug.list" &&
	ok "both images hold conclave-agent and conclave-joind; without --trust-dir no trust files" ||
	not_ok "both images hold conclave-agent and conclave-joind; without --trust-dir no trust files" \
		"found: $services" "$(grep '^etc/conclave/trust' "$work/node.list")"

# Every shared library the binaries need is in the image, and the ELF interpreter too.
missing=
for elf in init usr/bin/conclavectl usr/bin/conclave-agent usr/bin/conclave-joind; do
	for lib in $(readelf -dW "$work/x/$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
		[ -e "$work/x/usr/lib/x86_64-linux-gnu/$lib" ] || missing+=" $lib"
	done
done
interp=$(readelf -lW "$work/x/init" | sed -n 's/.*interpreter: \(.*\)\]/\1/p')
[ -e "$work/x$interp" ] || missing+=" $interp"
[ -z "$missing" ] && ok "every DT_NEEDED library and the ELF interpreter are in the image" ||
	not_ok "every DT_NEEDED library and the ELF interpreter are in the image" "missing:$missing"
mods=$(wc -l <"$work/x/etc/conclave/modules")
bad_mods=$(while read -r m; do [ -f "$work/x$m" ] || echo "$m"; done <"$work/x/etc/conclave/modules")
[ "$mods" -gt 0 ] && [ -z "$bad_mods" ] && grep -q '/wireguard.ko$' "$work/x/etc/conclave/modules" &&
	grep -q '/dm-integrity.ko$' "$work/x/etc/conclave/modules" &&
	ok "module list ($mods modules, wireguard and dm-integrity included) names files in the image" ||
	not_ok "module list names files in the image" "missing: $bad_mods"
# dependency order: every module's dependencies come before it
late=
mpos=0
while read -r m; do # module names use '_' where file names may use '-'
	mpos=$((mpos + 1))
	for dep in $(modinfo -F depends "$work/x$m" | tr ',' ' '); do
		dpos=$(grep -n "/\(${dep}\|${dep//_/-}\).ko$" "$work/x/etc/conclave/modules" | cut -d: -f1)
		[ -n "$dpos" ] && [ "$dpos" -lt $mpos ] || late+=" $dep(for $(basename "$m"))"
	done
done <"$work/x/etc/conclave/modules"
[ -z "$late" ] && ok "modules are listed after their dependencies" ||
	not_ok "modules are listed after their dependencies" "missing or late:$late"

cmd=$(objcopy -O binary --only-section=.cmdline "$work/a/node.efi" /dev/stdout)
[[ $cmd == console=ttyS0* ]] && ok "the UKI carries the command line in .cmdline" ||
	not_ok "the UKI carries the command line in .cmdline" "got '$cmd'"

# --trust-dir: the cluster's trust inputs, measured with the image
mkdir -p "$work/trust"
for f in policy-key.pub ek-roots.pem operator-key.pub; do echo "test $f" >"$work/trust/$f"; done
chmod 0600 "$work/trust/policy-key.pub"
"$root/scripts/build-image" --build "$build" --out "$work/t" --trust-dir "$work/trust" >/dev/null 2>&1
"$root/scripts/build-image" --build "$build" --out "$work/t2" --trust-dir "$work/trust" >/dev/null 2>&1
modes=
for v in node node-debug; do
	initrd_of "$work/t/$v.efi" "$work/t.cpio"
	modes+=$(cpio -tv --quiet <"$work/t.cpio" 2>/dev/null | awk '$NF ~ /^etc\/conclave\/trust\// { print $1, $NF }' | sort | tr '\n' ';')
	(cd "$work" && mkdir -p "x-$v" && cd "x-$v" && cpio -id --quiet 'etc/conclave/trust/*' <"$work/t.cpio" 2>/dev/null)
	cmp -s "$work/x-$v/etc/conclave/trust/ek-roots.pem" "$work/trust/ek-roots.pem" || modes+=" ($v: content differs)"
done
want="-rw-r--r-- etc/conclave/trust/ek-roots.pem;-rw-r--r-- etc/conclave/trust/operator-key.pub;-rw-r--r-- etc/conclave/trust/policy-key.pub;"
[ "$modes" = "$want$want" ] &&
	ok "--trust-dir puts policy-key.pub, ek-roots.pem, operator-key.pub in /etc/conclave/trust (0644) of both images" ||
	not_ok "--trust-dir puts the three trust files in /etc/conclave/trust (0644) of both images" "got: $modes"
cmp -s "$work/t/node.efi" "$work/t2/node.efi" && cmp -s "$work/t/node-debug.efi" "$work/t2/node-debug.efi" &&
	! cmp -s "$work/t/node.efi" "$work/a/node.efi" &&
	ok "images with trust inputs are reproducible too, and differ from those without" ||
	not_ok "images with trust inputs are reproducible too, and differ from those without"
rm "$work/trust/operator-key.pub"
"$root/scripts/build-image" --build "$build" --out "$work/t3" --trust-dir "$work/trust" >/dev/null 2>"$work/err"
[ $? -ne 0 ] && grep -q "operator-key.pub" "$work/err" && [ ! -e "$work/t3/node.efi" ] &&
	ok "build-image refuses a trust directory without one of the files, naming it" ||
	not_ok "build-image refuses a trust directory without one of the files, naming it" "$(cat "$work/err")"

# measure
"$ctl" measure --out "$work/node.json" "$work/a/node.efi" >/dev/null 2>"$work/err" &&
	"$ctl" measure --out "$work/node2.json" "$work/a/node.efi" >/dev/null 2>&1 &&
	cmp -s "$work/node.json" "$work/node2.json" && ok "measure is deterministic" ||
	not_ok "measure is deterministic" "$(cat "$work/err")"
"$ctl" measure --out "$work/debug.json" "$work/a/node-debug.efi" >/dev/null 2>&1
differ=$(for p in 0 1 2 3 4 5 6 7 8 9 11 12 13 14; do
	a=$(grep "\"$p\": {" "$work/node.json") b=$(grep "\"$p\": {" "$work/debug.json")
	[ "$a" != "$b" ] && printf '%s ' $p
done)
[ "$differ" = "4 9 11 " ] && ok "debug and production images differ exactly in PCRs 4, 9 and 11" ||
	not_ok "debug and production images differ exactly in PCRs 4, 9 and 11" "differ: $differ"
"$ctl" measure "$work/a/node.efi" >/dev/null 2>&1
[ $? -eq 2 ] && ok "measure without --out is a usage error (2)" || not_ok "measure without --out is a usage error (2)"
"$ctl" measure --out "$work/k.json" "$work/node.cpio" >/dev/null 2>"$work/err"
[ $? -eq 1 ] && grep -q "MZ" "$work/err" && ok "measure refuses a file that is not a PE image (1, says why)" ||
	not_ok "measure refuses a file that is not a PE image (1, says why)" "$(cat "$work/err")"
"$ctl" measure --out "$work/k.json" --reference-log "$root/tests/data/eventlogs/eventlog-direct.bin" \
	"$work/a/node.efi" >/dev/null 2>"$work/err"
[ $? -eq 1 ] && grep -q "UKI boot" "$work/err" &&
	ok "measure refuses a reference log that is not of a UKI boot" ||
	not_ok "measure refuses a reference log that is not of a UKI boot" "$(cat "$work/err")"
