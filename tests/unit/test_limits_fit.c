/* Fitting --max-connections to the host: each limit binding in turn (its
 * arithmetic, what the process already uses, the reserves), RLIMIT_NPROC
 * ignored when privileged, unlimited values, limits too small for even one
 * connection, ties, and the names logged. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "limits_fit.h"

#define MAP_RESERVE 1000

/* A host where nothing binds below a million connections; each test
 * tightens one thing. */
static vg_host_limits roomy(void)
{
    return (vg_host_limits){
        .nofile = 1u << 24,
        .max_map_count = 1u << 24,
        .maps_in_use = 50,
        .threads_max = 1u << 24,
        .pid_max = 1u << 22, /* the most the kernel allows */
        .threads_now = 200,
        .nproc = 1u << 24,
        .user_threads = 10,
        .nproc_applies = true,
        .pids_max = VG_UNLIMITED,
        .pids_current = 0,
    };
}

static vg_fit fit(const vg_host_limits *h, size_t asked)
{
    vg_conn_costs c = vg_limits_costs(MAP_RESERVE);
    vg_fit f;
    memset(&f, 0xa5, sizeof f); /* every field must be written */
    vg_limits_fit(h, &c, asked, &f);
    return f;
}

static void assert_fit(const vg_fit *f, size_t max, vg_limit by)
{
    cr_assert_eq(f->max_connections, max, "max_connections %zu, expected %zu", f->max_connections,
                 max);
    cr_assert_eq(f->limited_by, by, "limited_by %s, expected %s", vg_limit_name(f->limited_by),
                 vg_limit_name(by));
}

/* ---- the costs ---- */

Test(limits_fit, broker_costs_two_descriptors_and_two_mappings_per_connection)
{
    vg_conn_costs c = vg_limits_costs(1234);
    cr_assert_eq(c.fds, 2);
    cr_assert_eq(c.maps, 2);
    cr_assert_eq(c.fd_reserve, 64);
    cr_assert_eq(c.map_reserve, 1234);
    cr_assert_gt(c.task_reserve, 0);
}

/* ---- nothing binds ---- */

Test(limits_fit, roomy_host_keeps_the_value_asked)
{
    vg_host_limits h = roomy();
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, 65536, VG_LIMIT_NONE);
    f = fit(&h, 1);
    assert_fit(&f, 1, VG_LIMIT_NONE);
}

Test(limits_fit, value_asked_below_every_limit_stands)
{
    vg_host_limits h = roomy();
    h.nofile = 20000; /* room for 9968 */
    vg_fit f = fit(&h, 100);
    assert_fit(&f, 100, VG_LIMIT_NONE);
    cr_assert_eq(f.room[VG_LIMIT_NOFILE], 9968, "the room is reported even when it does not bind");
}

/* ---- each limit binding ---- */

Test(limits_fit, nofile_binds_two_descriptors_each_after_64_kept)
{
    vg_host_limits h = roomy();
    h.nofile = 20000;
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, (20000 - 64) / 2, VG_LIMIT_NOFILE);
    h.nofile = 1024; /* the usual default soft limit */
    f = fit(&h, 65536);
    assert_fit(&f, 480, VG_LIMIT_NOFILE);
    h.nofile = 1024 + 1; /* an odd descriptor left over is not half a connection */
    f = fit(&h, 65536);
    assert_fit(&f, 480, VG_LIMIT_NOFILE);
}

Test(limits_fit, max_map_count_binds_after_mappings_in_use_and_reserve)
{
    vg_host_limits h = roomy();
    h.max_map_count = 65530; /* the kernel's default */
    h.maps_in_use = 54;
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, (65530 - 54 - MAP_RESERVE) / 2, VG_LIMIT_MAX_MAP_COUNT);
    cr_assert_eq(f.room[VG_LIMIT_MAX_MAP_COUNT], 32238);
    h.maps_in_use = 20054; /* a process that already holds many mappings gets fewer */
    f = fit(&h, 65536);
    assert_fit(&f, (65530 - 20054 - MAP_RESERVE) / 2, VG_LIMIT_MAX_MAP_COUNT);
}

