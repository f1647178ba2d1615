#!/usr/bin/env bash
# The encrypted state disk, end to end (docs/disk.md): scripts/cluster up --debug with a control
# plane and two workers (QEMU TCG; each node has a 64 MiB virtio state disk, a file on the host).
# Every disk is LUKS2 + dm-integrity, opened with the key the node received after attestation.
# A worker's data survives its reboot and never appears in plaintext in the disk file; a disk
# moved to another node's VM is not opened (and not touched); a header the host rewrote to
# cipher_null is refused, not opened, not reformatted; a flipped byte in the data area makes the
# read fail with an integrity error instead of returning wrong data; a revoked node cannot
# reopen its disk after a reboot, nor does a power loss keep a worker out; the control plane's join service keeps its membership store on
# its own encrypted disk and reopens it after a reboot with the operator's recovery secret; after
# the operator's replace-disk a worker formats a blank disk under its old id, and its old disk is
# refused for good. Needs root (network namespace, taps). Prints TAP.
# shellcheck disable=SC2016 # node-side commands are single-quoted on purpose
set -u
# shellcheck source=tests/e2e/tap.bash
source "$(dirname "$0")/tap.bash"
export CONCLAVE_CLUSTER_DIR
CONCLAVE_CLUSTER_DIR=$(mktemp -d /tmp/conclave-disk-test-XXXXXX)
work=$CONCLAVE_CLUSTER_DIR/test
cluster=$root/scripts/cluster
tool=$build/tests/tools/disk_tool
name=d$$
C=$CONCLAVE_CLUSTER_DIR/$name
ns=ccl-$name
marker=CONCLAVE-DISK-MARKER-5b1e9c

