/* Durable subscribers' table (broker/durable.c): claiming new and existing
 * ones, a takeover handing back the previous owner, acks that only move
 * forward and only for the owner, leaving that keeps the position,
 * forgetting, recovery's restore, the $SYS.durables JSON byte for byte,
 * and the count. Owners are plain pointers retained through a counting
 * stub. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "durable.h"

static int retains;
static void *last_retained;

static void retain(void *owner)
{
    retains++;
    last_retained = owner;
}

static int owner_a, owner_b, owner_c; /* their addresses are the owners */

#define S(x) x, strlen(x) /* a name or topic as (pointer, length) */

static vg_durables *make(void)
{
    retains = 0;
    last_retained = NULL;
    vg_durables *d = vg_durables_create();
    cr_assert_not_null(d);
    return d;
}

static void claim(vg_durables *d, const char *name, const char *topic, void *owner,
                  uint64_t want_acked, bool want_existed, void *want_prev)
{
    uint64_t acked = 12345;
    bool existed = !want_existed;
    void *prev = (void *)&acked; /* anything but what is expected */
    int before = retains;
    cr_assert_eq(vg_durables_claim(d, S(name), S(topic), owner, retain, &acked, &existed, &prev),
                 VG_OK);
    cr_assert_eq(retains, before + 1, "the new owner is retained once");
    cr_assert_eq(last_retained, owner);
    cr_assert_eq(acked, want_acked, "%s/%s: acked %llu", name, topic, (unsigned long long)acked);
    cr_assert_eq(existed, want_existed);
    cr_assert_eq(prev, want_prev);
}

Test(durables, claim_new_then_existing)
{
    vg_durables *d = make();
    cr_assert_eq(vg_durables_count(d), 0);
    claim(d, "w", "orders", &owner_a, 0, false, NULL);
    cr_assert_eq(vg_durables_count(d), 1);
    cr_assert(vg_durables_held(d, S("w"), S("orders"), &owner_a));
    cr_assert(vg_durables_ack(d, S("w"), S("orders"), &owner_a, 7));
    cr_assert(vg_durables_leave(d, S("w"), S("orders"), &owner_a));
    claim(d, "w", "orders", &owner_b, 7, true, NULL); /* existing, nobody holding it */
    cr_assert_eq(vg_durables_count(d), 1);
    /* the same name on another topic, another name on the same topic: others */
    claim(d, "w", "orders.eu", &owner_c, 0, false, NULL);
    claim(d, "x", "orders", &owner_c, 0, false, NULL);
    claim(d, "", "orders", &owner_c, 0, false, NULL);
    cr_assert_eq(vg_durables_count(d), 4);
    vg_durables_destroy(d);
    vg_durables_destroy(NULL);
}

Test(durables, takeover_returns_the_previous_owner)
{
    vg_durables *d = make();
    claim(d, "w", "t", &owner_a, 0, false, NULL);
    cr_assert(vg_durables_ack(d, S("w"), S("t"), &owner_a, 3));
    claim(d, "w", "t", &owner_b, 3, true, &owner_a); /* owner_a's reference passes back */
    cr_assert_not(vg_durables_held(d, S("w"), S("t"), &owner_a));
    cr_assert(vg_durables_held(d, S("w"), S("t"), &owner_b));
    /* the old owner can neither ack nor leave any more */
    cr_assert_not(vg_durables_ack(d, S("w"), S("t"), &owner_a, 10));
    cr_assert_not(vg_durables_leave(d, S("w"), S("t"), &owner_a));
    cr_assert(vg_durables_held(d, S("w"), S("t"), &owner_b));
    /* taken over by the same owner again: it is its own previous owner */
    claim(d, "w", "t", &owner_b, 3, true, &owner_b);
    vg_durables_destroy(d);
}

