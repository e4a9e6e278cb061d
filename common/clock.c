#include "clock.h"

#include <errno.h>
#include <time.h>

int64_t vg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t vg_now_ms(void) { return vg_now_ns() / 1000000; }

void vg_timespec_add_ms(struct timespec *t, int64_t ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000;
    if (t->tv_nsec >= 1000000000) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000;
    }
}

struct timespec vg_deadline_after(int64_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    vg_timespec_add_ms(&t, ms);
    return t;
}

vg_deadline vg_deadline_in(int timeout_ms)
{
    vg_deadline d = {.forever = timeout_ms < 0};
    if (!d.forever)
        d.at = vg_deadline_after(timeout_ms);
    return d;
}

bool vg_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, const vg_deadline *d)
{
    if (d->forever) {
        pthread_cond_wait(cv, mu);
        return true;
    }
    return pthread_cond_timedwait(cv, mu, &d->at) != ETIMEDOUT;
}

int vg_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

int64_t vg_clock_suspended_ms(int64_t *offset, int64_t boot_ns, int64_t mono_ns)
{
    int64_t gap = boot_ns - mono_ns;
    int64_t grew = *offset != 0 ? gap - *offset : 0;
    *offset = gap;
    return grew >= 50 * 1000000 ? grew / 1000000 : 0;
}

int vg_poll_timeout(int64_t deadline_ms, int64_t now_ms)
{
    if (deadline_ms == INT64_MAX)
        return -1;
    int64_t d = deadline_ms - now_ms;
    return d <= 0 ? 0 : d > INT32_MAX ? INT32_MAX : (int)d;
}
