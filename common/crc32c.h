/* CRC-32C (Castagnoli), the checksum of the durable log's blocks, as in
 * ext4, iSCSI and Kafka's record batches: the SSE4.2 instruction where the
 * CPU has it, else a table. Pure. */
#ifndef VG_CRC32C_H
#define VG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of len bytes at p, continuing from crc (0 to start). */
uint32_t vg_crc32c(uint32_t crc, const void *p, size_t len);

#endif
