# xe-oneshot: `make test` runs the whole suite (as root for the real-daemon, network
# namespace, loop-device and udev tests).
PYTHON ?= python3

.PHONY: test
test:
	$(PYTHON) -m pytest -q

# `make test-xen`: the Xen tier (root, 5-15 minutes): Xen + a Debian dom0 under qemu, the
# package installed into a systemd PV guest, each scenario of tests/xen/dom0-test.sh one
# test. The lab's images are cached in .cache/xenlab (XE_ONESHOT_XEN_CACHE) and rebuilt when
# their inputs change.
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
# tool that runs it looks. udev, systemd-sleep, NetworkManager and networkd-dispatcher
# only read their own directories, so those are fixed paths, not derived from PREFIX.
PREFIX ?= /usr
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib/xe-oneshot
DOCDIR ?= $(PREFIX)/share/doc/xe-oneshot
UNITDIR ?= $(PREFIX)/lib/systemd/system
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
SLEEPDIR ?= /usr/lib/systemd/system-sleep
# The interpreter in the launchers' #! line: the system's, never a virtualenv's.
INSTALL_PYTHON ?= /usr/bin/python3
# Set to 1 to skip byte-compiling (the .deb compiles in postinst, as Debian does).
NOCOMPILE ?=
XENSTORE_ALIASES = read write rm exists list ls chmod watch
# networkd-dispatcher operational / administrative states entered when addresses
# appear or go.
NETWORKD_STATES = routable degraded carrier no-carrier off configured
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' xe_oneshot/__init__.py)
STAGE = build/stage
DEBROOT = build/deb

.PHONY: install dist deb
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
	install -m 0644 udev-rules/80-xe-oneshot.rules "$(DESTDIR)$(UDEVRULESDIR)/"
	for u in xe-oneshot.service xe-oneshot@.service xe-oneshot-ephemeral.timer; do \
	    sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' "hooks/$$u" > "$(DESTDIR)$(UNITDIR)/$$u" && \
	    chmod 0644 "$(DESTDIR)$(UNITDIR)/$$u" || exit 1; done
	install -m 0755 hooks/xe-oneshot.sleep "$(DESTDIR)$(SLEEPDIR)/xe-oneshot"
	install -m 0755 hooks/90-xe-oneshot "$(DESTDIR)$(SYSCONFDIR)/NetworkManager/dispatcher.d/"
	for s in $(NETWORKD_STATES); do \
	    install -D -m 0755 networkd-dispatcher/xe-oneshot \
	        "$(DESTDIR)$(SYSCONFDIR)/networkd-dispatcher/$$s.d/xe-oneshot" || exit 1; done

# A tarball of the staged tree (modes and symlinks kept, owned by root), for
# distributions without a package: `tar -xzf ... -C /`. It holds etc/ and usr/ only,
# no "." entry, so extracting it never changes the mode of /.
dist:
	rm -rf "$(STAGE)" && mkdir -p dist
	$(MAKE) --no-print-directory install DESTDIR="$(CURDIR)/$(STAGE)" PREFIX=/usr
	cd "$(STAGE)" && tar --sort=name --owner=0 --group=0 --numeric-owner \
	    -czf "$(CURDIR)/dist/xe-oneshot-$(VERSION).tar.gz" etc usr
	@echo "dist/xe-oneshot-$(VERSION).tar.gz"

# A Debian package built with dpkg-deb alone (no debhelper needed on the build machine).
deb:
	rm -rf "$(DEBROOT)" && mkdir -p dist
	$(MAKE) --no-print-directory install DESTDIR="$(CURDIR)/$(DEBROOT)" PREFIX=/usr NOCOMPILE=1
	install -d -m 0755 "$(DEBROOT)/DEBIAN" "$(DEBROOT)/usr/share/doc/xe-oneshot"
	install -m 0644 packaging/debian/copyright "$(DEBROOT)/usr/share/doc/xe-oneshot/"
	sed -e 's|@VERSION@|$(VERSION)|' \
	    -e "s|@DATE@|$$(date -R -u -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)})|" \
	    packaging/debian/changelog.in | gzip -9n > "$(DEBROOT)/usr/share/doc/xe-oneshot/changelog.gz"
	chmod 0644 "$(DEBROOT)/usr/share/doc/xe-oneshot/changelog.gz"
	install -D -m 0755 packaging/debian/rtupdate \
	    "$(DEBROOT)/usr/share/python3/runtime.d/xe-oneshot.rtupdate"
	sed -e 's|@VERSION@|$(VERSION)|' -e "s|@SIZE@|$$(du -sk --exclude=DEBIAN "$(DEBROOT)" | cut -f1)|" \
	    packaging/debian/control.in > "$(DEBROOT)/DEBIAN/control"
	install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
	    "$(DEBROOT)/DEBIAN/"
	cd "$(DEBROOT)" && find etc -type f | LC_ALL=C sort | sed 's|^|/|' > DEBIAN/conffiles
	cd "$(DEBROOT)" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' \
	    | LC_ALL=C sort | xargs -d '\n' md5sum > DEBIAN/md5sums
	chmod 0644 "$(DEBROOT)/DEBIAN/control" "$(DEBROOT)/DEBIAN/conffiles" "$(DEBROOT)/DEBIAN/md5sums"
	dpkg-deb --root-owner-group -Zxz --build "$(DEBROOT)" "dist/xe-oneshot_$(VERSION)_all.deb"
