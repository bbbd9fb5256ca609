# xe-oneshot: `make test` runs the whole suite (as root for the real-daemon, network
# namespace, loop-device and udev tests).
PYTHON ?= python3

.PHONY: test
test:
	$(PYTHON) -m pytest -q

# `make lint`: pyflakes and mypy (configured in setup.cfg) on the package; both must be
# silent. `.ci/run` runs it.
.PHONY: lint
lint:
	$(PYTHON) -m pyflakes xe_oneshot
	$(PYTHON) -m mypy

# `make test-pythons`: the unit and collector tests on the oldest and newest supported
# Pythons too (3.6 and 3.13 from pyenv, each in its own venv under build/); a missing
# interpreter fails. `make test-pythons PYTHONS=3.8` for another one.
.PHONY: test-pythons
test-pythons:
	PYTHONS="$(or $(PYTHONS),3.6 3.13)" bash tests/multipython.sh

# `make test-xen`: the Xen tier (root, 10-15 minutes): Xen + a Debian dom0 under qemu, the
# package installed into a systemd PV guest (and a PVH one), each scenario of
# tests/xen/dom0-test.sh one test. The lab's images are cached in .cache/xenlab
# (XE_ONESHOT_XEN_CACHE) and rebuilt when their inputs change.
.PHONY: test-xen
test-xen:
	XE_ONESHOT_XEN=1 $(PYTHON) -m pytest -q -m xen tests/test_xen_guest.py

# `make bench`: cold start, XenStore traffic, scale and imports against the real daemon
# (root); writes BENCHMARKS.md. `make bench BENCH_ARGS=--quick` for a quick look.
.PHONY: bench
bench:
	$(PYTHON) bench/bench.py $(BENCH_ARGS)

# --- install, dist, deb -----------------------------------------------------------------
# `make install DESTDIR=/tmp/stage PREFIX=/usr` lays out the whole agent: the package in a
# private directory (lib/xe-oneshot, found by the launchers relative to their own place),
# the commands, the udev rules, the units and the timer, and the hooks, each where the
# tool that runs it looks. udev, systemd-sleep, NetworkManager, networkd-dispatcher,
# ifupdown and dhclient-script only read their own directories, so those are fixed
# paths, not derived from PREFIX. (The dhclient hook is sourced, not run: mode 0644.)
PREFIX ?= /usr
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib/xe-oneshot
DOCDIR ?= $(PREFIX)/share/doc/xe-oneshot
UNITDIR ?= $(PREFIX)/lib/systemd/system
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
SLEEPDIR ?= /usr/lib/systemd/system-sleep
MANDIR ?= $(PREFIX)/share/man
# The init system the guest runs: systemd (units, timer, rules that queue units), openrc
# (/etc/init.d/xe-oneshot with a 60 s tick) or sysv (/etc/init.d/xe-oneshot and
# /etc/cron.d/xe-oneshot); udev rules that start the collector directly for both. A
# staged install (DESTDIR set: packages, tarballs) is systemd unless told otherwise, so
# that it never depends on the build machine; a direct install asks the running system.
INIT ?= $(if $(DESTDIR),systemd,$(shell if [ -d /run/systemd/system ]; then echo systemd; \
    elif [ -x /sbin/openrc-run ] || [ -x /usr/sbin/openrc-run ]; then echo openrc; \
    else echo sysv; fi))
# What the tick (the timer's counterpart without systemd) publishes every minute.
TICK_SECTIONS ?= ephemeral
# The interpreter in the launchers' #! line: the system's, never a virtualenv's.
INSTALL_PYTHON ?= /usr/bin/python3
# Set to 1 to skip byte-compiling (the .deb compiles in postinst, as Debian does).
NOCOMPILE ?=
XENSTORE_ALIASES = read write rm exists list ls chmod watch
# networkd-dispatcher operational / administrative states entered when addresses
# appear or go.
NETWORKD_STATES = routable degraded carrier no-carrier off configured
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' xe_oneshot/__init__.py)
# The oldest Python the code runs on (setup.cfg's python_requires), for the packages.
PYTHON_FLOOR := $(shell sed -n 's/^python_requires *= *>= *\([0-9.]*\).*/\1/p' setup.cfg)
STAGE = build/stage
DEBROOT = build/deb

.PHONY: install dist deb uninstall install-man install-init-systemd install-init-openrc \
    install-init-sysv
