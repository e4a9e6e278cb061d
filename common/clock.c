#include "clock.h"

#include <time.h>

int64_t vg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t vg_now_ms(void) { return vg_now_ns() / 1000000; }
