/* libvigil-mapfill.so: an LD_PRELOAD library that makes a process start with
 * $VIGIL_MAPFILL extra memory mappings, so that vm.max_map_count is reached
 * after fewer threads. It lets vigil-maxconn show the mapping limit binding
 * on a machine whose descriptor limit cannot be raised far enough to reach
 * it, without lowering the system-wide sysctl under everyone else.
 *
 * One PROT_NONE reservation, then every other page made readable: the
 * kernel cannot merge neighbours with different protections, so n pages
 * become n mappings. Costs n pages of address space, no memory. */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

__attribute__((constructor)) static void mapfill(void)
{
    const char *s = getenv("VIGIL_MAPFILL");
    long n = s != NULL ? atol(s) : 0;
    if (n <= 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    char *base = mmap(NULL, (size_t)(n + 1) * (size_t)page, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return;
    for (long i = 1; i < n; i += 2)
        if (mprotect(base + i * page, (size_t)page, PROT_READ) != 0)
            return; /* the limit itself: stop there */
}
