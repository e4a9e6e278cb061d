/* resuming_subscriber: prints every message of SUBJECT (a topic or a
 * pattern) from the oldest the broker retains, one line each on stdout:
 * "TOPIC SEQ PAYLOAD". When the connection dies (the broker killed,
 * restarted, or a path gone silent) the library reconnects and resumes
 * each topic right after the last message printed: nothing twice, nothing
 * skipped, or a "gap" line on stderr saying exactly what is gone.
 *
 *   resuming_subscriber SERVER SUBJECT COUNT
 *
 * Exits 0 after COUNT messages. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <vigil/vigil.h>

/* Handlers run on the library's I/O thread; main waits on done. */
typedef struct {
    long want, got;
    pthread_mutex_t mu;
    pthread_cond_t done;
} state;

static void on_msg(void *ud, const vigil_msg *m)
{
    state *s = ud;
    if (vigil_msg_copy(m) > 0)
        return; /* another of our subscriptions had it first */
    size_t tlen, plen;
    const char *topic = vigil_msg_topic(m, &tlen);
    const char *payload = vigil_msg_payload(m, &plen);
    printf("%.*s %llu %.*s\n", (int)tlen, topic, (unsigned long long)vigil_msg_seq(m), (int)plen,
           payload);
    pthread_mutex_lock(&s->mu);
    if (++s->got == s->want)
        pthread_cond_signal(&s->done);
    pthread_mutex_unlock(&s->mu);
}

/* Runs after each batch of messages: output is flushed once per batch. */
static void on_batch_end(void *ud)
{
    (void)ud;
    fflush(stdout);
}

static void on_gap(void *ud, const vigil_gap *g)
{
    (void)ud;
    size_t tlen;
    const char *topic = vigil_gap_topic(g, &tlen);
    fprintf(stderr, "resuming_subscriber: gap topic=%.*s from=%llu to=%llu reason=%d\n", (int)tlen,
            topic, (unsigned long long)vigil_gap_from(g), (unsigned long long)vigil_gap_to(g),
            (int)vigil_gap_reason_of(g));
}

static void on_connection(void *ud, vigil_conn_event ev, const char *server, const char *reason)
{
    (void)ud;
    if (ev == VIGIL_DISCONNECTED)
        fprintf(stderr, "resuming_subscriber: disconnected from %s (%s)\n", server, reason);
    else if (ev == VIGIL_RECONNECTED)
        fprintf(stderr, "resuming_subscriber: reconnected to %s, resumed\n", server);
    else
        fprintf(stderr, "resuming_subscriber: connected to %s\n", server);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: resuming_subscriber SERVER SUBJECT COUNT\n");
        return 2;
    }
    state s = {.want = strtol(argv[3], NULL, 10), .mu = PTHREAD_MUTEX_INITIALIZER,
               .done = PTHREAD_COND_INITIALIZER};
    vigil_options *o = vigil_options_create();
    if (o == NULL || vigil_options_set_servers(o, argv[1]) != VIGIL_OK ||
        vigil_options_set_name(o, "example-subscriber") != VIGIL_OK ||
        /* a dead broker is noticed within 1 + 2 x 0.5 = 2 s */
        vigil_options_set_heartbeat(o, 1000, 500, 2) != VIGIL_OK) {
        fprintf(stderr, "resuming_subscriber: cannot set the options\n");
        return 1;
    }
    vigil_options_set_user_data(o, &s);
    vigil_options_on_msg(o, on_msg);
    vigil_options_on_batch_end(o, on_batch_end);
    vigil_options_on_gap(o, on_gap);
    vigil_options_on_connection(o, on_connection);
    vigil_client *c;
    const char *why;
    vigil_status st = vigil_client_create(&c, o, &why);
    vigil_options_destroy(o);
    if (st != VIGIL_OK) {
        fprintf(stderr, "resuming_subscriber: %s: %s\n", vigil_status_str(st), why);
        return 1;
    }
    uint64_t sid;
    st = vigil_subscribe_from(c, argv[2], VIGIL_START_FIRST, 0, 0, &sid);
    if (st != VIGIL_OK) {
        fprintf(stderr, "resuming_subscriber: subscribe: %s\n", vigil_status_str(st));
        vigil_client_destroy(c);
        return 2;
    }
    pthread_mutex_lock(&s.mu);
    while (s.got < s.want)
        pthread_cond_wait(&s.done, &s.mu);
    pthread_mutex_unlock(&s.mu);
    vigil_client_destroy(c);
    return 0;
}
