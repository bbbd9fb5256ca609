#!/bin/bash
# xe-oneshot's Xen tier, host side: build the lab (cached), install the package into the guest
# as a user would, boot Xen + dom0 + the guest under qemu, run dom0-test.sh, copy the results out.
# Prints "log: FILE" and "results: DIR"; exit status = the dom0 test's (124 timeout).
# Run by tests/test_xen_guest.py (make test-xen); needs root, qemu-system-x86, mmdebstrap,
# e2fsprogs (debugfs), cpio, and the host's Debian apt sources.
#
#   XE_ONESHOT_XEN_CACHE=DIR    the lab's work directory (default .cache/xenlab in the checkout):
#                               rootfs keyed by its package list and build script; the images by
#                               a hash of everything that goes into them (rebuilt when it changes)
#   XE_ONESHOT_XEN_SCENARIOS="boot rerun"   only these scenarios (default: all)
#   XE_ONESHOT_XEN_SOURCE=DIR   install the package from this tree instead (e.g. an older
#                               `git archive`, to show a scenario failing before a fix)
#   XENLAB_TIMEOUT=1500         seconds before qemu is killed
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
LAB=$REPO/tests/xen/lab
export XENLAB_DIR=${XE_ONESHOT_XEN_CACHE:-$REPO/.cache/xenlab}
# Debian's packages for what the package depends on; dbus + networkd-dispatcher: the
# dispatcher hook is how a systemd-networkd guest learns of new addresses
export XENLAB_DOMU_PACKAGES="systemd python3-psutil python3-sh python3-xattr dbus networkd-dispatcher dnsmasq-base"
mkdir -p "$XENLAB_DIR"
exec 9>"$XENLAB_DIR/lock"
flock 9    # one lab at a time (the images are shared)
B=$XENLAB_DIR/build
"$LAB/10-build-rootfs.sh"
# mmdebstrap may leave the build's /proc mounted in the rootfs (seen once): never copy it
for m in proc sys dev/pts dev; do
  if mountpoint -q "$B/rootfs/$m"; then umount -l "$B/rootfs/$m"; fi
done
"$LAB/15-domu-initrd.sh"

# the package, installed the way a user would (make install; the units postinst enables)
STAGE=$XENLAB_DIR/stage
rm -rf "$STAGE"
make -C "${XE_ONESHOT_XEN_SOURCE:-$REPO}" --no-print-directory install DESTDIR="$STAGE" PREFIX=/usr >/dev/null
cp -a "$REPO/tests/xen/guest/." "$STAGE/"
export XENLAB_DOMU_OVERLAY=$STAGE
export XENLAB_DOMU_ENABLE="xe-oneshot.service xe-oneshot-ephemeral.timer xetier-guest.service"

# the images: rebuilt when anything that goes into them changed
KEY=$( {
  cat "$B/rootfs.stamp"; sha256sum < "$B/rootfs/boot/initrd-domu.img"
  (cd "$LAB" && find 20-make-images.sh lib.sh overlay overlay-domu -type f -print0 | sort -z | xargs -0 sha256sum)
  (cd "$STAGE" && find . ! -path '*/__pycache__*' -printf '%p %m %l\n' | LC_ALL=C sort)
  (cd "$STAGE" && find . -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum)
  echo "$XENLAB_DOMU_ENABLE"; } | sha256sum | cut -c1-16)
if [ "$(cat "$B/images.key" 2>/dev/null)" = "$KEY" ] && [ -f "$B/dom0.pristine.img" ]; then
  echo "xetier: images up to date ($KEY)" >&2
  cp --sparse=always "$B/dom0.pristine.img" "$B/dom0.img"
else
  echo "xetier: building the images ($KEY)" >&2
  rm -f "$B/images.key" "$B/dom0.pristine.img"
  "$LAB/20-make-images.sh" 2>/dev/null
  cp --sparse=always "$B/dom0.img" "$B/dom0.pristine.img"
  echo "$KEY" > "$B/images.key"
fi

# a real PCI NIC for dom0 to pass through to the guest as an SR-IOV VF (scenario sriov): Xen
# assigns a device only with an IOMMU (xc_assign_device: EOPNOTSUPP without), so qemu's VT-d
# (q35); XENLAB_QEMU_EXTRA= (empty) boots the plain pc machine without them
export XENLAB_QEMU_EXTRA=${XENLAB_QEMU_EXTRA-"-machine q35 -device intel-iommu -device e1000,mac=00:16:3e:00:00:0a"}
export XENLAB_DOMU_INIT=systemd XENLAB_DOM0_TEST=$REPO/tests/xen/dom0-test.sh
export XENLAB_TIMEOUT=${XENLAB_TIMEOUT:-1500}
if [ -n "${XE_ONESHOT_XEN_SCENARIOS:-}" ]; then
  export XENLAB_DOM0_EXTRA="${XENLAB_DOM0_EXTRA:-} xenlab.scenarios=$(echo "$XE_ONESHOT_XEN_SCENARIOS" | tr ' ,' '::')"
fi
exec "$LAB/30-run-xen-qemu.sh"