Test(durables, ack_moves_forward_only_and_only_for_the_owner)
{
    vg_durables *d = make();
    claim(d, "w", "t", &owner_a, 0, false, NULL);
    cr_assert_not(vg_durables_ack(d, S("w"), S("t"), &owner_a, 0), "0 is not past 0");
    cr_assert(vg_durables_ack(d, S("w"), S("t"), &owner_a, 5));
    cr_assert_not(vg_durables_ack(d, S("w"), S("t"), &owner_a, 5), "the same again");
    cr_assert_not(vg_durables_ack(d, S("w"), S("t"), &owner_a, 4), "backwards");
    cr_assert_not(vg_durables_ack(d, S("w"), S("t"), &owner_b, 9), "not the owner");
    cr_assert_not(vg_durables_ack(d, S("w"), S("t"), NULL, 9), "nobody");
    cr_assert_not(vg_durables_ack(d, S("w"), S("u"), &owner_a, 9), "another topic");
    cr_assert_not(vg_durables_ack(d, S("v"), S("t"), &owner_a, 9), "another name");
    cr_assert(vg_durables_ack(d, S("w"), S("t"), &owner_a, UINT64_MAX));
    claim(d, "w", "t", &owner_b, UINT64_MAX, true, &owner_a);
    vg_durables_destroy(d);
}

Test(durables, leave_keeps_the_position)
{
    vg_durables *d = make();
    claim(d, "w", "t", &owner_a, 0, false, NULL);
    cr_assert(vg_durables_ack(d, S("w"), S("t"), &owner_a, 42));
    cr_assert_not(vg_durables_leave(d, S("w"), S("t"), &owner_b), "not held by b");
    cr_assert(vg_durables_held(d, S("w"), S("t"), &owner_a));
    cr_assert(vg_durables_leave(d, S("w"), S("t"), &owner_a));
    cr_assert_not(vg_durables_leave(d, S("w"), S("t"), &owner_a), "once");
    cr_assert_not(vg_durables_held(d, S("w"), S("t"), &owner_a));
    cr_assert_not(vg_durables_leave(d, S("nobody"), S("t"), &owner_a));
    cr_assert_not(vg_durables_ack(d, S("w"), S("t"), &owner_a, 50), "not connected: no ack");
    cr_assert_eq(vg_durables_count(d), 1);
    claim(d, "w", "t", &owner_a, 42, true, NULL);
    vg_durables_destroy(d);
}

Test(durables, forget_deletes_and_hands_back_the_holder)
{
    vg_durables *d = make();
    claim(d, "w", "t", &owner_a, 0, false, NULL);
    claim(d, "x", "t", &owner_b, 0, false, NULL);
    claim(d, "y", "t", &owner_c, 0, false, NULL);
    cr_assert(vg_durables_ack(d, S("w"), S("t"), &owner_a, 9));
    cr_assert(vg_durables_leave(d, S("y"), S("t"), &owner_c));
    void *prev = &owner_c;
    cr_assert(vg_durables_forget(d, S("w"), S("t"), &prev));
    cr_assert_eq(prev, &owner_a);
    cr_assert_eq(vg_durables_count(d), 2);
    cr_assert_not(vg_durables_held(d, S("w"), S("t"), &owner_a));
    prev = &owner_c;
    cr_assert_not(vg_durables_forget(d, S("w"), S("t"), &prev), "already gone");
    cr_assert_null(prev);
    prev = &owner_a;
    cr_assert(vg_durables_forget(d, S("y"), S("t"), &prev), "not connected");
    cr_assert_null(prev);
    /* the other one untouched by the moves in the array */
    cr_assert(vg_durables_held(d, S("x"), S("t"), &owner_b));
    cr_assert_eq(vg_durables_count(d), 1);
    /* made again: from 0 */
    claim(d, "w", "t", &owner_a, 0, false, NULL);
    vg_durables_destroy(d);
}

