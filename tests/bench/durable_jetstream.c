/* The JetStream backend of the durable cases (durable.h), through libnats.
 *
 * The stream: file storage, one replica, the bench topic as its only
 * subject, no limits (jsStreamConfig_Init's -1s: nothing is ever dropped),
 * discard old (moot without limits). Named after the topic, '.' -> '_';
 * setup deletes any stream of that name first, teardown deletes it.
 *
 * Publishing: js_PublishAsync on a connection of its own per publisher,
 * at most tuning.max_pending publishes awaiting their ack
 * (jsOptions.PublishAsync.MaxPending); at that bound js_PublishAsync
 * waits (StallWait, set long: a stall is back-pressure, not a failure).
 * js_PublishAsyncComplete waits for every ack; an ack with an error is
 * counted by the error handler.
 *
 * Replay: a durable pull consumer (js_PullSubscribe, durable name
 * "bench_replay", deliver all, AckAll), natsSubscription_Fetch of
 * tuning.fetch_batch messages at a time (the last batch asks only for
 * what is left), and one natsMsg_Ack per batch, of its last message: with
 * AckAll that acknowledges the whole batch. MaxAckPending is set well above
 * one batch, so acknowledgements never hold delivery back. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "durable.h"

#define STALL_WAIT_MS 60000
#define DURABLE_NAME "bench_replay"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void report(const char *what, natsStatus s, jsErrCode jerr)
{
    fprintf(stderr, "jetstream: %s: %s (%s)", what, natsStatus_GetText(s), nats_GetLastError(NULL));
    if (jerr != 0)
        fprintf(stderr, " [JetStream error %d]", (int)jerr);
    fprintf(stderr, "\n");
}

/* A stream name may not hold '.', '*', '>', '/', '\\' or white space. */
static void stream_name(const char *topic, char *out, size_t cap)
{
    int n = snprintf(out, cap, "BENCH_%s", topic);
    for (char *p = out; n > 0 && *p != '\0'; p++)
        if (*p == '.' || *p == '*' || *p == '>' || *p == '/' || *p == '\\' || *p == ' ')
            *p = '_';
}

typedef struct {
    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
} js_conn;

static void js_conn_close(js_conn *c)
{
    jsCtx_Destroy(c->js);
    if (c->nc != NULL)
        natsConnection_Close(c->nc);
    natsConnection_Destroy(c->nc);
    natsOptions_Destroy(c->opts);
    c->js = NULL, c->nc = NULL, c->opts = NULL;
}

/* Connects (no reconnection: a lost connection is a failure, not a
 * silent wait) and makes a JetStream context with jo. */
