#!/bin/bash
# Turn the rootfs directory into bootable images:
#   build/xen-4.17-amd64            uncompressed multiboot Xen (for qemu -kernel)
#   build/vmlinuz, build/initrd.img dom0 kernel + initramfs (Debian's, MODULES=most)
#   build/domu-tree/                rootfs + overlay/ + overlay-domu/ + $XENLAB_DOMU_OVERLAY + hook
#   build/dom0.img                  raw ext4 dom0 root (4G sparse); holds /srv/domu.img, the domU's
#                                   raw ext4 root (XENLAB_DOMU_SIZE, default 1536M)
# Env:
#   XENLAB_DOMU_OVERLAY=DIR   copied into the domU tree only (after the lab's own files)
#   XENLAB_DOMU_HOOK=CMD      run as `CMD <domU tree>` after the overlay (e.g. a `make install`)
#   XENLAB_DOMU_ENABLE="u1 u2"  systemd units enabled in the domU tree (systemctl --root)
#   XENLAB_DOMU_IP=10.99.0.2/24 the guest's static address (dom0's bridge is 10.99.0.1/24)
#   XENLAB_DOMU_IP2=10.99.0.3/24 a hot-plugged second vif with mac 00:16:3e:00:00:03 (systemd mode)
#   XENLAB_DOM0_OVERLAY=DIR   copied into dom0 only
# Re-run after editing overlay/ or the project installed into the guest (each run writes dom0.img).
# Usage: [XENLAB_DIR=DIR] 20-make-images.sh [DIR]
set -euo pipefail
[ $# -ge 1 ] && XENLAB_DIR=$1
. "$(dirname "$0")/lib.sh"
KVER=$(ls "$R/lib/modules" | sort -V | tail -1)
DT=$B/domu-tree; D0=$B/dom0-tree
copy_in() { tar -C "$1" -cf - . | tar -C "$2" -xf - --keep-directory-symlink --no-same-owner; }
ln -sf "vmlinuz-$KVER" "$R/boot/vmlinuz"; ln -sf "initrd.img-$KVER" "$R/boot/initrd.img"
grep -q '^XENCONSOLED_ARGS' "$R/etc/default/xen" || echo 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"' >> "$R/etc/default/xen"
echo xenlab > "$R/etc/hostname"

# --- domU tree ---
rm -rf "$DT"; mkdir -p "$DT"; cp -a --one-file-system --reflink=auto "$R/." "$DT/"
copy_in "$XENLAB_HOME/overlay" "$DT"
copy_in "$XENLAB_HOME/overlay-domu" "$DT"
mkdir -p "$DT/etc/xenlab"
echo "XENLAB_DOMU_IP=${XENLAB_DOMU_IP:-10.99.0.2/24}" > "$DT/etc/xenlab/domu.env"
sed -i "s#^Address=[0-9.]*/.*#Address=${XENLAB_DOMU_IP:-10.99.0.2/24}#" "$DT/etc/systemd/network/10-xenlab.network"
sed -i "s#^Address=[0-9.]*/.*#Address=${XENLAB_DOMU_IP2:-10.99.0.3/24}#" "$DT/etc/systemd/network/11-xenlab-vif1.network"
echo domu > "$DT/etc/hostname"
if [ -x "$DT/lib/systemd/systemd" ]; then
  # systemd mode (domU kernel cmdline init=/lib/systemd/systemd): networkd for the static address,
  # the lab's guest service; nothing that would download or scrub under emulation, nor what
  # only serves logins (logind, utmp) or binfmt: CPU time the boot does not have under TCG
  systemctl --root="$DT" enable systemd-networkd.service systemd-networkd-wait-online.service xenlab-guest.service >/dev/null 2>&1 || true
  systemctl --root="$DT" mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer dpkg-db-backup.timer getty.target getty-static.service getty@tty1.service serial-getty@hvc0.service \
    systemd-timesyncd.service xen.service xendomains.service \
    systemd-logind.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
    systemd-update-utmp.service systemd-update-utmp-runlevel.service >/dev/null 2>&1 || true
fi
[ -n "${XENLAB_DOMU_OVERLAY:-}" ] && copy_in "$XENLAB_DOMU_OVERLAY" "$DT"
[ -n "${XENLAB_DOMU_HOOK:-}" ] && { xenlab_say "domU hook: $XENLAB_DOMU_HOOK $DT"; sh -c "$XENLAB_DOMU_HOOK \"\$1\"" hook "$DT"; }
if [ -n "${XENLAB_DOMU_ENABLE:-}" ]; then
  # shellcheck disable=SC2086
  systemctl --root="$DT" enable $XENLAB_DOMU_ENABLE
fi
rm -rf "$DT/srv/"*.img
mkfs.ext4 -q -F -L domuroot -d "$DT" "$B/domu.img" "${XENLAB_DOMU_SIZE:-1536M}"

# --- dom0 tree (the domU image inside, at /srv/domu.img) ---
rm -rf "$D0"; mkdir -p "$D0"; cp -a --one-file-system --reflink=auto "$R/." "$D0/"
copy_in "$XENLAB_HOME/overlay" "$D0"
[ -n "${XENLAB_DOM0_OVERLAY:-}" ] && copy_in "$XENLAB_DOM0_OVERLAY" "$D0"
echo dom0 > "$D0/etc/hostname"
mkdir -p "$D0/srv" "$D0/xenlab/results"
mv "$B/domu.img" "$D0/srv/domu.img"
rm -f "$B/dom0.img"; mkfs.ext4 -q -F -L dom0root -d "$D0" "$B/dom0.img" "${XENLAB_DOM0_SIZE:-4G}"
rm -rf "$D0" "$DT"
zcat "$R/boot/xen-4.17-amd64.gz" > "$B/xen-4.17-amd64"
cp "$R/boot/vmlinuz-$KVER" "$B/vmlinuz"; cp "$R/boot/initrd.img-$KVER" "$B/initrd.img"
ls -ls "$B" >&2
