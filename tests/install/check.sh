#!/bin/sh
# test_install: `cmake --install` of BUILD_DIR into a temporary prefix puts
# every file in place, each man page names every option its program's
# --help does, the systemd unit names the installed binary and its
# environment file (and passes `systemd-analyze verify` where that is
# installed), and the installed programs work: a broker with a data dir, a
# message published to it and read back from the log. The install goes
# under a temporary DESTDIR too, which keeps the files with absolute
# destinations (the sysconfdir's) out of the real /usr/local/etc or /etc.
#   usage: check.sh BUILD_DIR
set -eu
build=$1
tmp=$(mktemp -d)
bpid=
cleanup() {
    [ -z "$bpid" ] || kill "$bpid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "test_install: $*" >&2
    exit 1
}

prefix=$tmp/usr
dest=$tmp/dest
DESTDIR=$dest cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
    fail "cmake --install failed: $(cat "$tmp/install.log")"
# The prefix as the installed files name it, so that the unit's ExecStart
# exists for systemd-analyze verify.
ln -s "$dest$prefix" "$prefix"
unit=$prefix/lib/systemd/system/vigil-broker.service
for f in bin/vigil-broker bin/vigil-pub bin/vigil-sub share/man/man1/vigil-broker.1 \
    share/man/man1/vigil-pub.1 share/man/man1/vigil-sub.1 lib/systemd/system/vigil-broker.service; do
    [ -e "$prefix/$f" ] || fail "not installed: $f"
done

for p in broker pub sub; do
    "$prefix/bin/vigil-$p" --help >"$tmp/help" || fail "vigil-$p --help failed"
    page=$prefix/share/man/man1/vigil-$p.1
    grep -q "^\.TH VIGIL-$(echo "$p" | tr a-z A-Z) 1 " "$page" || fail "vigil-$p.1 has no .TH line"
    for o in $(grep -o -- '--[a-z][a-z-]*' "$tmp/help" | sort -u); do
        grep -q -- "$o" "$page" || fail "vigil-$p.1 does not name $o, which vigil-$p --help does"
    done
done

grep -q "^ExecStart=$prefix/bin/vigil-broker " "$unit" || fail "the unit does not start $prefix/bin/vigil-broker: $(grep ExecStart "$unit")"
envfile=$(sed -n 's/^EnvironmentFile=-//p' "$unit")
[ -n "$envfile" ] || fail "the unit names no EnvironmentFile=-"
grep -q '^VIGIL_BROKER_OPTS=""$' "$dest$envfile" 2>/dev/null ||
    fail "$envfile, which the unit reads, is not installed with an empty VIGIL_BROKER_OPTS"
if command -v systemd-analyze >/dev/null 2>&1; then
    MANPATH=$prefix/share/man systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
else
    echo "test_install: systemd-analyze not installed: the unit was not verified"
fi

# The installed programs, against each other.
"$prefix/bin/vigil-broker" --listen 127.0.0.1:0 --data-dir "$tmp/data" 2>"$tmp/broker.log" &
bpid=$!
port=
i=0
while [ -z "$port" ]; do
    port=$(sed -n 's/.*event=listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/broker.log")
    [ -n "$port" ] && break
    kill -0 "$bpid" 2>/dev/null || fail "vigil-broker exited: $(cat "$tmp/broker.log")"
    i=$((i + 1))
    [ "$i" -lt 200 ] || fail "waited 10 s for vigil-broker's event=listening line"
    sleep 0.05
done
"$prefix/bin/vigil-pub" --server "127.0.0.1:$port" installed.check hello 2>"$tmp/pub.log" ||
    fail "vigil-pub: $(cat "$tmp/pub.log")"
timeout 10 "$prefix/bin/vigil-sub" --server "127.0.0.1:$port" --since first --count 1 \
    installed.check >"$tmp/out" 2>"$tmp/sub.log" || fail "vigil-sub: $(cat "$tmp/sub.log")"
[ "$(cat "$tmp/out")" = "installed.check MSG_TYPE1 hello" ] || fail "vigil-sub printed '$(cat "$tmp/out")'"
echo "test_install: installed into $prefix and checked"
