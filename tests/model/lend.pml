/* A model of the outbox's lending protocol (common/outbox.c, common/link.c),
 * checked with SPIN: scripts/check-model, or
 *   spin -a lend.pml && cc -O2 -DSAFETY -o pan pan.c && ./pan   (safety)
 *   cc -O2 -o pan pan.c && ./pan -l                            (no starvation)
 *
 * One owner thread and two producers share a queue under a mutex. The owner
 * writes the socket only after taking the queue (which ends any lending);
 * before sleeping with nothing queued it may lend the socket; a producer
 * holding the mutex while the socket is lent may send the queue's head
 * (any number of whole frames: the kernel may take some); the owner takes
 * the socket back first thing when it wakes, and only then writes or
 * queues control frames. Checked:
 *   - never two writers at once (the assertion in write());
 *   - the socket carries the frames in the order they were queued, none
 *     lost, none twice (seq);
 *   - no lost wake-up: every frame is eventually written (the end state:
 *     the owner's final assertion, and no deadlock). */

#define PRODUCERS 2
#define PER_PRODUCER 3
#define TOTAL (PRODUCERS * PER_PRODUCER)
#define QMAX TOTAL

bool locked;
byte queue[QMAX]; /* the seq numbers of queued frames */
byte qhead, qlen;
bool lent, parked, wake; /* wake: the eventfd */
byte writers;            /* parties inside a socket write */
byte next_seq;           /* seq given to the next queued frame */
byte on_wire;            /* frames written so far; the next must have seq == on_wire */
byte ctl_after;          /* control frames the owner wrote */

inline lock() { atomic { !locked -> locked = true } }
inline unlock() { locked = false }

/* Writes the queue's head frame to the socket. */
inline write_head() {
    writers++;
    assert(writers == 1);
    assert(queue[qhead] == on_wire); /* in order, no gap, no repeat */
    on_wire++;
    qhead = (qhead + 1) % QMAX;
    qlen--;
    writers--
}

proctype producer()
{
    byte i = 0;
    do
    :: i < PER_PRODUCER ->
        lock();
        queue[(qhead + qlen) % QMAX] = next_seq;
        next_seq++;
        qlen++;
        if
        :: lent -> /* the policy may decline (a burst); the kernel may take fewer */
            do
            :: qlen > 0 -> write_head()
            :: break
            od
        :: else -> skip
        fi;
        if
        :: parked && qlen > 0 -> parked = false; wake = true
        :: else -> skip
        fi;
        unlock();
        i++
    :: else -> break
    od
}

active proctype owner()
{
    byte bulk[QMAX]; /* the owner's own copy: the queue is swapped out whole */
    byte nbulk, k;
    run producer();
    run producer();
    do
    :: on_wire == TOTAL && next_seq == TOTAL -> break
    :: else ->
        /* take: everything queued is now the owner's, and so is the socket */
        lock();
        lent = false;
        parked = false;
        nbulk = 0;
        do
        :: qlen > 0 ->
            bulk[nbulk] = queue[qhead];
            nbulk++;
            qhead = (qhead + 1) % QMAX;
            qlen--
        :: else -> break
        od;
        unlock();
        /* write it without the lock: nobody else may write now */
        k = 0;
        do
        :: k < nbulk ->
            writers++;
            assert(writers == 1 && !lent);
            assert(bulk[k] == on_wire);
            on_wire++;
            writers--;
            k++
        :: else -> break
        od;
        /* park, lending: only with nothing queued */
        lock();
        if
        :: qlen == 0 -> parked = true; lent = true
        :: else -> skip
        fi;
        unlock();
        if
        :: parked -> /* sleep until the eventfd, or the end of the run */
            if
            :: wake -> wake = false
            :: on_wire == TOTAL && next_seq == TOTAL -> skip
            fi
        :: else -> skip
        fi;
        /* first thing awake: take the socket back */
        lock();
        lent = false;
        parked = false;
        unlock();
        /* a control frame of its own (an OK, a PONG) */
        writers++;
        assert(writers == 1 && !lent);
        ctl_after++;
        writers--;
        ctl_after = 0
    od;
    assert(qlen == 0 && on_wire == TOTAL)
}
