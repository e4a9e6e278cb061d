/* The loopback ceiling: what one process can push through a TCP connection
 * on 127.0.0.1 in 64 KiB writes, counted in frames of the given size. No
 * broker, no parsing beyond the length prefixes: an upper bound for any. */
#ifndef BENCH_CEILING_H
#define BENCH_CEILING_H

#include <stddef.h>
#include <stdint.h>

/* Prints one key=value line; returns a process exit status. */
int bench_ceiling(size_t frame_size, uint64_t frames);

#endif