Test(limits_fit, threads_max_binds_after_the_systems_threads_and_reserve)
{
    vg_host_limits h = roomy();
    h.threads_max = 20000;
    h.threads_now = 500;
    vg_conn_costs c = vg_limits_costs(MAP_RESERVE);
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, 20000 - 500 - c.task_reserve, VG_LIMIT_THREADS_MAX);
}

Test(limits_fit, pid_max_binds_without_the_reserved_low_pids)
{
    vg_host_limits h = roomy();
    h.pid_max = 32768; /* the kernel's default without systemd's raise */
    h.threads_now = 130;
    vg_conn_costs c = vg_limits_costs(MAP_RESERVE);
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, 32768 - VG_PIDS_RESERVED - 130 - c.task_reserve, VG_LIMIT_PID_MAX);
}

Test(limits_fit, nproc_binds_for_an_unprivileged_user)
{
    vg_host_limits h = roomy();
    h.nproc = 4096;
    h.user_threads = 96; /* the user's other processes count against the same limit */
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, 4000, VG_LIMIT_NPROC);
}

Test(limits_fit, nproc_ignored_when_privileged)
{
    vg_host_limits h = roomy();
    h.nproc = 10;
    h.user_threads = 500; /* over it already: root can still create threads */
    h.nproc_applies = false;
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, 65536, VG_LIMIT_NONE);
    cr_assert_eq(f.room[VG_LIMIT_NPROC], VG_UNLIMITED);
}

Test(limits_fit, cgroup_pids_max_binds_like_systemd_tasks_max)
{
    vg_host_limits h = roomy();
    h.pids_max = 4915; /* systemd's default TasksMax: 15% of 32768 */
    h.pids_current = 1;
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, 4914, VG_LIMIT_PIDS_MAX);
}

Test(limits_fit, the_tightest_of_several_binds)
{
    vg_host_limits h = roomy();
    h.nofile = 1u << 20;        /* 524256 */
    h.max_map_count = 65530;    /* 32238 */
    h.maps_in_use = 54;
    h.pid_max = 32768;          /* 32768 - 300 - 200 - 1024 = 31244 */
    h.threads_max = 192729;     /* 191505 */
    h.nproc = 96364;            /* privileged: ignored */
    h.nproc_applies = false;
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, 31244, VG_LIMIT_PID_MAX);
    cr_assert_eq(f.room[VG_LIMIT_NOFILE], 524256);
    cr_assert_eq(f.room[VG_LIMIT_MAX_MAP_COUNT], 32238);
    cr_assert_eq(f.room[VG_LIMIT_THREADS_MAX], 191505);
    cr_assert_eq(f.room[VG_LIMIT_PIDS_MAX], VG_UNLIMITED);
    h.pid_max = 1u << 22; /* systemd raises it: then the mappings bind */
    f = fit(&h, 65536);
    assert_fit(&f, 32238, VG_LIMIT_MAX_MAP_COUNT);
}

Test(limits_fit, a_tie_names_the_first_limit)
{
    vg_host_limits h = roomy();
    h.nofile = 64 + 2 * 1000;
    h.pids_max = 1000;
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, 1000, VG_LIMIT_NOFILE);
}

/* ---- unlimited values ---- */

Test(limits_fit, unlimited_everywhere_keeps_the_value_asked)
{
    vg_host_limits h = {
        .nofile = VG_UNLIMITED,
        .max_map_count = VG_UNLIMITED,
        .threads_max = VG_UNLIMITED,
        .pid_max = VG_UNLIMITED,
        .threads_now = 1000000,
        .nproc = VG_UNLIMITED,
        .user_threads = 1000000,
        .nproc_applies = true,
        .pids_max = VG_UNLIMITED,
        .pids_current = 1000000,
    };
    vg_fit f = fit(&h, 1 << 24);
    assert_fit(&f, 1 << 24, VG_LIMIT_NONE);
    for (int l = 0; l < VG_LIMIT_COUNT; l++)
        cr_assert_eq(f.room[l], VG_UNLIMITED, "%s", vg_limit_name((vg_limit)l));
}

