"""The installed udev rules under `udevadm test`, alone (every other rules directory
hidden), in a private mount namespace: the host's rules, udev database and CPUs are
untouched. Real devices: a veth pair in a network namespace, the host's disk, a loop
device, a memory block, a CPU (its `online` file replaced by a file of ours)."""

import re
import shlex
from pathlib import Path
from typing import List

import pytest

from tests.support.integration_support import UNIT_NAME, in_namespace, need, stage

START = "/bin/systemctl --no-block start "


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    need("make", "udevadm", "unshare", "ip")
    root = stage(tmp_path_factory.mktemp("stage"))
    return root / "usr/lib/udev/rules.d"


def udev_test(rules: Path, tmp: Path, action: str, syspath: str, setup: str = "",
              netns: bool = False) -> List[str]:
    """RUN programs `udevadm test` reports for one event, with only our rules loaded.
    ``syspath`` is a shell word (quoted here unless it starts with a double quote)."""
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    script = """
mount -t tmpfs tmpfs /run                   # udev db, /run/udev/rules.d: ours only
for d in /usr/lib/udev/rules.d /lib/udev/rules.d /usr/local/lib/udev/rules.d; do
    [ -d "$d" ] && mount --bind {empty} "$d"
done
mkdir -p /etc/udev/rules.d && mount --bind {rules} /etc/udev/rules.d
{setup}
udevadm test --action={action} {syspath} 2>&1
""".format(empty=shlex.quote(str(empty)), rules=shlex.quote(str(rules)), setup=setup,
           action=action,
           syspath=syspath if syspath.startswith('"') else shlex.quote(syspath))
    if netns:
        script = "exec unshare -n sh -euc %s" % shlex.quote(script)
    res = in_namespace(script)
    assert res.returncode == 0, res.stdout
    assert "80-xe-oneshot.rules" in res.stdout, res.stdout   # our rules were read
    return re.findall(r"^run: '(.*)'$", res.stdout, re.M)


def started(runs: List[str]) -> List[str]:
    """The unit each RUN starts; every RUN must be a non-blocking systemctl start."""
    units = []
    for run in runs:
        assert run.startswith(START), run
        units.append(run[len(START):])
    return units


# -- network ------------------------------------------------------------------------

VETH = """
ip link add {a} type veth peer name {b}
mount -t sysfs sysfs /sys                   # this network namespace's devices
"""


@pytest.mark.parametrize("action", ["add", "remove", "move"])
def test_net_device_event_starts_a_network_unit_of_its_own(rules, tmp_path, action):
    setup = VETH.format(a="xt0", b="xt1")
    units = started(udev_test(rules, tmp_path, action, "/sys/class/net/xt0", setup,
                              netns=True))
    assert len(units) == 1
    m = UNIT_NAME.match(units[0])
    assert m and m.group("section") == "network", units
    # the tag is the event's SEQNUM ("u<n>"; `udevadm test` has none, real events do)
    assert re.fullmatch(r"network_u[0-9]*", units[0][len("xe-oneshot@"):-len(".service")])


def test_hostile_interface_name_never_reaches_the_command(rules, tmp_path):
    """Interface names may hold $ ( ) ; ` — the rule passes none of it on."""
    setup = VETH.format(a=shlex.quote("x$(id)"), b=shlex.quote("e;reboot"))
    for name in ("x$(id)", "e;reboot"):
        runs = udev_test(rules, tmp_path, "add", "/sys/class/net/" + name, setup, netns=True)
        assert len(runs) == 1 and re.fullmatch(
            re.escape(START) + r"xe-oneshot@network_u[0-9]*\.service", runs[0]), runs


def test_loopback_starts_nothing(rules, tmp_path):
    assert udev_test(rules, tmp_path, "add", "/sys/class/net/lo") == []


# -- block ----------------------------------------------------------------------------

def real_disk() -> Path:
    """A disk with a `device` link (the machine's own), as a Xen VBD would be."""
    for disk in sorted(Path("/sys/block").iterdir()):
        if (disk / "device").exists():
            return disk
    pytest.fail("no disk with a device link in /sys/block to test with")


@pytest.mark.parametrize("action", ["add", "change", "remove"])
def test_disk_event_starts_volumes(rules, tmp_path, action):
    disk = real_disk()
    assert started(udev_test(rules, tmp_path, action, str(disk))) == \
        ["xe-oneshot@volumes.service"]
    for part in sorted(p for p in disk.iterdir() if (p / "partition").exists()):
        assert started(udev_test(rules, tmp_path, action, str(part))) == \
            ["xe-oneshot@volumes.service"]


