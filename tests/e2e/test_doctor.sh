#!/usr/bin/env bash
# `conclavectl doctor` inside a node: one boot of the debug image (QEMU TCG + OVMF + swtpm) whose
# debug script runs doctor three times: --no-load (check only: the on-demand tc modules and bpffs
# are missing and stay so), then doctor (loads sch_ingress and cls_bpf through libkmod from the
# image's depmod index, mounts bpffs: every feature ok), then --json. Prints TAP.
set -u
# shellcheck source=tests/e2e/tap.bash
source "$(dirname "$0")/tap.bash"
work=$(mktemp -d /tmp/conclave-doctor-test-XXXXXX)
vm_pid=
cleanup() {
	[ -n "$vm_pid" ] && kill "$vm_pid" 2>/dev/null && wait "$vm_pid"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "1..9"
for tool in qemu-system-x86_64 swtpm swtpm_setup objcopy jq; do
	command -v $tool >/dev/null || { echo "Bail out! $tool missing (scripts/install-deps)"; exit 1; }
done
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || { echo "Bail out! OVMF missing"; exit 1; }
"$root/scripts/build-image" --build "$build" --out "$work/image" >"$work/build.log" 2>&1 ||
	{ echo "Bail out! build-image failed: $(tail -3 "$work/build.log")"; exit 1; }

# Each step's output between markers; exit codes on their own marker lines.
cat >"$work/script" <<'EOF'
echo "DOCTOR-NOLOAD-BEGIN"
conclavectl doctor --no-load
echo "DOCTOR-NOLOAD-EXIT $?"
echo "DOCTOR-MODULES-AFTER-NOLOAD $(grep -cE '^(sch_ingress|cls_bpf) ' /proc/modules)"
echo "DOCTOR-BEGIN"
conclavectl doctor
echo "DOCTOR-EXIT $?"
echo "DOCTOR-MODULES-AFTER-LOAD $(grep -cE '^(sch_ingress|cls_bpf) ' /proc/modules)"
conclavectl doctor --json >/run/doctor.json
echo "DOCTOR-JSON-EXIT $?"
echo "DOCTOR-JSON $(cat /run/doctor.json)"
echo "DOCTOR-END"
EOF

started=$SECONDS
"$root/scripts/node-vm" --image "$work/image/node-debug.efi" --dir "$work/vm" --ca-dir "$work/ca" \
	--debug-script "$work/script" --timeout 240 >"$work/node-vm.log" 2>&1 &
vm_pid=$!
wait "$vm_pid"
rc=$?
vm_pid=
echo "# boot and doctor in $((SECONDS - started)) s"
tr -d '\r' <"$work/vm/console.log" 2>/dev/null >"$work/console"
# between BEGIN END: the lines of one step
section() { sed -n "/^$1-BEGIN\$/,/^$1-EXIT /p" "$work/console" | sed '1d;$d'; }
marker() { sed -n "s/^$1 //p" "$work/console" | head -1; }
console_tail() { tail -15 "$work/console" 2>/dev/null; }

[ $rc = 0 ] && grep -q '^DOCTOR-END$' "$work/console" &&
	ok "the debug image boots, attests and runs the doctor script" ||
	not_ok "the debug image boots, attests and runs the doctor script" "node-vm exit $rc" \
		"$(tail -3 "$work/vm/exchange.log" 2>/dev/null)" "$(console_tail)"

# --no-load: what init loaded is there; the on-demand modules and bpffs are not, and stay so.
noload=$(section DOCTOR-NOLOAD)
missing=$(awk '$1 == "MISSING" { printf "%s ", $2 }' <<<"$noload")
[ "$(marker DOCTOR-NOLOAD-EXIT)" = 1 ] && [ "$missing" = "bpf tc-bpf " ] &&
	ok "doctor --no-load exits 1 naming only bpf (no bpffs) and tc-bpf (modules not loaded)" ||
	not_ok "doctor --no-load exits 1 naming only bpf (no bpffs) and tc-bpf (modules not loaded)" \
		"exit $(marker DOCTOR-NOLOAD-EXIT), missing: $missing" "$noload"
grep -q '^MISSING tc-bpf .*module sch_ingress is not loaded.*remedy: load module sch_ingress' <<<"$noload" &&
	ok "--no-load says which module is not loaded and how to load it" ||
	not_ok "--no-load says which module is not loaded and how to load it" "$noload"
[ "$(marker DOCTOR-MODULES-AFTER-NOLOAD)" = 0 ] &&
	ok "--no-load loaded nothing (sch_ingress, cls_bpf not in /proc/modules)" ||
	not_ok "--no-load loaded nothing (sch_ingress, cls_bpf not in /proc/modules)" \
		"$(marker DOCTOR-MODULES-AFTER-NOLOAD) of them loaded"

# doctor: loads what is missing through libkmod, then every feature is ok.
out=$(section DOCTOR)
n_ok=$(grep -c '^ok ' <<<"$out")
[ "$(marker DOCTOR-EXIT)" = 0 ] && [ "$n_ok" = 7 ] && ! grep -q '^MISSING' <<<"$out" &&
	ok "doctor exits 0 with all 7 features ok" ||
	not_ok "doctor exits 0 with all 7 features ok" "exit $(marker DOCTOR-EXIT), $n_ok ok" "$out"
grep -q '^ok      tc-bpf .*module sch_ingress loaded now.*module cls_bpf loaded now' <<<"$out" &&
	[ "$(marker DOCTOR-MODULES-AFTER-LOAD)" = 2 ] &&
	ok "doctor loaded sch_ingress and cls_bpf through libkmod" ||
	not_ok "doctor loaded sch_ingress and cls_bpf through libkmod" \
		"$(grep tc-bpf <<<"$out")" "in /proc/modules: $(marker DOCTOR-MODULES-AFTER-LOAD)"
grep -q '^ok      bpf .*mounted now' <<<"$out" && ok "doctor mounted bpffs" ||
	not_ok "doctor mounted bpffs" "$(grep ' bpf ' <<<"$out")"
grep -q '^ok      wireguard .*module wireguard loaded' <<<"$out" &&
	grep -q '^ok      tpm .*module tpm_crb built in' <<<"$out" &&
	grep -q '^ok      dm-integrity .*target integrity' <<<"$out" &&
	ok "details name the module states (wireguard loaded, tpm_crb built in) and dm targets" ||
	not_ok "details name the module states (wireguard loaded, tpm_crb built in) and dm targets" "$out"

# --json agrees
marker DOCTOR-JSON >"$work/doctor.json"
names=$(jq -r '[.features[] | select(.ok) | .name] | join(" ")' "$work/doctor.json" 2>/dev/null)
[ "$(marker DOCTOR-JSON-EXIT)" = 0 ] && [ "$(jq -r .ok "$work/doctor.json" 2>/dev/null)" = true ] &&
	[ "$names" = "wireguard dm-crypt dm-integrity tpm bpf tc-bpf btf" ] &&
	ok "doctor --json exits 0: ok true, every feature ok" ||
	not_ok "doctor --json exits 0: ok true, every feature ok" \
		"exit $(marker DOCTOR-JSON-EXIT), ok features: $names" "$(head -c 600 "$work/doctor.json")"
exit 0
