/* TEMPORARY shim (lead): the API of the matcher being written on branch
 * h-sublist; linear, uncached. Replaced before landing. */
#ifndef VG_SUBLIST_H
#define VG_SUBLIST_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct vg_sublist vg_sublist;
typedef struct vg_sublist_cache vg_sublist_cache;
typedef struct {
    const char *name;
    uint32_t name_len;
    void *const *members;
    size_t n;
} vg_sublist_group;
typedef struct {
    void *const *members;
    size_t n;
    const vg_sublist_group *groups;
    size_t ngroups;
} vg_sublist_result;

vg_sublist *vg_sublist_create(void (*retain)(void *), void (*release)(void *));
void vg_sublist_destroy(vg_sublist *sl);
vg_status vg_sublist_add(vg_sublist *sl, const char *subj, size_t len, const char *queue,
                         size_t qlen, void *member);
void vg_sublist_remove(vg_sublist *sl, const char *subj, size_t len, const char *queue,
                       size_t qlen, void *member);
vg_sublist_cache *vg_sublist_cache_create(vg_sublist *sl);
void vg_sublist_cache_destroy(vg_sublist_cache *c);
vg_status vg_sublist_match(vg_sublist_cache *c, const char *topic, size_t len,
                           const vg_sublist_result **out);
void vg_sublist_cache_sweep(vg_sublist_cache *c);
void vg_sublist_counts(vg_sublist *sl, size_t *subjects, size_t *entries);

#endif