@pytest.mark.parametrize("action", ["add", "change", "remove"])
@pytest.mark.parametrize("node", ["", "p1"])
def test_loop_device_is_not_a_volume(rules, tmp_path, action, node):
    """A loop device (and its partition) lives under /devices/virtual: no refresh."""
    need("losetup", "sfdisk", "partx")
    image = tmp_path / "image"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
    setup = """
printf 'label: dos\\nstart=2048, type=83\\n' | sfdisk -q {image}
loop=$(losetup -f --show -P {image})
trap 'partx -d "$loop" 2>/dev/null; losetup -d "$loop"' EXIT
[ -e "/sys/class/block/${{loop#/dev/}}p1" ] || partx -a "$loop"   # -P may be late
""".format(image=shlex.quote(str(image)))
    syspath = '"/sys/class/block/${loop#/dev/}%s"' % node
    assert udev_test(rules, tmp_path, action, syspath, setup) == []


# -- memory and CPU ------------------------------------------------------------------

@pytest.mark.parametrize("action", ["add", "online"])
def test_memory_block_starts_memory(rules, tmp_path, action):
    blocks = sorted(Path("/sys/devices/system/memory").glob("memory[0-9]*"))
    assert blocks, "no memory blocks in sysfs"
    assert started(udev_test(rules, tmp_path, action, str(blocks[0]))) == \
        ["xe-oneshot@memory.service"]


@pytest.mark.parametrize("action", ["offline", "remove"])
def test_memory_going_away_is_left_to_the_timer(rules, tmp_path, action):
    blocks = sorted(Path("/sys/devices/system/memory").glob("memory[0-9]*"))
    assert udev_test(rules, tmp_path, action, str(blocks[0])) == []


def hotpluggable_cpu() -> Path:
    for cpu in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*")):
        if (cpu / "online").exists():
            return cpu
    pytest.fail("no CPU with an online file to test with")


@pytest.mark.parametrize("xenbus,expect", [(True, "1"), (False, "0")])
def test_cpu_add_onlines_the_vcpu_only_on_xen(rules, tmp_path, xenbus, expect):
    """The rule writes `online` itself (no RUN, no shell). Our file stands in for the
    CPU's, and /dev/xen/xenbus exists only in an overlay of /dev."""
    cpu = hotpluggable_cpu()
    online = tmp_path / "online"
    online.write_text("0\n")
    dev = tmp_path / "dev"
    (dev / "up/xen").mkdir(parents=True)
    (dev / "work").mkdir()
    setup = "mount --bind {online} {cpu}/online\n".format(online=online, cpu=cpu)
    if xenbus:
        (dev / "up/xen/xenbus").write_text("")
        setup += ("mount -t overlay overlay -o lowerdir=/dev,upperdir={d}/up,workdir={d}/work"
                  " /dev\n".format(d=dev))
    runs = udev_test(rules, tmp_path, "add", str(cpu), setup)
    assert runs == []
    assert online.read_text().strip() == expect


# -- guests without systemd: the rules start the collector through xe-oneshot-run ----------

DIRECT = "/usr/lib/xe-oneshot/xe-oneshot-run event "


@pytest.fixture(scope="module")
def direct_rules(tmp_path_factory):
    need("make", "udevadm", "unshare", "ip")
    root = stage(tmp_path_factory.mktemp("stage"), "INIT=openrc", "NOCOMPILE=1")
    return root / "usr/lib/udev/rules.d"


@pytest.mark.parametrize("action", ["add", "remove", "move"])
def test_without_systemd_a_net_event_runs_the_helper(direct_rules, tmp_path, action):
    runs = udev_test(direct_rules, tmp_path, action, "/sys/class/net/xt0",
                     VETH.format(a="xt0", b="xt1"), netns=True)
    assert runs == [DIRECT + "network"]


def test_without_systemd_a_hostile_interface_name_never_reaches_the_command(direct_rules,
                                                                           tmp_path):
    setup = VETH.format(a=shlex.quote("x$(id)"), b=shlex.quote("e;reboot"))
    for name in ("x$(id)", "e;reboot"):
        assert udev_test(direct_rules, tmp_path, "add", "/sys/class/net/" + name, setup,
                         netns=True) == [DIRECT + "network"]


def test_without_systemd_disk_and_memory_events_run_the_helper(direct_rules, tmp_path):
    assert udev_test(direct_rules, tmp_path, "change", str(real_disk())) == \
        [DIRECT + "volumes"]
    block = sorted(Path("/sys/devices/system/memory").glob("memory[0-9]*"))[0]
    assert udev_test(direct_rules, tmp_path, "online", str(block)) == [DIRECT + "memory"]
    assert udev_test(direct_rules, tmp_path, "add", "/sys/class/net/lo") == []


def test_both_rule_sets_match_the_same_events():
    """The direct rules are the systemd ones with RUN swapped: same match keys."""
    from tests.support.integration_support import CHECKOUT

    def matches(name):
        text = (CHECKOUT / "udev-rules" / name).read_text().replace("\\\n", "")
        return [re.sub(r',\s*RUN\+="[^"]*"', "", line).strip() for line in text.splitlines()
                if line.strip() and not line.startswith("#")]
    assert matches("80-xe-oneshot.rules") == matches("80-xe-oneshot.direct.rules")
