#!/bin/sh
# test_examples: the client library as an application gets it. `cmake
# --install` of BUILD_DIR into a temporary prefix; libvigil.so.0 exports
# vigil_* only; docs/examples built twice against the installed files only,
# with `pkg-config --cflags --libs vigil` and with CMake's find_package(vigil);
# then the examples run against the installed broker (with a data dir): two
# queue workers and a resuming subscriber, 100 messages published, the
# broker killed with SIGKILL and started again, 100 more. The subscriber
# must print seq 1..200 once each and in order; the workers together must
# have every message: at least once, and once each in practice, since the
# kill comes after the broker lists the group's position at 100.
#   usage: examples.sh BUILD_DIR SOURCE_DIR [SANITIZE]
set -eu
build=$1
src=$2
san=${3:-}
tmp=$(mktemp -d)
bpid= pids= spid=
cleanup() {
    for p in $pids $spid $bpid; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "test_examples: $*" >&2
    for f in "$tmp"/*.err "$tmp"/broker*.log; do
        [ -e "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }
    done
    exit 1
}
# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 50 ms until it succeeds.
wait_for() {
    secs=$1 what=$2
    shift 2
    i=0
    until "$@"; do
        i=$((i + 1))
        [ "$i" -lt $((secs * 20)) ] || fail "waited $secs s for $what"
        sleep 0.05
    done
}

prefix=$tmp/usr
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || fail "cmake --install failed"
lib=$prefix/lib
for f in include/vigil/vigil.h lib/libvigil.so lib/libvigil.a lib/pkgconfig/vigil.pc \
    lib/cmake/vigil/vigilConfig.cmake lib/cmake/vigil/vigilConfigVersion.cmake; do
    [ -e "$prefix/$f" ] || fail "not installed: $f"
done
soname=$(readelf -d "$lib/libvigil.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libvigil.so.0 ] || fail "SONAME is '$soname', not libvigil.so.0"
others=$(nm -D --defined-only "$lib/libvigil.so" | awk '{print $3}' | grep -v '^vigil_' || true)
[ -z "$others" ] || fail "libvigil.so exports more than vigil_*: $(echo $others | head -c 300)"

# Sanitizer builds instrument the library: the examples must be too.
cflags="-Wall -Wextra -Werror"
[ -z "$san" ] || cflags="$cflags -fsanitize=$san"
export PKG_CONFIG_PATH=$lib/pkgconfig
for e in publisher resuming_subscriber queue_worker; do
    # shellcheck disable=SC2046 # pkg-config's words are separate flags
    ${CC:-cc} $cflags -o "$tmp/$e" "$src/docs/examples/$e.c" $(pkg-config --cflags --libs vigil) \
        -Wl,-rpath,"$lib" 2>"$tmp/cc.log" || fail "$e does not build with pkg-config: $(cat "$tmp/cc.log")"
done
cmake -S "$src/docs/examples" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="$cflags" >"$tmp/cmake.log" 2>&1 || fail "find_package(vigil): $(tail -20 "$tmp/cmake.log")"
cmake --build "$tmp/cmake-build" >"$tmp/cmake.log" 2>&1 || fail "the examples' CMake build: $(tail -20 "$tmp/cmake.log")"
[ -x "$tmp/cmake-build/queue_worker" ] || fail "the CMake build made no queue_worker"

# start_broker LISTEN LOG: the installed broker; sets bpid and port.
listening() {
    port=$(sed -n 's/.*event=listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$blog")
    [ -n "$port" ] || { kill -0 "$bpid" 2>/dev/null || fail "vigil-broker exited"; return 1; }
}
start_broker() {
    blog=$2
    "$prefix/bin/vigil-broker" --listen "$1" --data-dir "$tmp/data" 2>"$blog" &
    bpid=$!
    port=
    wait_for 10 "vigil-broker's event=listening line in $blog" listening
}
start_broker 127.0.0.1:0 "$tmp/broker1.log"
server=127.0.0.1:$port

"$tmp/queue_worker" "$server" jobs workers w1 >"$tmp/w1.out" 2>"$tmp/w1.err" &
pids="$pids $!"
"$tmp/cmake-build/queue_worker" "$server" jobs workers w2 >"$tmp/w2.out" 2>"$tmp/w2.err" &
pids="$pids $!"
"$tmp/resuming_subscriber" "$server" 'jobs' 200 >"$tmp/sub.out" 2>"$tmp/sub.err" &
spid=$!
members() { [ "$(cat "$tmp/w1.err" "$tmp/w2.err" | grep -c 'is a member')" -eq 2 ]; }
wait_for 10 "both workers to join the group" members
"$tmp/publisher" "$server" jobs 100 first 2>"$tmp/pub1.err" || fail "publisher (first 100) failed"
lines() { [ "$(cat "$tmp/sub.out" | wc -l)" -ge "$1" ]; }
wait_for 10 "the subscriber's first 100 lines" lines 100
worked() { [ "$(cat "$tmp/w1.out" "$tmp/w2.out" | awk '{print $3}' | sort -nu | wc -l)" -eq "$1" ]; }
wait_for 10 "the workers to have the first 100 jobs between them" worked 100
acked() {
    "$prefix/bin/vigil-sub" --server "$server" --list-durables 2>/dev/null | grep -q '"acked":100,'
}
wait_for 10 "the broker to list the group's position at 100 (vigil-sub --list-durables)" acked

kill -9 "$bpid"
wait "$bpid" 2>/dev/null || true
start_broker "$server" "$tmp/broker2.log"
"$tmp/publisher" "$server" jobs 100 second 2>"$tmp/pub2.err" || fail "publisher (second 100) failed"
wait "$spid" || fail "resuming_subscriber did not get 200 messages"
spid=
grep -q 'reconnected to' "$tmp/sub.err" || fail "the subscriber never said it reconnected"

seq 1 200 >"$tmp/want"
awk '{print $2}' "$tmp/sub.out" >"$tmp/got"
cmp -s "$tmp/want" "$tmp/got" || fail "the subscriber's seqs are not 1..200 once each in order: $(diff "$tmp/want" "$tmp/got" | head -5)"
[ "$(sed -n 1p "$tmp/sub.out")" = "jobs 1 first-1" ] || fail "first line: $(sed -n 1p "$tmp/sub.out")"
[ "$(sed -n 200p "$tmp/sub.out")" = "jobs 200 second-100" ] || fail "last line: $(sed -n 200p "$tmp/sub.out")"

wait_for 10 "the workers to have all 200 jobs between them" worked 200
[ -s "$tmp/w1.out" ] && [ -s "$tmp/w2.out" ] || fail "one worker got nothing: the group did not share"
for p in $pids; do kill "$p" 2>/dev/null || true; done
for p in $pids; do wait "$p" || fail "a worker did not stop cleanly on SIGTERM"; done
pids=
echo "test_examples: built with pkg-config and find_package; 200/200 resumed in order across a kill -9;" \
    "workers $(wc -l <"$tmp/w1.out") + $(wc -l <"$tmp/w2.out") lines for 200 jobs"
