/* A strict little JSON checker for tests of documents the broker writes
 * (test_monz, test_monitor): true if s is exactly one valid JSON value.
 * The broker writes ASCII only, so a byte outside printable ASCII inside a
 * string fails too. */
#ifndef VG_JSONCHECK_H
#define VG_JSONCHECK_H

#include <stdbool.h>

bool h_json_valid(const char *s);

#endif
