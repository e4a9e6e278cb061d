/* What renews a subscription on a new connection (client_internal.h,
 * vg_client_put_renewal), on the I/O thread under c->mu.
 *
 *   a topic          SUB SEQ of the message after the topic's last one
 *                    (or the start asked for, if none was placed yet);
 *                    seven elements with the durable name
 *   a pattern        if its OK came in the current epoch: a POS for each
 *                    topic it has a position for, then SUB SEQ position 0
 *                    (RESUME: every other topic from its first retained
 *                    message); after an epoch change, SUB FIRST; before
 *                    any OK, the start asked for
 *   a queue member   the eight-element SUB as first sent: the group's
 *                    position is the broker's */
#include "client_internal.h"

#include "topic.h"

/* The POS frames of pattern sid: one per topic it reads with a position. */
static vg_status put_positions(vg_client *c, vg_buf *out, uint64_t sid)
{
    const vg_client_topics *tb = &c->filter.topics;
    for (size_t i = 0; i < tb->n; i++) {
        const vg_client_topic *t = &tb->v[i];
        const vg_client_member *m = vg_topic_member(t, sid);
        if (m == NULL || m->queue || (!t->pos.anchored && t->pos.epoch == 0))
            continue; /* never placed: the broker starts it at its first retained */
        vg_sub_start start;
        uint64_t epoch, next;
        vg_resume_sub(&t->pos, &start, &epoch, &next);
        vg_status st = vg_frame_put_pos(out, sid, t->topic, t->len, epoch, next);
        if (st != VG_OK)
            return st;
    }
    return VG_OK;
}

vg_status vg_client_put_renewal(vg_client *c, vg_buf *out, uint64_t sid, const char *subject,
                                size_t len)
{
    const char *name = NULL, *queue = NULL;
    size_t nlen = 0, qlen = 0;
    vg_subs_durable(c->subs, sid, &name, &nlen);
    vg_subs_queue(c->subs, sid, &queue, &qlen);
    const vg_client_filter *f = &c->filter;
    const vg_client_sid *s = f->valid ? vg_client_filter_sid(f, sid) : NULL;
    /* Without the copy (out of memory), from now on. */
    vg_sub_start start = VG_SUB_NEW;
    uint64_t epoch = 0, position = 0;
    if (queue != NULL) {
        if (s != NULL) {
            start = s->from.start;
            epoch = s->from.epoch;
            position = s->from.position;
        }
        return vg_frame_put_sub_queue(out, sid, subject, len, start, epoch, position, name, nlen,
                                      queue, qlen);
    }
    if (vg_subject_is_pattern(subject, len)) {
        if (s != NULL && s->ok_epoch != 0 && s->ok_epoch == c->conn_epoch) {
            vg_status st = put_positions(c, out, sid);
            if (st != VG_OK)
                return st;
            start = VG_SUB_SEQ;
            epoch = c->conn_epoch;
        } else if (s != NULL && s->ok_epoch != 0) {
            start = VG_SUB_FIRST; /* the broker lost its log: the new one from its start */
        } else if (s != NULL) {
            start = s->from.start;
            position = start == VG_SUB_AGO ? s->from.position : 0;
        }
    } else {
        const vg_client_topic *t = f->valid ? vg_topics_find(&f->topics, subject, len) : NULL;
        if (t != NULL)
            vg_resume_sub(&t->pos, &start, &epoch, &position);
    }
    if (name != NULL)
        return vg_frame_put_sub_durable(out, sid, subject, len, start, epoch, position, name,
                                        nlen);
    return vg_frame_put_sub2(out, sid, subject, len, start, epoch, position);
}
