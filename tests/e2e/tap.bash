# TAP helpers for the e2e tests (sourced; named .bash so scripts/run-tests does not run it).
root=${CONCLAVE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
build=${CONCLAVE_BUILD:-$root/build}
# shellcheck disable=SC2034 # used by the tests that source this
ctl=$build/conclavectl
# shellcheck source=tests/lib/tap.bash
. "$root/tests/lib/tap.bash"
# check NAME CMD...: ok if CMD succeeds; on failure show its output
check() {
	local name=$1 out; shift
	if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$(tail -5 <<<"$out")"; fi
}
# The initramfs inside a UKI (uncompressed newc cpio).
initrd_of() { objcopy -O binary --only-section=.initrd "$1" "$2"; }
# Byte offset of a section's raw data in a PE file.
section_offset() { # UKI SECTION
	objdump -hw "$1" | awk -v s="$2" '$2 == s { print $6 }' | { read -r h; echo $((0x$h)); }
}
