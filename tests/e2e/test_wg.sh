#!/usr/bin/env bash
# WireGuard for real: the host kernel has none, so a debug node VM (QEMU TCG + OVMF + swtpm,
# through scripts/node-vm) runs /usr/bin/wg_selftest (tests/tools/wg_selftest.c) after its
# attestation step: wg0/wg1 over rtnetlink, a handshake on 127.0.0.1, 1000 peers split across
# messages and read back from a multi-part dump, 500 removed, a peer cut between its allowed
# IPs. Its TAP lines, read from the serial console, become this test's. Needs root.
set -u
# shellcheck source=tests/e2e/tap.bash
source "$(dirname "$0")/tap.bash"
work=$(mktemp -d /tmp/conclave-wg-test-XXXXXX)
vm_pid=
cleanup() {
	[ -n "$vm_pid" ] && kill "$vm_pid" 2>/dev/null
	wait
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in qemu-system-x86_64 swtpm swtpm_setup objcopy; do
	command -v $tool >/dev/null || { echo "Bail out! $tool missing (scripts/install-deps)"; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "1..0 # SKIP needs root (QEMU with a TPM and a node image)"; exit 0; }
"$root/scripts/build-image" --build "$build" --out "$work/image" >"$work/build.log" 2>&1 ||
	{ echo "Bail out! build-image failed: $(tail -3 "$work/build.log")"; exit 1; }
"$root/scripts/node-vm" --prepare-only --dir "$work/vm" --ca-dir "$work/ca" >/dev/null ||
	{ echo "Bail out! cannot provision swtpm"; exit 1; }

# The node stays up after attesting (no 20 s power-off window), runs the tool, powers off.
cat >"$work/debug.sh" <<'EOF'
echo "# wg_selftest starting"
/usr/bin/wg_selftest 2>&1
echo "# wg_selftest exit $?"
poweroff -f
EOF
started=$SECONDS
timeout 400 "$root/scripts/node-vm" --image "$work/image/node-debug.efi" --dir "$work/vm" \
	--ca-dir "$work/ca" --debug-script "$work/debug.sh" --stay-up --timeout 240 \
	>"$work/node-vm.log" 2>&1 &
vm_pid=$!
wait "$vm_pid"
rc=$?
vm_pid=
echo "# VM run in $((SECONDS - started)) s (node-vm exit $rc)"

console=$work/vm/console.log
tr -d '\r' <"$console" 2>/dev/null >"$work/console.txt"
if grep -q "running the host's opt/conclave/debug-script" "$work/console.txt"; then
	ok "the debug node boots, attests and runs the debug script"
else
	not_ok "the debug node boots, attests and runs the debug script" "node-vm exit $rc" \
		"$(tail -3 "$work/vm/exchange.log" 2>/dev/null)" \
		"$(grep -a conclave-init "$work/console.txt" | tail -3)"
fi

# The tool's TAP, renumbered into ours; its comments follow as comments.
plan=$(grep -aoE '^1\.\.[0-9]+$' "$work/console.txt" | head -1 | cut -d. -f3)
seen=0
tap_re='^(not )?ok [0-9]+ - (.*)$'
while IFS= read -r line; do
	if [[ $line =~ $tap_re ]]; then
		seen=$((seen + 1))
		if [ -z "${BASH_REMATCH[1]}" ]; then
			ok "in the VM: ${BASH_REMATCH[2]}"
		else
			not_ok "in the VM: ${BASH_REMATCH[2]}"
		fi
	else
		echo "# vm: ${line#\# }"
	fi
done < <(sed -n '/^# wg_selftest starting/,/^# wg_selftest exit/p' "$work/console.txt" |
	grep -aE '^(ok [0-9]+ - |not ok [0-9]+ - |# )')
if [ -n "$plan" ] && [ "$seen" -eq "$plan" ]; then
	ok "wg_selftest reported all $plan of its checks"
else
	not_ok "wg_selftest reported all ${plan:-?} of its checks" "seen $seen"
fi
if grep -q '^# wg_selftest done' "$work/console.txt"; then
	ok "wg_selftest ran to the end"
else
	not_ok "wg_selftest ran to the end" "$(tail -5 "$work/console.txt")"
fi
echo "1..$n"
