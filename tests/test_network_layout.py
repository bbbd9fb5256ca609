"""The network section's key layout (``network_keys``) on hand-built records: targets,
addresses as the kernel would list them, and the indices already published. No sysfs,
no netlink, no XenStore; finding the records is tested in test_network*.py."""

from _socket import AF_INET, AF_INET6

from xe_oneshot.netlink import IfAddr
from xe_oneshot.sections.network import (MAX_PER_FAMILY, VF_PREFIX, VIF_PREFIX, Addresses,
                                         Target, network_keys)

LINK = 253                      # RT_SCOPE_LINK
SECONDARY = TEMPORARY = 0x01    # IFA_F_SECONDARY / IFA_F_TEMPORARY
DEPRECATED = 0x20


def addresses(*entries, position=0):
    """An :class:`Addresses` fed (address, flags, scope) entries in kernel order."""
    out = Addresses()
    for entry in entries:
        address, flags, scope = (entry + (0, 0))[:3] if isinstance(entry, tuple) else (
            entry, 0, 0)
        family = AF_INET6 if ":" in address else AF_INET
        out.add(IfAddr(2, family, address, flags, scope), position)
    return out


def test_no_targets_no_keys():
    assert network_keys({}, {}) == {}


def test_a_vif_with_both_families():
    found = {Target(VIF_PREFIX, "0"): addresses("192.0.2.10", "fe80::1")}
    assert network_keys(found, {}) == {"attr/vif/0/ipv4/0": "192.0.2.10",
                                       "attr/vif/0/ipv6/0": "fe80::1"}


def test_an_sriov_vf_target_goes_under_xenserver_attr():
    found = {Target(VF_PREFIX, "3"): addresses("198.51.100.7"),
             Target(VIF_PREFIX, "1"): addresses("10.0.0.1")}
    assert network_keys(found, {}) == {
        "xenserver/attr/net-sriov-vf/3/ipv4/0": "198.51.100.7",
        "attr/vif/1/ipv4/0": "10.0.0.1"}


def test_a_target_without_addresses_has_no_keys():
    found = {Target(VIF_PREFIX, "0"): Addresses(),
             Target(VIF_PREFIX, "1"): addresses("fe80::2")}
    assert network_keys(found, {}) == {"attr/vif/1/ipv6/0": "fe80::2"}


def test_ipv6_primary_is_the_global_stable_one_then_kernel_order():
    """Listed (as the kernel does, newest first): a temporary (privacy) address, a
    deprecated one, the link-local, then the stable global: the stable global is 0,
    the others follow in the kernel's order."""
    found = {Target(VIF_PREFIX, "0"): addresses(
        ("2001:db8::7", TEMPORARY), ("2001:db8::6", DEPRECATED), ("fe80::1", 0, LINK),
        "2001:db8::1")}
    assert network_keys(found, {}) == {"attr/vif/0/ipv6/0": "2001:db8::1",
                                       "attr/vif/0/ipv6/1": "2001:db8::7",
                                       "attr/vif/0/ipv6/2": "2001:db8::6",
                                       "attr/vif/0/ipv6/3": "fe80::1"}


def test_ipv4_primary_skips_secondaries_and_link_scope():
    found = {Target(VIF_PREFIX, "0"): addresses(
        ("169.254.1.1", 0, LINK), ("192.0.2.11", SECONDARY), "192.0.2.10")}
    assert network_keys(found, {}) == {"attr/vif/0/ipv4/0": "192.0.2.10",
                                       "attr/vif/0/ipv4/1": "169.254.1.1",
                                       "attr/vif/0/ipv4/2": "192.0.2.11"}


def test_published_indices_are_kept_and_newcomers_fill_the_lowest_gap():
    found = {Target(VIF_PREFIX, "0"): addresses("192.0.2.1", "192.0.2.5", "192.0.2.9")}
    published = {"attr/vif/0/ipv4": {"192.0.2.1": 0, "192.0.2.9": 2, "192.0.2.77": 1}}
    assert network_keys(found, published) == {"attr/vif/0/ipv4/0": "192.0.2.1",
                                              "attr/vif/0/ipv4/2": "192.0.2.9",
                                              "attr/vif/0/ipv4/1": "192.0.2.5"}


def test_a_new_primary_takes_0_and_the_old_one_moves_to_the_lowest_free_index():
    found = {Target(VIF_PREFIX, "0"): addresses("192.0.2.2", ("192.0.2.1", SECONDARY),
                                                 ("192.0.2.3", SECONDARY))}
    published = {"attr/vif/0/ipv4": {"192.0.2.1": 0, "192.0.2.3": 2}}
    assert network_keys(found, published) == {"attr/vif/0/ipv4/0": "192.0.2.2",
                                              "attr/vif/0/ipv4/2": "192.0.2.3",
                                              "attr/vif/0/ipv4/1": "192.0.2.1"}


def test_published_indices_of_another_target_or_family_do_not_apply():
    found = {Target(VIF_PREFIX, "1"): addresses("192.0.2.1", "192.0.2.2")}
    published = {"attr/vif/0/ipv4": {"192.0.2.2": 0},
                 "attr/vif/1/ipv6": {"192.0.2.2": 0}}
    assert network_keys(found, published) == {"attr/vif/1/ipv4/0": "192.0.2.1",
                                              "attr/vif/1/ipv4/1": "192.0.2.2"}


def test_at_most_max_per_family_indices():
    many = ["10.0.%d.%d" % (i // 250, i % 250 + 1) for i in range(MAX_PER_FAMILY + 5)]
    values = network_keys({Target(VIF_PREFIX, "0"): addresses(*many)}, {})
    assert sorted(values, key=lambda k: int(k.rsplit("/", 1)[1])) == [
        "attr/vif/0/ipv4/%d" % i for i in range(MAX_PER_FAMILY)]
    assert values["attr/vif/0/ipv4/%d" % (MAX_PER_FAMILY - 1)] == many[MAX_PER_FAMILY - 1]


def test_a_stacked_devices_address_is_primary_only_without_an_own_one():
    own = addresses(("192.0.2.10", SECONDARY))
    own.add(IfAddr(5, AF_INET, "198.51.100.1"), 1)          # a bridge over it
    assert network_keys({Target(VIF_PREFIX, "0"): own}, {}) == {
        "attr/vif/0/ipv4/0": "198.51.100.1", "attr/vif/0/ipv4/1": "192.0.2.10"}
