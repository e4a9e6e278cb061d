/* publisher: publishes COUNT messages "NAME-1", "NAME-2", ... to TOPIC and
 * waits until the broker has confirmed every one of them.
 *
 *   publisher SERVER TOPIC COUNT [NAME]
 *
 * Exit 0 once all are confirmed; 1 if some may be lost (it says how many). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vigil/vigil.h>

static void on_connection(void *ud, vigil_conn_event ev, const char *server, const char *reason)
{
    (void)ud;
    if (ev == VIGIL_DISCONNECTED)
        fprintf(stderr, "publisher: disconnected from %s (%s)\n", server, reason);
    else
        fprintf(stderr, "publisher: %s %s\n", ev == VIGIL_CONNECTED ? "connected to" : "reconnected to",
                server);
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: publisher SERVER TOPIC COUNT [NAME]\n");
        return 2;
    }
    const char *topic = argv[2], *name = argc == 5 ? argv[4] : "msg";
    long count = strtol(argv[3], NULL, 10);
    const char *why;
    if (vigil_topic_check(topic, 0, &why) != VIGIL_OK || count < 1) {
        fprintf(stderr, "publisher: bad topic or count: %s\n", why ? why : argv[3]);
        return 2;
    }

    vigil_options *o = vigil_options_create();
    if (o == NULL || vigil_options_set_servers(o, argv[1]) != VIGIL_OK ||
        vigil_options_set_name(o, "example-publisher") != VIGIL_OK) {
        fprintf(stderr, "publisher: cannot set the options\n");
        return 1;
    }
    vigil_options_on_connection(o, on_connection);
    vigil_client *c;
    vigil_status st = vigil_client_create(&c, o, &why);
    vigil_options_destroy(o); /* the client has its own copy */
    if (st != VIGIL_OK) {
        fprintf(stderr, "publisher: %s: %s\n", vigil_status_str(st), why);
        return 1;
    }

    for (long i = 1; i <= count && st == VIGIL_OK; i++) {
        char payload[160];
        int n = snprintf(payload, sizeof payload, "%s-%ld", name, i);
        /* Waits up to 10 s for buffer room while the broker is away. */
        st = vigil_publish(c, topic, payload, (size_t)n, 10000);
    }
    if (st != VIGIL_OK)
        fprintf(stderr, "publisher: publish: %s\n", vigil_status_str(st));
    /* Confirmed means the broker has it in its log (on disk with --data-dir). */
    vigil_status fst = vigil_flush(c, 30000);
    vigil_close(c, -1);
    uint64_t s[VIGIL_STAT_COUNT];
    vigil_client_stats(c, s, VIGIL_STAT_COUNT);
    vigil_client_destroy(c);
    fprintf(stderr, "publisher: published=%llu confirmed=%llu unconfirmed=%llu unsent=%llu\n",
            (unsigned long long)s[VIGIL_STAT_PUBLISHED], (unsigned long long)s[VIGIL_STAT_CONFIRMED],
            (unsigned long long)s[VIGIL_STAT_UNCONFIRMED], (unsigned long long)s[VIGIL_STAT_UNSENT]);
    return st == VIGIL_OK && fst == VIGIL_OK && s[VIGIL_STAT_CONFIRMED] == (uint64_t)count ? 0 : 1;
}
