"""The test harness: everything the test modules (and bench/) share. A test module
imports from here, never from another test module.

============================  ==========================================================
``paths``                     where things are: the checkout, the guest's XenStore home
``xenstored``                 the real daemon: oxenstored on a Unix socket, its access
                              log, the Debian C tools (``XenStored``)
``fault_proxy``               a XenStore proxy that counts requests and injects faults
                              (``FaultProxy``, ``Rule``)
``fakeguest``                 a guest's files under ``--root``: meminfo, cached
                              distribution, the minimal guest (``FakeGuest``)
``blockdev``                  block devices: fake sysfs trees (``FakeBlock``), real loop
                              devices, LVM and mounts in a private namespace
``netns``                     network namespaces with real links and addresses, mirrored
                              into a fake sysfs; fixture ``ns``
``collector``                 running ``xe-oneshot`` as a process against a daemon, and
                              what a run should publish
``xapi_oracle``               the consumer oracle: what xapi, xenopsd and squeezed read
                              from the guest's home (ported from xen-api)
``reliability``               DESIGN.md's key schema as an oracle, the full guest, runs
                              in process or as processes; fixtures ``daemon``, ``proxy``,
                              ``full_guest``
``integration_support``       a staged ``make install``, mount namespaces, recording PATH
                              stubs; fixtures ``staged``, ``stubs``
``hooks``                     running the installed dispatcher hooks as their dispatchers do
``distros``                   the corpus of real release-file trees and what each gives
============================  ==========================================================

Fixtures of the whole suite are in tests/conftest.py (``xenstored``, ``fresh_xenstored``,
``xs_env``, ``state``) and the plugins it loads (the modules above that name fixtures).
A fixture name is defined once in the suite (tests/test_house.py checks it).
"""
