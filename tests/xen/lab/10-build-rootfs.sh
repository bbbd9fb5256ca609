#!/bin/bash
# Build the Debian rootfs directory shared by dom0 and the domU: Xen 4.17 userland + hypervisor,
# the Debian kernel (for modules + initrd), udev, bridge tools, python3, e2fsprogs,
# plus $XENLAB_DOMU_PACKAGES (space- or comma-separated, e.g. "systemd python3-psutil").
# The package mirror is the host's own: its apt sources (sources.list, sources.list.d/*.list and
# *.sources) for the suites in XENLAB_APT_SUITES (default: just $XENLAB_SUITE, the point release)
# are fed to mmdebstrap on stdin. Not the -security/-updates suites by default: with their Xen
# 4.17.7 and kernel 6.1.0-56, `xl migrate` after an `xl save`/`xl restore` fails ("Failed to enable
# logdirty: 95,22,0"); the point release's Xen 4.17.5 and kernel 6.1.0-50 pass. To try them:
# XENLAB_APT_SUITES="bookworm bookworm-updates bookworm-security".
# Output: $XENLAB_DIR/build/rootfs (+ rootfs.stamp). Skipped when the stamp matches (same suites and
# package list) unless XENLAB_FORCE=1.
# Usage: [XENLAB_DIR=DIR] [XENLAB_DOMU_PACKAGES=...] 10-build-rootfs.sh [DIR]
set -euo pipefail
[ $# -ge 1 ] && XENLAB_DIR=$1
. "$(dirname "$0")/lib.sh"
BASE=xen-utils-4.17,xen-hypervisor-4.17-amd64,xenstore-utils,linux-image-amd64,initramfs-tools,udev,kmod,iproute2,bridge-utils,busybox-static,python3,procps,iputils-ping,less,netbase,e2fsprogs
EXTRA=$(echo "${XENLAB_DOMU_PACKAGES:-}" | tr ', ' '\n\n' | sed '/^$/d' | sort -u | paste -sd, -)
SUITES=${XENLAB_APT_SUITES:-$XENLAB_SUITE}
# the key of the cached rootfs: suites, packages, and this script itself
STAMP="suites=$SUITES packages=$BASE${EXTRA:+,$EXTRA} script=$(sha256sum "$0" | cut -c1-16)"
if [ -z "${XENLAB_FORCE:-}" ] && [ -f "$B/rootfs.stamp" ] && [ "$(cat "$B/rootfs.stamp")" = "$STAMP" ] && [ -x "$R/usr/sbin/xl" ]; then
  xenlab_say "rootfs up to date ($R)"; exit 0
fi

# The host's apt sources for this suite, as one-line entries (deb822 stanzas are converted).
host_sources() {
  python3 - $SUITES <<'PY'
import glob, re, sys
want = set(sys.argv[1:])
out = []
files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")) \
        + sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
for f in files:
    try:
        text = open(f).read()
    except OSError:
        continue
    if f.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            kv = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                k, v = line.split(":", 1)
                kv[k.strip().lower()] = v.split()
            if kv.get("enabled", ["yes"])[0].lower() == "no" or "deb" not in kv.get("types", []):
                continue
            for uri in kv.get("uris", []):
                for s in kv.get("suites", []):
                    if s in want:
                        out.append("deb %s %s %s" % (uri, s, " ".join(kv.get("components", ["main"]))))
    else:
        for line in text.splitlines():
            w = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(w) >= 3 and w[0] == "deb" and w[2] in want:
                out.append(" ".join(w))
if not out:
    sys.exit("no apt source for %s in the host's apt configuration" % " ".join(sorted(want)))
print("\n".join(dict.fromkeys(out)))
PY
}
SRC=$(host_sources)
xenlab_say "apt sources (from the host):"; echo "$SRC" | sed 's/^/  /' >&2
rm -rf "$R" "$B/rootfs.stamp"
echo "$SRC" | mmdebstrap --variant=minbase --include="$BASE${EXTRA:+,$EXTRA}" \
  --aptopt='APT::Install-Recommends "false"' "$XENLAB_SUITE" "$R" -
echo "$STAMP" > "$B/rootfs.stamp"
xenlab_say "rootfs ready: $R ($(du -sh "$R" | cut -f1))"