Test(durables, restore_creates_keeps_the_higher_and_forgets)
{
    vg_durables *d = make();
    cr_assert_eq(vg_durables_restore(d, S("w"), S("t"), 10, false), VG_OK);
    cr_assert_eq(vg_durables_restore(d, S("w"), S("t"), 8, false), VG_OK);
    cr_assert_eq(vg_durables_restore(d, S("x"), S("t"), 3, false), VG_OK);
    cr_assert_eq(vg_durables_restore(d, S("z"), S("t"), 0, true), VG_OK, "forget of none");
    cr_assert_eq(vg_durables_count(d), 2);
    claim(d, "w", "t", &owner_a, 10, true, NULL);
    cr_assert_eq(vg_durables_restore(d, S("x"), S("t"), 0, true), VG_OK);
    cr_assert_eq(vg_durables_count(d), 1);
    cr_assert_eq(vg_durables_restore(d, S("x"), S("t"), 2, false), VG_OK, "made again, lower");
    claim(d, "x", "t", &owner_b, 2, true, NULL);
    vg_durables_destroy(d);
}

static int next_calls;

static uint64_t next_stub(void *ud, const char *topic, size_t len)
{
    cr_assert_eq(ud, &next_calls);
    next_calls++;
    if (len == 6 && memcmp(topic, "orders", 6) == 0)
        return 100;
    return 7;
}

Test(durables, json_is_exact)
{
    vg_durables *d = make();
    vg_buf out = {0};
    next_calls = 0;
    cr_assert_eq(vg_durables_json(d, &out, next_stub, &next_calls), VG_OK);
    cr_assert_eq(out.len, strlen("{\"durables\":[]}"));
    cr_assert_eq(memcmp(out.data, "{\"durables\":[]}", out.len), 0);
    cr_assert_eq(next_calls, 0);
    vg_buf_free(&out);

    claim(d, "worker-1", "orders", &owner_a, 0, false, NULL);
    cr_assert(vg_durables_ack(d, S("worker-1"), S("orders"), &owner_a, 41));
    claim(d, "a\"b\\c", "logs.x", &owner_b, 0, false, NULL);
    cr_assert(vg_durables_leave(d, S("a\"b\\c"), S("logs.x"), &owner_b));
    cr_assert_eq(vg_durables_json(d, &out, next_stub, &next_calls), VG_OK);
    /* sorted by name, then topic */
    const char *want = "{\"durables\":["
                       "{\"name\":\"a\\\"b\\\\c\",\"topic\":\"logs.x\",\"acked\":0,\"next\":7,"
                       "\"connected\":false},"
                       "{\"name\":\"worker-1\",\"topic\":\"orders\",\"acked\":41,\"next\":100,"
                       "\"connected\":true}]}";
    cr_assert_eq(out.len, strlen(want), "got %.*s", (int)out.len, (const char *)out.data);
    cr_assert_eq(memcmp(out.data, want, out.len), 0, "got %.*s", (int)out.len,
                 (const char *)out.data);
    cr_assert_eq(next_calls, 2);
    /* appended after what out held */
    cr_assert_eq(vg_durables_json(d, &out, next_stub, &next_calls), VG_OK);
    cr_assert_eq(out.len, 2 * strlen(want));
    vg_buf_free(&out);
    vg_durables_destroy(d);
}

Test(durables, count_follows_claims_and_forgets)
{
    vg_durables *d = make();
    char name[16];
    for (int i = 0; i < 100; i++) { /* past the first growth of the array */
        snprintf(name, sizeof name, "n%d", i);
        claim(d, name, "t", &owner_a, 0, false, NULL);
        cr_assert_eq(vg_durables_count(d), (size_t)i + 1);
    }
    cr_assert_eq(retains, 100);
    for (int i = 0; i < 100; i += 2) {
        snprintf(name, sizeof name, "n%d", i);
        void *prev;
        cr_assert(vg_durables_forget(d, S(name), S("t"), &prev));
        cr_assert_eq(prev, &owner_a);
    }
    cr_assert_eq(vg_durables_count(d), 50);
    for (int i = 1; i < 100; i += 2) {
        snprintf(name, sizeof name, "n%d", i);
        cr_assert(vg_durables_held(d, S(name), S("t"), &owner_a), "%s", name);
    }
    vg_durables_destroy(d);
}