cleanup() {
	"$cluster" down --name "$name" >/dev/null 2>&1
	if [ -n "${CONCLAVE_KEEP_WORK:-}" ]; then
		echo "# kept $CONCLAVE_CLUSTER_DIR"
	else
		rm -rf "$CONCLAVE_CLUSTER_DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP needs root (network namespace, taps, QEMU with a TPM)"
	exit 0
fi
for tool_ in qemu-system-x86_64 swtpm swtpm_setup jq sha256sum; do
	command -v $tool_ >/dev/null || { echo "Bail out! $tool_ missing (scripts/install-deps)"; exit 1; }
done
[ -x "$tool" ] || { echo "Bail out! $tool missing: run make first"; exit 1; }
echo "1..13"
mkdir -p "$work"
t0=$SECONDS

nx() { local i=$1; shift; "$root/scripts/node-exec" --timeout 60 "$C/nodes/$i" "$@"; }
console_of() { tr -d '\r' 2>/dev/null <"$C/nodes/$1/console.log"; }
agent_tail() { console_of "$1" | grep -a 'conclave: \|conclave-init' | tail -"${2:-3}"; }
disk_of() { echo "$C/nodes/$1/state.img"; }
members() { ip netns exec "$ns" "$ctl" cluster-status --cluster "$C/cluster" --timeout-ms 30000 --json; }
# wait_console I PATTERN [S]: until node I's console shows PATTERN
wait_console() {
	local deadline=$((SECONDS + ${3:-120}))
	until console_of "$1" | grep -aq "$2"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 1
	done
}

started=$SECONDS
if ! "$cluster" up --name "$name" --workers 2 --debug --timeout 300 >"$work/up.out" 2>&1; then
	echo "Bail out! cluster up failed: $(tail -5 "$work/up.out")"
	exit 1
fi
echo "# cluster up in $((SECONDS - started)) s"

# --- (1) every node formatted its disk; the control plane's store lives on its own ------------
fmt=0
for i in 1 2; do console_of "$i" | grep -aq 'agent: state disk [0-9a-f]* formatted' && fmt=$((fmt + 1)); done
if [ $fmt = 2 ] && console_of 0 | grep -aq 'joind: state disk /dev/vda open; membership store /var/lib/conclave/joind/members.db'; then
	ok "both workers formatted their state disk; the control plane keeps its store on its own"
else
	not_ok "both workers formatted their state disk; the control plane keeps its store on its own" \
		"formatted: $fmt of 2" "$(agent_tail 0 4)"
fi

# --- (2) the disk is what we said: LUKS2, AES-XTS, 4096-byte sectors, hmac(sha256), mounted ---
out=$(nx 1 'cryptsetup luksDump /dev/vda; mount; conclavectl status' 2>&1)
if grep -q 'cipher: aes-xts-plain64' <<<"$out" && grep -q 'integrity: hmac(sha256)' <<<"$out" &&
	grep -q 'sector: 4096' <<<"$out" && grep -q '/dev/mapper/conclave-state on /var/lib/conclave type ext4' <<<"$out" &&
	grep -q '^disk: *open: /dev/vda' <<<"$out"; then
	ok "the state disk is LUKS2 aes-xts-plain64 + hmac(sha256) in 4096-byte sectors, mounted, and status says so"
else
	not_ok "the state disk is LUKS2 aes-xts-plain64 + hmac(sha256) in 4096-byte sectors, mounted, and status says so" \
		"$(grep -i 'cipher:\|integrity:\|sector:\|conclave-state\|^disk' <<<"$out")"
fi

# --- (3) no plaintext on the host's side --------------------------------------------------------
nx 1 "for i in \$(seq 2000); do echo $marker-\$i; done >/var/lib/conclave/marker; sync; md5sum /var/lib/conclave/marker" \
	>"$work/marker.md5" 2>&1
want_md5=$(cut -d' ' -f1 "$work/marker.md5")
sqlite_on_cp=$(nx 0 'head -c 15 /var/lib/conclave/joind/members.db' 2>/dev/null)
n1=$(grep -ac "$marker" "$(disk_of 1)")
n0=$(grep -ac 'SQLite format 3' "$(disk_of 0)")
if [ ${#want_md5} = 32 ] && [ "$n1" = 0 ] && [[ $sqlite_on_cp == "SQLite format 3"* ]] && [ "$n0" = 0 ]; then
	ok "the disk files hold no plaintext: not the worker's marker, not the control plane's SQLite store"
else
	not_ok "the disk files hold no plaintext: not the worker's marker, not the control plane's SQLite store" \
		"marker written: $(cat "$work/marker.md5")" "marker hits in node 1's disk: $n1" \
		"store on node 0: '$sqlite_on_cp', 'SQLite format 3' hits in its disk: $n0"
fi

# --- (4) a worker's data survives its reboot: rejoined, opened (not formatted), read back -------
"$cluster" reboot --name "$name" --node 1 >"$work/reboot1.out" 2>&1
got=$(nx 1 'md5sum /var/lib/conclave/marker' 2>&1 | cut -d' ' -f1)
if [ "$got" = "$want_md5" ] && console_of 1 | grep -aq 'agent: state disk [0-9a-f]* opened' &&
	! console_of 1 | grep -aq 'disk: formatting'; then
	ok "after a reboot the worker rejoins, opens its disk without formatting it and reads its data back"
else
	not_ok "after a reboot the worker rejoins, opens its disk without formatting it and reads its data back" \
		"md5 $got, want $want_md5" "$(tail -2 "$work/reboot1.out")" "$(agent_tail 1 4)"
fi

# --- (4b) a power loss: the worker's QEMU and its TPM SIGKILLed; it rejoins at once ------------
# No TPM2_Shutdown: the TPM counts the loss (the AK is noDA, so no lockout) and reports its clock
# unsafe (a warning in the verdict, docs/attestation.md); what the node synced before reads back.
nx 1 'echo written-before-the-power-loss >/var/lib/conclave/crash-marker && sync' >/dev/null 2>&1
kill -9 "$(cat "$C/nodes/1/swtpm.pid")" "$(cat "$C/nodes/1/qemu.pid")" 2>/dev/null
"$cluster" stop --name "$name" --node 1 >/dev/null 2>&1
"$cluster" start --name "$name" --node 1 >"$work/crash1.out" 2>&1
got=$(nx 1 'cat /var/lib/conclave/crash-marker; md5sum /var/lib/conclave/marker' 2>&1)
echo "# join service after the power loss: $(console_of 0 | grep -a 'accepted with warnings' | tail -1)"
if grep -q '^written-before-the-power-loss$' <<<"$got" && grep -q "^$want_md5 " <<<"$got"; then
	ok "after a power loss (QEMU and swtpm SIGKILLed) the worker rejoins at once and reads back what it had synced"
else
	not_ok "after a power loss (QEMU and swtpm SIGKILLed) the worker rejoins at once and reads back what it had synced" \
		"$got" "$(tail -2 "$work/crash1.out")" "$(agent_tail 1 4)"
fi

# --- (5) a disk moved to another node's VM does not open and is left as it was ------------------
"$cluster" stop --name "$name" --node 1 >/dev/null 2>&1
"$cluster" stop --name "$name" --node 2 >/dev/null 2>&1
sum1=$(sha256sum <"$(disk_of 1)") sum2=$(sha256sum <"$(disk_of 2)")
mv "$(disk_of 1)" "$work/disk1" && mv "$(disk_of 2)" "$(disk_of 1)" && mv "$work/disk1" "$(disk_of 2)"
"$cluster" start --name "$name" --node 1 --no-wait >/dev/null 2>&1
if wait_console 1 'refused: state disk: .*belongs to node' 120; then
	"$cluster" stop --name "$name" --node 1 >/dev/null 2>&1
	if [ "$(sha256sum <"$(disk_of 1)")" = "$sum2" ]; then
		ok "node 1 booted with node 2's disk refuses it (another node's) and leaves it untouched"
	else
		not_ok "node 1 booted with node 2's disk refuses it (another node's) and leaves it untouched" "the disk changed"
	fi
else
	"$cluster" stop --name "$name" --node 1 >/dev/null 2>&1
	not_ok "node 1 booted with node 2's disk refuses it (another node's) and leaves it untouched" "$(agent_tail 1 4)"
fi
mv "$(disk_of 1)" "$work/disk2" && mv "$(disk_of 2)" "$(disk_of 1)" && mv "$work/disk2" "$(disk_of 2)"
[ "$(sha256sum <"$(disk_of 1)")" = "$sum1" ] || echo "# node 1's disk changed while it was away"

# --- (6) a header the host downgraded to cipher_null is refused: not opened, not reformatted ----
head -c 32768 "$(disk_of 2)" >"$work/header2"
"$tool" edit-header "$(disk_of 2)" '"encryption":"aes-xts-plain64","sector_size"' \
	'"encryption":"cipher_null-ecb","sector_size"' >"$work/edit.out" 2>&1
tampered=$(sha256sum <"$(disk_of 2)")
"$cluster" start --name "$name" --node 2 --no-wait >/dev/null 2>&1
if wait_console 2 'refused: state disk: .*encryption is not aes-xts-plain64' 120; then
	"$cluster" stop --name "$name" --node 2 >/dev/null 2>&1
	[ "$(sha256sum <"$(disk_of 2)")" = "$tampered" ] &&
		ok "a header downgraded to cipher_null is refused before any key is asked for, and the disk is not reformatted" ||
		not_ok "a header downgraded to cipher_null is refused before any key is asked for, and the disk is not reformatted" \
			"the disk changed after the refusal"
else
	"$cluster" stop --name "$name" --node 2 >/dev/null 2>&1
	not_ok "a header downgraded to cipher_null is refused before any key is asked for, and the disk is not reformatted" \
		"$(cat "$work/edit.out")" "$(agent_tail 2 4)"
fi
dd if="$work/header2" of="$(disk_of 2)" conv=notrunc status=none

# --- (7) both back with their own disks: nothing was lost -----------------------------------------
"$cluster" start --name "$name" --node 1 >"$work/start1.out" 2>&1
got=$(nx 1 'md5sum /var/lib/conclave/marker' 2>&1 | cut -d' ' -f1)
[ "$got" = "$want_md5" ] &&
	ok "node 1 with its own disk again reads its data back: the refusals lost nothing" ||
	not_ok "node 1 with its own disk again reads its data back: the refusals lost nothing" \
		"md5 $got, want $want_md5" "$(agent_tail 1 4)"

# --- (8) one flipped byte in the data area: the read fails with an integrity error -------------
# The middle of the disk: past the LUKS2 header (1 MiB) and the dm-integrity journal, inside the
# interleaved data and tag areas, whether or not the file system uses that block.
off=$((40 * 1024 * 1024 + 1234))
byte=$(od -An -tu1 -j$off -N1 "$(disk_of 2)" | tr -d ' ')
printf "$(printf '\\%03o' $(((byte + 1) % 256)))" | dd of="$(disk_of 2)" bs=1 seek=$off conv=notrunc status=none
"$cluster" start --name "$name" --node 2 >"$work/start2.out" 2>&1
out=$(nx 2 'dd if=/dev/mapper/conclave-state of=/dev/null bs=1M 2>&1; echo "dd exit $?"; dmesg | grep -i "integrity\|AEAD" | tail -3' 2>&1)
if grep -q 'dd exit [1-9]' <<<"$out" && grep -qi 'AEAD ERROR\|integrity' <<<"$out"; then
	ok "one byte flipped in the disk file makes reading it fail with an integrity error, not wrong data"
else
	not_ok "one byte flipped in the disk file makes reading it fail with an integrity error, not wrong data" \
		"$out" "$(tail -2 "$work/start2.out")"
fi

# --- (9) a revoked node cannot reopen its disk after a reboot ------------------------------------
members >"$work/members.json" 2>&1
id2=$(jq -r --arg ep 10.88.0.12:51820 '.members[] | select(.endpoints | index($ep)) | .node_id' "$work/members.json")
ip netns exec "$ns" "$ctl" revoke --cluster "$C/cluster" --operator-key "$C/operator.key" \
	--timeout-ms 30000 "$id2" >"$work/revoke.out" 2>&1
"$cluster" stop --name "$name" --node 2 >/dev/null 2>&1
"$cluster" start --name "$name" --node 2 --no-wait >/dev/null 2>&1
if wait_console 2 'refused: .*revoked' 120; then
	out=$(nx 2 'ls /dev/mapper; mount; conclavectl status | grep ^disk' 2>&1)
	if ! grep -q 'conclave-state' <<<"$out" && grep -q '^disk: *closed' <<<"$out"; then
		ok "revoked node $id2 is refused at its rejoin and its disk stays closed"
	else
		not_ok "revoked node $id2 is refused at its rejoin and its disk stays closed" "$out"
	fi
else
	not_ok "revoked node $id2 is refused at its rejoin and its disk stays closed" \
		"$(cat "$work/revoke.out")" "$(agent_tail 2 4)"
fi

# --- (10) the control plane reboots: recover reopens its disk, the store is intact ---------------
before=$(jq -c '[.members[] | {node_id, ek}]' "$work/members.json")
"$cluster" reboot --name "$name" --node 0 >"$work/reboot0.out" 2>&1
members >"$work/members-after.json" 2>&1
after=$(jq -c '[.members[] | {node_id, ek}]' "$work/members-after.json" 2>/dev/null)
revoked=$(jq -r --argjson id "$id2" '.members[] | select(.node_id == $id) | .active' "$work/members-after.json" 2>/dev/null)
if [ -n "$after" ] && [ "$before" = "$after" ] && [ "$revoked" = false ] &&
	console_of 0 | grep -aq 'joind: state disk /dev/vda open' && ! console_of 0 | grep -aq 'disk: formatting'; then
	ok "after a control-plane reboot, conclavectl recover reopens its disk: every member and the revocation are still there"
else
	not_ok "after a control-plane reboot, conclavectl recover reopens its disk: every member and the revocation are still there" \
		"before $before" "after $after (node $id2 active: $revoked)" "$(tail -2 "$work/reboot0.out")" "$(agent_tail 0 4)"
fi

# --- (11) a replaced disk: the operator re-registers it, the node formats the new one, the old one
# never opens again (conclavectl replace-disk, docs/disk.md)
id1=$(jq -r --arg ep 10.88.0.11:51820 '.members[] | select(.endpoints | index($ep)) | .node_id' "$work/members-after.json" 2>/dev/null)
"$cluster" stop --name "$name" --node 1 >/dev/null 2>&1
mv "$(disk_of 1)" "$work/old-disk1" # node-vm gives the VM a blank disk in its place
ip netns exec "$ns" "$ctl" replace-disk --cluster "$C/cluster" --operator-key "$C/operator.key" \
	--timeout-ms 30000 --node "$id1" >"$work/replace.out" 2>&1
"$cluster" start --name "$name" --node 1 >"$work/start1b.out" 2>&1
out=$(nx 1 'conclavectl status | grep ^disk; ls /var/lib/conclave' 2>&1)
members >"$work/members-replaced.json" 2>&1
still=$(jq -r --argjson id "${id1:-0}" '.members[] | select(.node_id == $id) | .active' "$work/members-replaced.json" 2>/dev/null)
new_ok=0
if grep -q '^disk: *open' <<<"$out" && ! grep -q marker <<<"$out" && [ "$still" = true ] &&
	console_of 1 | grep -aq 'disk: formatting'; then
	new_ok=1
fi
"$cluster" stop --name "$name" --node 1 >/dev/null 2>&1
mv "$(disk_of 1)" "$work/new-disk1" && cp "$work/old-disk1" "$(disk_of 1)"
old_sum=$(sha256sum <"$(disk_of 1)")
"$cluster" start --name "$name" --node 1 --no-wait >/dev/null 2>&1
old_refused=0
wait_console 1 'refused: .*different disk' 120 && old_refused=1
"$cluster" stop --name "$name" --node 1 >/dev/null 2>&1
[ "$(sha256sum <"$(disk_of 1)")" = "$old_sum" ] || old_refused=0
mv "$work/new-disk1" "$(disk_of 1)"
"$cluster" start --name "$name" --node 1 >"$work/start1c.out" 2>&1
if [ $new_ok = 1 ] && [ $old_refused = 1 ]; then
	ok "after replace-disk node $id1 keeps its id, formats and opens a blank disk; its old disk is refused and left untouched"
else
	not_ok "after replace-disk node $id1 keeps its id, formats and opens a blank disk; its old disk is refused and left untouched" \
		"replace-disk: $(cat "$work/replace.out")" "new disk: $new_ok ($out; active: $still)" \
		"old disk refused and untouched: $old_refused" "$(agent_tail 1 4)"
fi

# --- (12) no node logged an error it should not have -----------------------------------------------
bad=$(for i in 0 1; do console_of "$i" | grep -a 'Kernel panic\|BUG:\|segfault\|exited (signal'; done)
[ -z "$bad" ] && ok "no panic, BUG or crashed service on the control plane or node 1" ||
	not_ok "no panic, BUG or crashed service on the control plane or node 1" "$bad"

echo "# test_disk took $((SECONDS - t0)) s"
