#!/usr/bin/env bash
# scripts/cluster: two clusters side by side (3 node VMs), status, teardown of one while the
# other runs, a cluster whose node fails to become ready, and an interrupted `up`. Prints TAP.
# Needs root (network namespaces, tap devices).
set -u
# shellcheck source=tests/e2e/tap.bash
source "$(dirname "$0")/tap.bash"
export CONCLAVE_CLUSTER_DIR
CONCLAVE_CLUSTER_DIR=$(mktemp -d /tmp/conclave-cluster-test-XXXXXX)
work=$CONCLAVE_CLUSTER_DIR/test
cluster=$root/scripts/cluster
a=a$$ b=b$$ c=c$$ d=d$$
cleanup() {
	local n
	for n in $a $b $c $d; do "$cluster" down --name "$n" >/dev/null 2>&1; done
	rm -rf "$CONCLAVE_CLUSTER_DIR"
}
trap cleanup EXIT

if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP scripts/cluster needs root"
	exit 0
fi
echo "1..12"
mkdir -p "$work"
"$root/scripts/build-image" --build "$build" --out "$work/image" >"$work/build.log" 2>&1 ||
	{ echo "Bail out! build-image failed"; exit 1; }
image=$work/image/node.efi

started=$SECONDS
"$cluster" up --name $a --workers 2 --image "$image" >"$work/a.out" 2>&1 &
pa=$!
"$cluster" up --name $b --workers 1 --image "$image" >"$work/b.out" 2>&1 &
pb=$!
wait $pa; ra=$?
wait $pb; rb=$?
echo "# two clusters (3 nodes) up in $((SECONDS - started)) s"

lines_ok() { # OUT N PREFIX: N lines "PREFIX-nodeI 10.88.0.X /path/console.log", logs exist
	local i=0 nm addr log
	while read -r nm addr log; do
		[ "$nm" = "$3-node$i" ] && [[ $addr =~ ^10\.88\.0\.[0-9]+$ ]] && [ -f "$log" ] || return 1
		i=$((i + 1))
	done <"$1"
	[ $i -eq "$2" ]
}
[ $ra -eq 0 ] && lines_ok "$work/a.out" 2 $a &&
	ok "up --workers 2 boots both nodes, prints name, underlay address and console log" ||
	not_ok "up --workers 2 boots both nodes, prints name, underlay address and console log" \
		"exit $ra" "$(cat "$work/a.out")"
[ $rb -eq 0 ] && lines_ok "$work/b.out" 1 $b &&
	ok "a second cluster comes up beside it" ||
	not_ok "a second cluster comes up beside it" "exit $rb" "$(cat "$work/b.out")"

running=$("$cluster" status --name $a 2>&1 | grep -c ' running ')
[ "$running" = 2 ] && ok "status shows both nodes running" ||
	not_ok "status shows both nodes running" "$("$cluster" status --name $a 2>&1)"
reach=1
for addr in $(awk '{ print $2 }' "$work/a.out"); do
	ip netns exec ccl-$a ping -c 1 -W 2 "$addr" >/dev/null 2>&1 || reach=0
done
[ $reach = 1 ] && ok "every node answers on its underlay address inside the cluster's namespace" ||
	not_ok "every node answers on its underlay address inside the cluster's namespace"
grep -q "verdict: PASS" "$CONCLAVE_CLUSTER_DIR/$a/nodes/0/verdict" 2>/dev/null &&
	ok "each node's quote verified against the cluster's predicted, signed policy" ||
	not_ok "each node's quote verified against the cluster's predicted, signed policy"

# The clusters share no trust: A's node is refused by B's CA.
A=$CONCLAVE_CLUSTER_DIR/$a B=$CONCLAVE_CLUSTER_DIR/$b
"$ctl" verify-evidence --policy "$B/policy.signed" --policy-pubkey "$B/signer.pub" --ca "$B/trust.pem" \
	--nonce "$(cat "$A/nodes/0/nonce")" --credential "$A/nodes/0/cred" "$A/nodes/0/ev1" >"$work/x" 2>&1
[ $? -eq 1 ] && grep -q "failed checks:.*ek-certificate" "$work/x" &&
	ok "clusters have separate EK CAs (one's node is refused by the other's verifier)" ||
	not_ok "clusters have separate EK CAs" "$(grep verdict "$work/x")"

"$cluster" down --name $a >/dev/null 2>&1
left=$(pgrep -f "$A/" | wc -l)
! ip netns list | grep -qw "ccl-$a" && [ ! -d "$A" ] && [ "$left" = 0 ] &&
	ok "down removes the namespace, the state and every VM and swtpm" ||
	not_ok "down removes the namespace, the state and every VM and swtpm" "processes left: $left"
[ "$("$cluster" status --name $b 2>&1 | grep -c ' running ')" = 1 ] &&
	ok "the other cluster keeps running" || not_ok "the other cluster keeps running"
"$cluster" down --name $b >/dev/null 2>&1

# A node that cannot become ready: the image builder's signed policy is for the good image, the
# nodes boot one whose initramfs has one byte changed.
cp "$image" "$work/tampered.efi"
initrd_of "$image" "$work/node.cpio"
at=$(grep -obUa 'VARIANT_ID=production' "$work/node.cpio" | head -1 | cut -d: -f1)
printf 'P' | dd of="$work/tampered.efi" bs=1 seek=$(($(section_offset "$image" .initrd) + at + 11)) \
	conv=notrunc status=none
"$ctl" policy keygen --out "$work/builder" >/dev/null
"$ctl" measure --out "$work/m.json" "$image" >/dev/null
"$ctl" policy sign --key "$work/builder.key" --in "$work/m.json" --out "$work/policy.signed"
"$cluster" up --name $c --workers 1 --image "$work/tampered.efi" --policy "$work/policy.signed" \
	--policy-pubkey "$work/builder.pub" >"$work/c.out" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "$c-node0 failed: refused" "$work/c.out" &&
	ok "up exits 1 and names the node when a node's quote is refused" ||
	not_ok "up exits 1 and names the node when a node's quote is refused" "exit $rc" "$(cat "$work/c.out")"
! ip netns list | grep -qw "ccl-$c" && [ ! -d "$CONCLAVE_CLUSTER_DIR/$c" ] &&
	[ -f "$CONCLAVE_CLUSTER_DIR/$c-logs/0/console.log" ] &&
	ok "a failed up tears down and keeps the console logs" ||
	not_ok "a failed up tears down and keeps the console logs"

# Interrupted: TERM (what Ctrl-C's INT also triggers) while nodes boot tears everything down.
"$cluster" up --name $d --workers 1 --image "$image" >"$work/d.out" 2>&1 &
pd=$!
for _ in $(seq 100); do [ -f "$CONCLAVE_CLUSTER_DIR/$d/nodes/0/node-vm.pid" ] && break; sleep 0.1; done
sleep 2
kill -TERM $pd
wait $pd; rd=$?
sleep 1
[ $rd -ne 0 ] && ! ip netns list | grep -qw "ccl-$d" && [ ! -d "$CONCLAVE_CLUSTER_DIR/$d" ] &&
	[ "$(pgrep -f "$CONCLAVE_CLUSTER_DIR/$d/" | wc -l)" = 0 ] &&
	ok "an interrupted up tears everything down" ||
	not_ok "an interrupted up tears everything down" "exit $rd" "$(cat "$work/d.out")"
grep -q "logs kept in" "$work/d.out" && ok "an interrupted up says where the console logs are" ||
	not_ok "an interrupted up says where the console logs are" "$(cat "$work/d.out")"