install: install-man install-init-$(INIT)
install:
	install -d -m 0755 "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(UNITDIR)" \
	    "$(DESTDIR)$(UDEVRULESDIR)" "$(DESTDIR)$(SLEEPDIR)" "$(DESTDIR)$(DOCDIR)" \
	    "$(DESTDIR)$(SYSCONFDIR)/NetworkManager/dispatcher.d"
	install -m 0644 README.md "$(DESTDIR)$(DOCDIR)/"
	find xe_oneshot -name '*.py' | LC_ALL=C sort | while read -r f; do \
	    install -D -m 0644 "$$f" "$(DESTDIR)$(LIBDIR)/$$f" || exit 1; done
	if [ -z "$(NOCOMPILE)" ]; then "$(INSTALL_PYTHON)" -m compileall -q \
	    -d "$(LIBDIR)/xe_oneshot" "$(DESTDIR)$(LIBDIR)/xe_oneshot" >/dev/null; fi
	$(PYTHON) packaging/launchers.py setup.cfg packaging/launcher.in \
	    "$(DESTDIR)$(BINDIR)" "$(INSTALL_PYTHON)"
	for a in $(XENSTORE_ALIASES); do ln -sfn xenstore "$(DESTDIR)$(BINDIR)/xenstore-$$a"; done
	sed 's|@LIBDIR@|$(LIBDIR)|g' udev-rules/80-xe-oneshot$(if $(filter-out systemd,$(INIT)),.direct).rules \
	    > "$(DESTDIR)$(UDEVRULESDIR)/80-xe-oneshot.rules" && chmod 0644 "$(DESTDIR)$(UDEVRULESDIR)/80-xe-oneshot.rules"
	for u in xe-oneshot.service xe-oneshot@.service xe-oneshot-ephemeral.timer; do \
	    sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' "hooks/$$u" > "$(DESTDIR)$(UNITDIR)/$$u" && \
	    chmod 0644 "$(DESTDIR)$(UNITDIR)/$$u" || exit 1; done
	install -m 0755 hooks/xe-oneshot.sleep "$(DESTDIR)$(SLEEPDIR)/xe-oneshot"
	install -m 0755 hooks/90-xe-oneshot "$(DESTDIR)$(SYSCONFDIR)/NetworkManager/dispatcher.d/"
	for s in $(NETWORKD_STATES); do \
	    install -D -m 0755 networkd-dispatcher/xe-oneshot \
	        "$(DESTDIR)$(SYSCONFDIR)/networkd-dispatcher/$$s.d/xe-oneshot" || exit 1; done
	for d in if-up.d if-post-down.d; do \
	    install -D -m 0755 ifupdown/xe-oneshot \
	        "$(DESTDIR)$(SYSCONFDIR)/network/$$d/xe-oneshot" || exit 1; done
	install -D -m 0644 ifupdown/dhclient-exit-hook \
	    "$(DESTDIR)$(SYSCONFDIR)/dhcp/dhclient-exit-hooks.d/xe-oneshot"

# A tarball of the staged tree (modes and symlinks kept, owned by root), for
# distributions without a package: `tar -xzf ... -C /`. It holds etc/ and usr/ only,
# no "." entry, so extracting it never changes the mode of /.
dist:
	rm -rf "$(STAGE)" && mkdir -p dist
	$(MAKE) --no-print-directory install DESTDIR="$(CURDIR)/$(STAGE)" PREFIX=/usr
	cd "$(STAGE)" && tar --sort=name --owner=0 --group=0 --numeric-owner \
	    -czf "$(CURDIR)/dist/xe-oneshot-$(VERSION).tar.gz" etc usr
	@echo "dist/xe-oneshot-$(VERSION).tar.gz"

# The packages' Maintainer (deb) and Packager (rpm): whoever builds them, as dch and
# rpmdev-packager take it (DEBFULLNAME and DEBEMAIL, else git's user.name and
# user.email). The project has no mailing list of its own to name instead.
MAINTAINER ?= $(shell n="$${DEBFULLNAME:-$$(git config user.name)}"; \
    e="$${DEBEMAIL:-$$(git config user.email)}"; [ -n "$$n" ] && [ -n "$$e" ] && echo "$$n <$$e>")

