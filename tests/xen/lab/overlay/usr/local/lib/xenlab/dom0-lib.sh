# Helpers for dom0 test scripts (bash). The lab's dom0 init sources this before running the test
# (XENLAB_DOM0_TEST, copied to /xenlab/test.sh, or the built-in /root/xenlab-dom0-test.sh).
# Everything a test prints goes to hvc0 -> Xen console -> the one serial log on the host.
# Result files written with `result` land in /xenlab/results, which the host copies out of
# dom0.img after the run (30-run-xen-qemu.sh -> $XENLAB_DIR/results/<run>/); each result is also
# printed on the serial log between XENLAB-RESULT-BEGIN/END lines.
XENLAB_RESULTS=${XENLAB_RESULTS:-/xenlab/results}
DOMU_NAME=${DOMU_NAME:-domu}
DOMU_CFG=${DOMU_CFG:-/etc/xen/domu.cfg}
xenlab_opt() { sed -n "s/.*xenlab\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
DOMU_INIT=${DOMU_INIT:-$(xenlab_opt domu_init)}; DOMU_INIT=${DOMU_INIT:-shell}
DOMU_ID=

# m MESSAGE: a marker line "XENLAB-DOM0 [uptime]: MESSAGE"
m() { echo "XENLAB-DOM0 [$(cut -d' ' -f1 /proc/uptime)s]: $*"; }

# result NAME [VALUE...]: write VALUE (or stdin) to $XENLAB_RESULTS/NAME, print it, sync
result() {
  local name=$1 f=$XENLAB_RESULTS/$1; shift
  mkdir -p "$(dirname "$f")"
  if [ $# -gt 0 ]; then printf '%s\n' "$*" > "$f"; else cat > "$f"; fi
  echo "XENLAB-RESULT-BEGIN $name"; cat "$f"; echo "XENLAB-RESULT-END $name"
  sync
}

domid() { xl domid "${1:-$DOMU_NAME}" 2>/dev/null; }

# xs_wait PATH TIMEOUT [VALUE]: until PATH exists (and reads VALUE); 0 = seen, 1 = timeout
xs_wait() {
  local t0=$SECONDS v
  while [ $((SECONDS - t0)) -lt "$2" ]; do
    if v=$(xenstore-read "$1" 2>/dev/null) && { [ $# -lt 3 ] || [ "$v" = "$3" ]; }; then
      m "xs_wait $1: seen after $((SECONDS - t0))s${3:+ (value $3)}"; return 0
    fi
    sleep 1
  done
  m "xs_wait $1: TIMEOUT after $2s${3:+ (wanted $3, have '$(xenstore-read "$1" 2>/dev/null)')}"; return 1
}

# xs_wait_gone PATH TIMEOUT: until PATH no longer exists
xs_wait_gone() {
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$2" ]; do
    xenstore-exists "$1" 2>/dev/null || { m "xs_wait_gone $1: gone after $((SECONDS - t0))s"; return 0; }
    sleep 1
  done
  m "xs_wait_gone $1: TIMEOUT after $2s"; return 1
}

# xs_dump DOMID [NAME]: xenstore-ls -f /local/domain/DOMID (piped: full lines) -> result NAME
xs_dump() { xenstore-ls -f "/local/domain/$1" 2>&1 | result "${2:-xenstore-$1}"; }

# write_udid DOMID: a fresh unique-domain-id, as xapi's xenopsd writes on create/resume (xl does not)
write_udid() {
  local u; u=$(cat /proc/sys/kernel/random/uuid)
  xenstore-write "/local/domain/$1/unique-domain-id" "$u" && m "unique-domain-id of $1 = $u"
}

# domu_console: follow the guest's console log (xenconsoled --log=guest) onto the serial log
domu_console() {
  touch "/var/log/xen/console/guest-$DOMU_NAME.log"
  (tail -n +1 -F "/var/log/xen/console/guest-$DOMU_NAME.log" 2>/dev/null | sed -u "s/^/  [domU-live] /") &
}

# domu_create [CFG] [xl VAR=VALUE...]: create the guest with the init chosen on the host
# (XENLAB_DOMU_INIT=shell|systemd -> xenlab.domu_init=); sets DOMU_ID
domu_create() {
  local cfg=${1:-$DOMU_CFG} init extra; [ $# -gt 0 ] && shift
  case $DOMU_INIT in
    systemd) init="init=/lib/systemd/systemd systemd.journald.forward_to_console=1 systemd.show_status=false" ;;
    *)       init="init=/sbin/xenlab-domu-init" ;;
  esac
  extra="root=/dev/xvda rw console=hvc0 $init $(xenlab_opt domu_extra | tr ':' ' ')"
  m "xl create $cfg (domU init: $DOMU_INIT)"
  timeout 120 xl create "$cfg" "extra=\"$extra\"" "$@"; local rc=$?
  DOMU_ID=$(domid); m "xl create rc=$rc domid=$DOMU_ID"
  return $rc
}

# Hotplug (device ids: vif N = xl network-list DEVID; vbd = its vdev)
vif_attach() { timeout 90 xl network-attach "$DOMU_NAME" bridge=xenbr0 "$@"; local rc=$?; m "xl network-attach $* rc=$rc"; return $rc; }
vif_detach() { timeout 90 xl network-detach "$DOMU_NAME" "$1"; local rc=$?; m "xl network-detach $1 rc=$rc"; return $rc; }
vbd_attach() { timeout 90 xl block-attach "$DOMU_NAME" "format=raw, vdev=$2, access=rw, script=block, target=$1"; local rc=$?; m "xl block-attach $1 $2 rc=$rc"; return $rc; }
vbd_detach() { timeout 90 xl block-detach "$DOMU_NAME" "$1"; local rc=$?; m "xl block-detach $1 rc=$rc"; return $rc; }

# domu_save_restore [FILE]: xl save + xl restore; sets DOMU_ID (a new domid)
domu_save_restore() {
  local f=${1:-/srv/$DOMU_NAME.save} rc
  timeout 180 xl save "$DOMU_NAME" "$f"; rc=$?; m "xl save rc=$rc"; [ $rc = 0 ] || return $rc
  timeout 180 xl restore "$f"; rc=$?; rm -f "$f"
  DOMU_ID=$(domid); m "xl restore rc=$rc domid=$DOMU_ID"; return $rc
}

# domu_migrate_local: live migration to the same host (no ssh: -s '' runs the "host" argument
# as the receiver command); sets DOMU_ID (a new domid)
domu_migrate_local() {
  timeout 240 xl migrate -s '' "$DOMU_NAME" 'xl migrate-receive'; local rc=$?
  DOMU_ID=$(domid); m "xl migrate rc=$rc domid=$DOMU_ID"; return $rc
}

# domu_shutdown [TIMEOUT]: clean shutdown, destroy after TIMEOUT (default 60) seconds
domu_shutdown() {
  domid >/dev/null || return 0
  timeout "${1:-60}" xl shutdown -w "$DOMU_NAME" >/dev/null 2>&1; local rc=$?
  [ $rc = 0 ] || { xl destroy "$DOMU_NAME" 2>/dev/null; m "xl shutdown rc=$rc -> destroyed"; return 0; }
  m "xl shutdown rc=0"
}

# domu_log [N]: the last N lines of the guest's console log
domu_log() { tail -n "${1:-200}" "/var/log/xen/console/guest-$DOMU_NAME.log" 2>/dev/null; }
