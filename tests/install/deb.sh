#!/bin/sh
# The Debian package, checked in a clean Debian 12 (.ci/run's package stage;
# docs/operations.md, "Installing the Debian package"):
#  - `cpack -G DEB` in BUILD_DIR (configured with -DCMAKE_INSTALL_PREFIX=/usr
#    and built) makes vigil_VERSION_ARCH.deb;
#  - debootstrap makes a minimal bookworm root, with no compiler and none of
#    the build's packages; `apt-get install ./vigil_*.deb` there must find
#    every dependency on the mirror, and the maintainer scripts must succeed
#    without systemd;
#  - dpkg -L lists the programs, the unit, the man pages and the conffiles,
#    and the unit is enabled;
#  - with the systemd package added, `systemd-analyze verify` passes the unit;
#  - the broker runs as the unit would run it (its ExecStart, its environment
#    file, an unprivileged uid, no new privileges, the state dir), and the
#    installed vigil-pub and vigil-sub exchange a message through it;
#  - apt-get remove keeps the conffiles and the data, purge removes both.
# The service is not booted with systemd here: see docs/operations.md.
#   usage: deb.sh BUILD_DIR          (as root; VIGIL_DEB_MIRROR: the mirror)
set -eu
build=$(cd "$1" && pwd)
mirror=${VIGIL_DEB_MIRROR:-http://deb.debian.org/debian}
# A uid in systemd's DynamicUser range (61184-65519) with no passwd entry,
# as a dynamic user has none in a root without nss-systemd.
uid=61184

fail() {
    echo "deb.sh: $*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || fail "run as root (debootstrap and chroot)"
for c in cpack debootstrap dpkg-deb dpkg-shlibdeps; do
    command -v "$c" >/dev/null 2>&1 || fail "$c not found: scripts/setup --ci installs it"
done

tmp=$(mktemp -d /var/tmp/vigil-deb.XXXXXX)
root=$tmp/root
bpid=
# Unmounts what is mounted under the root, deepest first; 0 when none is left.
unmount_all() {
    for m in $(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    ! awk -v r="$root/" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/self/mounts
}
cleanup() {
    [ -z "$bpid" ] || kill "$bpid" 2>/dev/null || true
    if unmount_all; then
        rm -rf --one-file-system "$tmp"
    else
        echo "deb.sh: still mounted under $root, not removed:" >&2
        grep " $root/" /proc/self/mounts >&2 || true
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# in_root CMD...: runs CMD in the root with a plain environment.
in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}
# step WHAT CMD...: runs CMD, its output kept in a log and shown if it fails.
step() {
    what=$1
    shift
    echo "deb.sh: $what" >&2
    "$@" >"$tmp/step.log" 2>&1 || fail "$what failed: $(tail -n 30 "$tmp/step.log")"
}

# ---- the package ----
rm -f "$build"/vigil_*.deb
step "cpack -G DEB in $build" sh -c 'cd "$1" && cpack -G DEB' sh "$build"
set -- "$build"/vigil_*.deb
[ -f "$1" ] && [ $# -eq 1 ] || fail "cpack made no single vigil_*.deb in $build: $*"
deb=$1
name=$(basename "$deb")
conffiles=$(dpkg-deb -I "$deb" conffiles 2>/dev/null) || fail "$name has no conffiles list"

# ---- a clean root, the package installed from the mirror ----
step "debootstrap --variant=minbase bookworm (from $mirror)" \
    debootstrap --variant=minbase bookworm "$root" "$mirror"
for c in gcc cc cmake; do
    [ ! -e "$root/usr/bin/$c" ] || fail "the root is not clean: it has /usr/bin/$c"
done
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
cp "$deb" "$root/tmp/$name"
step "apt-get update in the root" in_root apt-get update -q
step "apt-get install ./$name in the root, without systemd" \
    in_root apt-get install -y --no-install-recommends "/tmp/$name"
in_root dpkg-query -W -f='${Status}\n' vigil | grep -qx "install ok installed" ||
    fail "vigil is not installed: $(in_root dpkg-query -W -f='${Status}' vigil)"

in_root dpkg -L vigil >"$tmp/files"
for f in /usr/bin/vigil-broker /usr/bin/vigil-pub /usr/bin/vigil-sub \
    /usr/lib/systemd/system/vigil-broker.service /usr/share/man/man1/vigil-broker.1 \
    /usr/share/man/man1/vigil-pub.1 /usr/share/man/man1/vigil-sub.1 \
    /usr/share/man/man5/vigil-broker.conf.5 /usr/include/vigil/vigil.h \
    /usr/lib/x86_64-linux-gnu/libvigil.so.0 /usr/lib/x86_64-linux-gnu/pkgconfig/vigil.pc $conffiles; do
    grep -qx "$f" "$tmp/files" || fail "dpkg -L vigil does not list $f"
    [ -e "$root$f" ] || fail "$f is listed but not installed"
done
in_root dpkg-query -W -f='${Conffiles}\n' vigil >"$tmp/conffiles"
for f in /etc/default/vigil-broker /etc/vigil/broker.conf; do
    echo "$conffiles" | grep -qx "$f" || fail "$f is not a conffile"
done
in_root vigil-broker --config /etc/vigil/broker.conf --check-config 2>"$tmp/check.log" ||
    fail "the packaged broker.conf does not pass --check-config: $(cat "$tmp/check.log")"
for f in $conffiles; do
    grep -q "^ $f " "$tmp/conffiles" || fail "dpkg does not hold $f as a conffile"
done
for p in broker pub sub; do
    in_root "vigil-$p" --help >/dev/null 2>&1 || fail "vigil-$p --help failed in the root"
done
wants=/etc/systemd/system/multi-user.target.wants/vigil-broker.service
[ -L "$root$wants" ] || fail "postinst did not enable the unit: no $wants"

# ---- the unit, verified by systemd ----
step "apt-get install systemd in the root" in_root apt-get install -y --no-install-recommends systemd
[ ! -d "$root/run/systemd/system" ] || fail "the root looks booted: it has /run/systemd/system"
unit=/usr/lib/systemd/system/vigil-broker.service
step "systemd-analyze verify $unit in the root" in_root systemd-analyze verify --man=no "$unit"

# ---- the broker as the unit runs it ----
# The unit's command line and environment file; the admin's way to set
# flags (here: port 0, so that parallel runs do not collide) is that file.
execstart=$(sed -n 's/^ExecStart=//p' "$root$unit")
envfile=$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$root$unit")
[ "$envfile" = /etc/default/vigil-broker ] || fail "the unit reads $envfile, not /etc/default/vigil-broker"
case $execstart in
"/usr/bin/vigil-broker --config /etc/vigil/broker.conf "*) ;;
*) fail "unexpected ExecStart: $execstart" ;;
esac
grep -q '^VIGIL_BROKER_OPTS=""$' "$root$envfile" || fail "$envfile does not set an empty VIGIL_BROKER_OPTS"
sed -i 's/^VIGIL_BROKER_OPTS=""$/VIGIL_BROKER_OPTS="--listen 127.0.0.1:0"/' "$root$envfile"
# StateDirectory= with DynamicUser=yes: /var/lib/private/vigil owned by the
# service's uid, /var/lib/vigil a symlink to it. systemd keeps
# /var/lib/private at 0700 and opens it to the service in the service's own
# mount namespace; without that namespace here, 0755.
install -d -m 0755 "$root/var/lib/private"
install -d -m 0755 -o "$uid" -g "$uid" "$root/var/lib/private/vigil"
ln -s private/vigil "$root/var/lib/vigil"
log=$tmp/broker.log
# chroot, env, sh and setpriv each exec the next: $! is the broker's pid.
# shellcheck disable=SC2016 # $1 and $envfile's variables expand in the root's shell
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    sh -c 'set -a; . "$1"; set +a
    eval "exec setpriv --reuid=$2 --regid=$2 --clear-groups --no-new-privs $3"' \
    sh "$envfile" "$uid" "$execstart" >"$tmp/broker.out" 2>"$log" &
bpid=$!
port=
i=0
while :; do
    port=$(sed -n 's/.*event=listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    [ -z "$port" ] || break
    kill -0 "$bpid" 2>/dev/null || fail "vigil-broker exited: $(cat "$log")"
    i=$((i + 1))
    [ "$i" -lt 200 ] || fail "waited 10 s for vigil-broker's event=listening line: $(cat "$log")"
    sleep 0.05
done
bowner=$(stat -c %u "/proc/$bpid")
[ "$bowner" = "$uid" ] || fail "vigil-broker runs as uid $bowner, not $uid"
in_root vigil-pub --server "127.0.0.1:$port" package.check hello >/dev/null 2>"$tmp/pub.log" ||
    fail "vigil-pub: $(cat "$tmp/pub.log")"
in_root timeout 10 vigil-sub --server "127.0.0.1:$port" --since first --count 1 package.check \
    >"$tmp/out" 2>"$tmp/sub.log" || fail "vigil-sub: $(cat "$tmp/sub.log")"
[ "$(cat "$tmp/out")" = "package.check MSG_TYPE1 hello" ] || fail "vigil-sub printed '$(cat "$tmp/out")'"
kill -TERM "$bpid"
rc=0
wait "$bpid" || rc=$?
bpid=
[ "$rc" -eq 0 ] || fail "vigil-broker exited $rc on SIGTERM: $(tail -n 5 "$log")"
[ -n "$(ls -A "$root/var/lib/private/vigil")" ] || fail "the broker wrote nothing in /var/lib/vigil"

# ---- remove keeps conffiles and data, purge removes them ----
step "apt-get remove vigil in the root" in_root apt-get remove -y vigil
[ ! -e "$root/usr/bin/vigil-broker" ] || fail "remove left /usr/bin/vigil-broker"
for f in $conffiles; do
    [ -e "$root$f" ] || fail "remove deleted the conffile $f"
done
grep -q -- '--listen 127.0.0.1:0' "$root$envfile" || fail "remove undid the edit of $envfile"
[ -d "$root/var/lib/private/vigil" ] || fail "remove deleted the broker's data"
step "apt-get purge vigil in the root" in_root apt-get purge -y vigil
for f in $conffiles; do
    [ ! -e "$root$f" ] || fail "purge left the conffile $f"
done
for f in /var/lib/vigil /var/lib/private/vigil "$wants"; do
    [ ! -e "$root$f" ] && [ ! -L "$root$f" ] || fail "purge left $f"
done
if st=$(in_root dpkg-query -W -f='${Status}' vigil 2>/dev/null); then
    case $st in
    *" not-installed") ;;
    *) fail "dpkg still has vigil after purge: $st" ;;
    esac
fi
echo "deb.sh: $name installed in a clean bookworm root, ran, removed and purged"