# A Debian package built with dpkg-deb alone (no debhelper needed on the build machine).
# The xenstore commands are alternatives (see packaging/debian/postinst): the launcher is
# /usr/bin/xenstore.xe-oneshot, and manual pages are compressed as Debian wants them.
deb:
	$(if $(MAINTAINER),,$(error set MAINTAINER="Name <address>" (or DEBFULLNAME and DEBEMAIL)))
	rm -rf "$(DEBROOT)" && mkdir -p dist
	$(MAKE) --no-print-directory install DESTDIR="$(CURDIR)/$(DEBROOT)" PREFIX=/usr NOCOMPILE=1 \
	    INIT=systemd
	mv "$(DEBROOT)/usr/bin/xenstore" "$(DEBROOT)/usr/bin/xenstore.xe-oneshot"
	mv "$(DEBROOT)/usr/share/man/man1/xenstore.1" "$(DEBROOT)/usr/share/man/man1/xenstore.xe-oneshot.1"
	rm -f $(foreach a,$(XENSTORE_ALIASES),"$(DEBROOT)/usr/bin/xenstore-$(a)" \
	    "$(DEBROOT)/usr/share/man/man1/xenstore-$(a).1")
	gzip -9n "$(DEBROOT)"/usr/share/man/man*/*
	install -d -m 0755 "$(DEBROOT)/DEBIAN" "$(DEBROOT)/usr/share/doc/xe-oneshot"
	install -m 0644 packaging/debian/copyright "$(DEBROOT)/usr/share/doc/xe-oneshot/"
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@MAINTAINER@|$(MAINTAINER)|' \
	    -e "s|@DATE@|$$(date -R -u -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)})|" \
	    packaging/debian/changelog.in | gzip -9n > "$(DEBROOT)/usr/share/doc/xe-oneshot/changelog.gz"
	chmod 0644 "$(DEBROOT)/usr/share/doc/xe-oneshot/changelog.gz"
	install -D -m 0755 packaging/debian/rtupdate \
	    "$(DEBROOT)/usr/share/python3/runtime.d/xe-oneshot.rtupdate"
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@MAINTAINER@|$(MAINTAINER)|' \
	    -e 's|@PYTHON_FLOOR@|$(PYTHON_FLOOR)|' -e "s|@SIZE@|$$(du -sk --exclude=DEBIAN "$(DEBROOT)" | cut -f1)|" \
	    packaging/debian/control.in > "$(DEBROOT)/DEBIAN/control"
	install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
	    "$(DEBROOT)/DEBIAN/"
	install -m 0644 packaging/debian/triggers "$(DEBROOT)/DEBIAN/"
	cd "$(DEBROOT)" && find etc -type f | LC_ALL=C sort | sed 's|^|/|' > DEBIAN/conffiles
	cd "$(DEBROOT)" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' \
	    | LC_ALL=C sort | xargs -d '\n' md5sum > DEBIAN/md5sums
	chmod 0644 "$(DEBROOT)/DEBIAN/control" "$(DEBROOT)/DEBIAN/conffiles" "$(DEBROOT)/DEBIAN/md5sums"
	dpkg-deb --root-owner-group -Zxz --build "$(DEBROOT)" "dist/xe-oneshot_$(VERSION)_all.deb"

# Manual pages (uncompressed; the packages compress them).
install-man:
	install -d -m 0755 "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(MANDIR)/man8"
	install -m 0644 man/xenstore.1 "$(DESTDIR)$(MANDIR)/man1/"
	install -m 0644 man/xe-oneshot.8 man/xe-linux-distribution.8 "$(DESTDIR)$(MANDIR)/man8/"
	for a in $(XENSTORE_ALIASES); do ln -sfn xenstore.1 "$(DESTDIR)$(MANDIR)/man1/xenstore-$$a.1"; done

# Guests without systemd: the boot run, the minute tick and the udev runs go through
# xe-oneshot-run (the units and hooks are installed too, inert without systemd).
INIT_SED = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
    -e 's|@TICK_SECTIONS@|$(TICK_SECTIONS)|g'
install-init-systemd:
install-init-openrc install-init-sysv:
	install -d -m 0755 "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(SYSCONFDIR)/init.d"
	$(INIT_SED) init/xe-oneshot-run.in > "$(DESTDIR)$(LIBDIR)/xe-oneshot-run"
	$(INIT_SED) init/$(INIT).in > "$(DESTDIR)$(SYSCONFDIR)/init.d/xe-oneshot"
	chmod 0755 "$(DESTDIR)$(LIBDIR)/xe-oneshot-run" "$(DESTDIR)$(SYSCONFDIR)/init.d/xe-oneshot"
	if [ "$(INIT)" = sysv ]; then install -d -m 0755 "$(DESTDIR)$(SYSCONFDIR)/cron.d" && \
	    $(INIT_SED) init/cron.in > "$(DESTDIR)$(SYSCONFDIR)/cron.d/xe-oneshot" && \
	    chmod 0644 "$(DESTDIR)$(SYSCONFDIR)/cron.d/xe-oneshot"; fi

# `make uninstall` with the variables of `make install` removes exactly what it
# installed: it stages the same install into a temporary directory and removes each of
# its files and links from DESTDIR, the byte-compiled files beside the modules, then the
# directories that are the agent's own (LIBDIR, DOCDIR) once empty. Shared directories
# (/usr/bin, /etc/NetworkManager/dispatcher.d, ...) stay. Disable the units (or the init
# script) first: `systemctl disable --now xe-oneshot.service xe-oneshot-ephemeral.timer`.
uninstall:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(MAKE) --no-print-directory install DESTDIR="$$tmp" INIT=$(INIT) NOCOMPILE=1 >/dev/null && \
	cd "$$tmp" && \
	find . ! -type d | sed 's|^\.||' | LC_ALL=C sort | while read -r f; do \
	    rm -f "$(DESTDIR)$$f" || exit 1; done && \
	find . -name '*.py' | sed 's|^\.||; s|/[^/]*$$||' | LC_ALL=C sort -u | while read -r d; do \
	    rm -rf "$(DESTDIR)$$d/__pycache__" || exit 1; done && \
	find ".$(LIBDIR)" ".$(DOCDIR)" -depth -type d | sed 's|^\.||' | while read -r d; do \
	    rmdir "$(DESTDIR)$$d" 2>/dev/null || :; done
	@echo "uninstalled (INIT=$(INIT)) from $(if $(DESTDIR),$(DESTDIR),/)"

# `make rpm`: one noarch RPM (and its source RPM) for the RHEL family and SUSE, from
# packaging/rpm/xe-oneshot.spec.in, with rpmbuild (Debian's `rpm` package will do).
# Source0 is the source tree as it is (no git needed). --nodeps: the build machine's
# rpm database knows nothing of its (Debian) make and python3. No __os_install_post:
# nothing to strip in a noarch package, and Debian's brp-compress needs bash as sh (the
# spec compresses the manual pages itself); a rebuild of the source RPM uses its own.
RPMTOP = build/rpm
RPM_SOURCES = Makefile setup.cfg pyproject.toml README.md LICENSE CHANGELOG.md xe_oneshot \
    hooks udev-rules networkd-dispatcher ifupdown init man packaging
.PHONY: rpm
rpm:
	$(if $(MAINTAINER),,$(error set MAINTAINER="Name <address>" (or DEBFULLNAME and DEBEMAIL)))
	rm -rf "$(RPMTOP)" && mkdir -p "$(RPMTOP)/SOURCES" "$(RPMTOP)/SPECS" dist
	tar --sort=name --owner=0 --group=0 --numeric-owner --exclude=__pycache__ \
	    --exclude='*.pyc' --transform 's|^|xe-oneshot-$(VERSION)/|' \
	    -czf "$(RPMTOP)/SOURCES/xe-oneshot-$(VERSION).tar.gz" $(RPM_SOURCES)
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAINTAINER@|$(MAINTAINER)|' \
	    -e 's|@PYTHON_FLOOR@|$(PYTHON_FLOOR)|' \
	    -e "s|@DATE@|$$(LC_ALL=C date -u '+%a %b %d %Y' -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)})|" \
	    packaging/rpm/xe-oneshot.spec.in > "$(RPMTOP)/SPECS/xe-oneshot.spec"
	rpmbuild -ba --quiet --nodeps --define "_topdir $(CURDIR)/$(RPMTOP)" \
	    --define "__os_install_post %{nil}" \
	    --define "_rpmdir $(CURDIR)/dist" --define "_srcrpmdir $(CURDIR)/dist" \
	    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
	    "$(RPMTOP)/SPECS/xe-oneshot.spec"
	@echo "dist/xe-oneshot-$(VERSION)-1.noarch.rpm"