Test(limits_fit, unknown_use_counts_as_none)
{
    vg_host_limits h = roomy();
    h.max_map_count = 65530;
    h.maps_in_use = 0; /* /proc/self/maps unreadable */
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, (65530 - MAP_RESERVE) / 2, VG_LIMIT_MAX_MAP_COUNT);
}

Test(limits_fit, huge_finite_limits_do_not_overflow)
{
    vg_host_limits h = roomy();
    h.nofile = UINT64_MAX - 1;
    h.max_map_count = UINT64_MAX - 1;
    h.maps_in_use = 0;
    h.threads_now = 0;
    vg_fit f = fit(&h, SIZE_MAX);
    cr_assert_eq(f.room[VG_LIMIT_NOFILE], (UINT64_MAX - 1 - 64) / 2);
    cr_assert_eq(f.limited_by, VG_LIMIT_PID_MAX, "%s", vg_limit_name(f.limited_by));
}

/* ---- tiny limits ---- */

Test(limits_fit, too_few_descriptors_for_one_connection_still_gives_one)
{
    vg_host_limits h = roomy();
    h.nofile = 64 + 1; /* 1 spare descriptor: no whole connection */
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, 1, VG_LIMIT_NOFILE);
    cr_assert_eq(f.room[VG_LIMIT_NOFILE], 0);
    h.nofile = 10; /* below the reserve itself */
    f = fit(&h, 65536);
    assert_fit(&f, 1, VG_LIMIT_NOFILE);
    h.nofile = 64 + 2; /* exactly one */
    f = fit(&h, 65536);
    assert_fit(&f, 1, VG_LIMIT_NOFILE);
    cr_assert_eq(f.room[VG_LIMIT_NOFILE], 1);
}

Test(limits_fit, limits_already_used_up_give_one_and_name_the_limit)
{
    vg_host_limits h = roomy();
    h.max_map_count = 1000;
    h.maps_in_use = 2000;
    vg_fit f = fit(&h, 65536);
    assert_fit(&f, 1, VG_LIMIT_MAX_MAP_COUNT);

    h = roomy();
    h.nproc = 50;
    h.user_threads = 50;
    f = fit(&h, 65536);
    assert_fit(&f, 1, VG_LIMIT_NPROC);

    h = roomy();
    h.pid_max = 200; /* below the reserved pids */
    f = fit(&h, 65536);
    assert_fit(&f, 1, VG_LIMIT_PID_MAX);
}

Test(limits_fit, asking_for_one_on_a_host_with_no_room_names_the_limit)
{
    vg_host_limits h = roomy();
    h.pids_max = 10;
    h.pids_current = 10;
    vg_fit f = fit(&h, 1);
    assert_fit(&f, 1, VG_LIMIT_PIDS_MAX);
    f = fit(&h, 0); /* 0 is not a limit the broker can serve: read as 1 */
    assert_fit(&f, 1, VG_LIMIT_PIDS_MAX);
}

/* ---- names ---- */

Test(limits_fit, every_limit_has_its_own_name)
{
    cr_assert_str_eq(vg_limit_name(VG_LIMIT_NONE), "none");
    cr_assert_str_eq(vg_limit_name(VG_LIMIT_MAX_MAP_COUNT), "max_map_count");
    for (int a = 0; a < VG_LIMIT_COUNT; a++) {
        const char *na = vg_limit_name((vg_limit)a);
        cr_assert(na != NULL && na[0] != '\0' && strcmp(na, "unknown") != 0, "limit %d", a);
        cr_assert(strpbrk(na, " =\"") == NULL, "%s must be a plain log value", na);
        for (int b = a + 1; b < VG_LIMIT_COUNT; b++)
            cr_assert_str_neq(na, vg_limit_name((vg_limit)b));
    }
    cr_assert_str_eq(vg_limit_name(VG_LIMIT_COUNT), "unknown");
    cr_assert_str_eq(vg_limit_name((vg_limit)-1), "unknown");
}