static int js_conn_open(js_conn *c, const char *server, const char *name, jsOptions *jo)
{
    char url[300];
    snprintf(url, sizeof url, "nats://%s", server);
    natsStatus s = natsOptions_Create(&c->opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(c->opts, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(c->opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(c->opts, false);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(c->opts, 5000);
    if (s == NATS_OK)
        s = natsConnection_Connect(&c->nc, c->opts);
    if (s == NATS_OK)
        s = natsConnection_JetStream(&c->js, c->nc, jo);
    if (s != NATS_OK) {
        report(url, s, 0);
        js_conn_close(c);
        return -1;
    }
    return 0;
}

static int j_setup(const char *server, const char *topic, const durable_tuning *t)
{
    (void)t;
    js_conn c = {0};
    if (js_conn_open(&c, server, "bench-setup", NULL) != 0)
        return -1;
    char name[300];
    stream_name(topic, name, sizeof name);
    jsErrCode jerr = 0;
    natsStatus s = js_DeleteStream(c.js, name, NULL, &jerr);
    if (s == NATS_NO_RESPONDERS) {
        fprintf(stderr, "jetstream: %s does not serve JetStream (start nats-server with -js)\n",
                server);
        js_conn_close(&c);
        return -1;
    }
    if (s != NATS_OK && s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        report("delete stream", s, jerr);
        js_conn_close(&c);
        return -1;
    }
    nats_GetLastError(NULL); /* the "not found" above is not an error */
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[] = {topic};
    sc.Name = name;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = 1;
    sc.Retention = js_LimitsPolicy; /* with every limit at -1: keeps everything */
    sc.Discard = js_DiscardOld;
    jsStreamInfo *si = NULL;
    jerr = 0;
    s = js_AddStream(&si, c.js, &sc, NULL, &jerr);
    if (s != NATS_OK) {
        report("add stream", s, jerr);
        js_conn_close(&c);
        return -1;
    }
    jsStreamInfo_Destroy(si);
    js_conn_close(&c);
    return 0;
}

static void j_teardown(const char *server, const char *topic)
{
    js_conn c = {0};
    if (js_conn_open(&c, server, "bench-teardown", NULL) != 0)
        return;
    char name[300];
    stream_name(topic, name, sizeof name);
    jsErrCode jerr = 0;
    natsStatus s = js_DeleteStream(c.js, name, NULL, &jerr);
    if (s != NATS_OK)
        report("delete stream", s, jerr);
    js_conn_close(&c);
}

/* ---- publishers ---- */

struct durable_pub {
    js_conn c;
    char *topic;
    uint64_t published;
    _Atomic uint64_t errors; /* acks that came back with an error */
};

static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    struct durable_pub *p = closure;
    (void)js;
    if (atomic_fetch_add(&p->errors, 1) < 5)
        fprintf(stderr, "jetstream: publish failed: %s (%s)\n", natsStatus_GetText(pae->Err),
                pae->ErrText != NULL ? pae->ErrText : "");
}

static durable_pub *j_pub_open(const char *server, const char *topic, const durable_tuning *t)
{
    durable_pub *p = calloc(1, sizeof *p);
    if (p == NULL || (p->topic = strdup(topic)) == NULL) {
        free(p);
        return NULL;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = t->max_pending;
    jo.PublishAsync.StallWait = STALL_WAIT_MS;
    jo.PublishAsync.ErrHandler = on_pub_error;
    jo.PublishAsync.ErrHandlerClosure = p;
    if (js_conn_open(&p->c, server, "bench-durable-pub", &jo) != 0) {
        free(p->topic);
        free(p);
        return NULL;
    }
    return p;
}

static int j_publish(durable_pub *p, const void *payload, size_t len)
{
    natsStatus s = js_PublishAsync(p->c.js, p->topic, payload, (int)len, NULL);
    if (s != NATS_OK) {
        report("js_PublishAsync", s, 0);
        return -1;
    }
    p->published++;
    return 0;
}

static int j_confirm(durable_pub *p, int timeout_ms, uint64_t *confirmed)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms;
    natsStatus s = js_PublishAsyncComplete(p->c.js, &po);
    uint64_t bad = atomic_load(&p->errors), waiting = 0;
    if (s != NATS_OK) {
        report("js_PublishAsyncComplete", s, 0);
        natsMsgList pending = {0};
        if (js_PublishAsyncGetPendingList(&pending, p->c.js) == NATS_OK) {
            waiting = (uint64_t)pending.Count;
            natsMsgList_Destroy(&pending);
        }
    }
    uint64_t lost = bad + waiting;
    *confirmed = p->published > lost ? p->published - lost : 0;
    return s == NATS_OK && bad == 0 ? 0 : -1;
}

static void j_pub_close(durable_pub *p)
{
    js_conn_close(&p->c);
    free(p->topic);
    free(p);
}

/* ---- replay ---- */

static int j_replay(const char *server, const char *topic, uint64_t n, const durable_tuning *t,
                    int timeout_ms, durable_on_msg on_msg, void *ud, int64_t *sub_ns)
{
    js_conn c = {0};
    if (js_conn_open(&c, server, "bench-durable-sub", NULL) != 0)
        return -1;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    char name[300];
    stream_name(topic, name, sizeof name);
    so.Stream = name;
    so.Config.Durable = DURABLE_NAME;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckPolicy = js_AckAll;
    so.Config.MaxAckPending = 16 * (int64_t)t->fetch_batch;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    *sub_ns = now_ns();
    natsStatus s = js_PullSubscribe(&sub, c.js, topic, DURABLE_NAME, NULL, &so, &jerr);
    if (s != NATS_OK) {
        report("js_PullSubscribe", s, jerr);
        js_conn_close(&c);
        return -1;
    }
    uint64_t got = 0;
    int64_t quiet_since = now_ns();
    int rc = 0;
    while (got < n) {
        int want = n - got < (uint64_t)t->fetch_batch ? (int)(n - got) : t->fetch_batch;
        natsMsgList list = {0};
        jerr = 0;
        s = natsSubscription_Fetch(&list, sub, want, 1000, &jerr);
        if (s == NATS_TIMEOUT && list.Count == 0) {
            if (now_ns() - quiet_since > (int64_t)timeout_ms * 1000000) {
                fprintf(stderr, "jetstream: replay: nothing for %d ms after %llu of %llu\n",
                        timeout_ms, (unsigned long long)got, (unsigned long long)n);
                rc = -1;
                break;
            }
            continue;
        }
        if (s != NATS_OK && list.Count == 0) {
            report("natsSubscription_Fetch", s, jerr);
            rc = -1;
            break;
        }
        for (int i = 0; i < list.Count; i++)
            on_msg(ud, (const uint8_t *)natsMsg_GetData(list.Msgs[i]),
                   (size_t)natsMsg_GetDataLength(list.Msgs[i]));
        got += (uint64_t)list.Count;
        quiet_since = now_ns();
        /* AckAll: the batch's last message acknowledges the whole batch */
        natsStatus as = natsMsg_Ack(list.Msgs[list.Count - 1], NULL);
        natsMsgList_Destroy(&list);
        if (as != NATS_OK) {
            report("natsMsg_Ack", as, 0);
            rc = -1;
            break;
        }
    }
    natsConnection_FlushTimeout(c.nc, 5000); /* the last ack reaches the server */
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    js_conn_close(&c);
    return rc;
}

const durable_backend durable_jetstream = {"jetstream", j_setup, j_teardown, j_pub_open,
                                           j_publish, j_confirm, j_pub_close, j_replay};
