#!/bin/sh
# test_install: `cmake --install` of BUILD_DIR into a temporary prefix puts
# every file in place, each man page names every option its program's
# --help does, the configuration file and its man page name every key (each
# broker flag but --help, --version, --config and --check-config) and the
# file passes --check-config, the systemd unit names the installed binary
# and configuration file (and passes `systemd-analyze verify` where that is
# installed), and the installed programs work: a broker started with the
# installed file and flags overriding its data dir, a message published to
# it and read back from the log. The install goes under a temporary DESTDIR
# too, which keeps files with absolute destinations (the sysconfdir's, with
# prefix /usr: /etc) out of the real /etc.
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
conf=$prefix/etc/vigil/broker.conf
conf_page=$prefix/share/man/man5/vigil-broker.conf.5
for f in bin/vigil-broker bin/vigil-pub bin/vigil-sub share/man/man1/vigil-broker.1 \
    share/man/man1/vigil-pub.1 share/man/man1/vigil-sub.1 lib/systemd/system/vigil-broker.service \
    etc/vigil/broker.conf share/man/man5/vigil-broker.conf.5; do
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

# Every key in the example file (commented out or set) and in its man page.
"$prefix/bin/vigil-broker" --help >"$tmp/help"
for o in $(grep -o -- '--[a-z][a-z-]*' "$tmp/help" | sort -u); do
    key=${o#--}
    case $key in help | version | config | check-config) continue ;; esac
    grep -Eq "^#?$key " "$conf" || fail "broker.conf has no line for the key $key"
    grep -q -- "$key" "$conf_page" || fail "vigil-broker.conf.5 does not name the key $key"
done
grep -q '^\.TH VIGIL-BROKER\.CONF 5 ' "$conf_page" || fail "vigil-broker.conf.5 has no .TH line"
"$prefix/bin/vigil-broker" --config "$conf" --check-config 2>"$tmp/check.log" ||
    fail "the installed broker.conf does not pass --check-config: $(cat "$tmp/check.log")"
grep -q "event=config_ok file=$conf\$" "$tmp/check.log" || fail "--check-config said: $(cat "$tmp/check.log")"

grep -q "^ExecStart=$prefix/bin/vigil-broker --config $conf " "$unit" ||
    fail "the unit does not start $prefix/bin/vigil-broker --config $conf: $(grep ExecStart "$unit")"
grep -q "^ExecReload=/bin/sh -c 'kill -HUP \\\$\\\$MAINPID'\$" "$unit" || fail "the unit has no ExecReload sending SIGHUP"
envfile=$(sed -n 's/^EnvironmentFile=-//p' "$unit")
[ -n "$envfile" ] || fail "the unit names no EnvironmentFile=-"
grep -q '^VIGIL_BROKER_OPTS=""$' "$dest$envfile" 2>/dev/null ||
    fail "$envfile, which the unit reads, is not installed with an empty VIGIL_BROKER_OPTS"
if command -v systemd-analyze >/dev/null 2>&1; then
    MANPATH=$prefix/share/man systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
else
    echo "test_install: systemd-analyze not installed: the unit was not verified"
fi

# The installed programs, against each other; flags win over the file's data-dir.
# The log exists before the broker does: the background job's redirection
# may not have made it yet when the loop below first reads it.
: >"$tmp/broker.log"
"$prefix/bin/vigil-broker" --config "$conf" --listen 127.0.0.1:0 --data-dir "$tmp/data" 2>"$tmp/broker.log" &
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
