/* queue_worker: one member of the durable queue group GROUP on SUBJECT.
 * The broker gives each message to one member; this one prints
 * "NAME TOPIC SEQ PAYLOAD" for each it gets. A message counts as done
 * (acknowledged) once the handler has returned for it and its batch is
 * flushed; what a member took but had not acknowledged when it died goes
 * to another member. The group's position is kept by the broker (on disk
 * with --data-dir), so workers started later carry on where it was.
 *
 *   queue_worker SERVER SUBJECT GROUP NAME
 *
 * Runs until SIGINT or SIGTERM, then leaves the group cleanly. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include <vigil/vigil.h>

static const char *name;

static void on_msg(void *ud, const vigil_msg *m)
{
    (void)ud;
    size_t tlen, plen;
    const char *topic = vigil_msg_topic(m, &tlen);
    const char *payload = vigil_msg_payload(m, &plen);
    /* The job itself would be done here. */
    printf("%s %.*s %llu %.*s\n", name, (int)tlen, topic, (unsigned long long)vigil_msg_seq(m),
           (int)plen, payload);
}

/* Acknowledgements wait for this to return: print before acknowledging. */
static void on_batch_end(void *ud)
{
    (void)ud;
    fflush(stdout);
}

static void on_sub_error(void *ud, uint64_t sid, const char *topic, int code, const char *reason)
{
    (void)ud, (void)sid;
    fprintf(stderr, "queue_worker: %s refused: %s (code %d)\n", topic, reason, code);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: queue_worker SERVER SUBJECT GROUP NAME\n");
        return 2;
    }
    name = argv[4];
    if (!vigil_name_valid(argv[3])) {
        fprintf(stderr, "queue_worker: GROUP must be 1 to 64 of A-Z a-z 0-9 _ . -\n");
        return 2;
    }
    /* Signals are taken by sigwait below, so block them before the
     * library's thread exists (it inherits the mask). */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    vigil_options *o = vigil_options_create();
    if (o == NULL || vigil_options_set_servers(o, argv[1]) != VIGIL_OK ||
        vigil_options_set_name(o, name) != VIGIL_OK) {
        fprintf(stderr, "queue_worker: cannot set the options\n");
        return 1;
    }
    vigil_options_on_msg(o, on_msg);
    vigil_options_on_batch_end(o, on_batch_end);
    vigil_options_on_sub_error(o, on_sub_error);
    vigil_client *c;
    const char *why;
    vigil_status st = vigil_client_create(&c, o, &why);
    vigil_options_destroy(o);
    if (st != VIGIL_OK) {
        fprintf(stderr, "queue_worker: %s: %s\n", vigil_status_str(st), why);
        return 1;
    }
    /* Durable: the group's position is named GROUP too. A new group
     * starts with the oldest retained message. */
    uint64_t sid;
    st = vigil_subscribe_queue(c, argv[2], argv[3], argv[3], VIGIL_START_FIRST, 0, 0, &sid);
    if (st == VIGIL_OK)
        st = vigil_wait_subscribed(c, sid, 10000);
    if (st != VIGIL_OK) {
        fprintf(stderr, "queue_worker: subscribe: %s\n", vigil_status_str(st));
        vigil_client_destroy(c);
        return 1;
    }
    fprintf(stderr, "queue_worker: %s is a member of %s on %s\n", name, argv[3], argv[2]);
    int sig;
    sigwait(&stop, &sig);
    vigil_client_destroy(c); /* acknowledges what was processed, best effort */
    return 0;
}
