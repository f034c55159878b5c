/*
 * openloop.c -- open-loop (constant-rate) HTTP/1.1 load generator, coordinated-omission free.
 *
 *   gcc -O2 -Wall -Wextra -Werror -o openloop bench/openloop.c
 *   openloop -R 16000 [-c 64] [-d 10] [-w 0] [-g 2] [-t 10] [-s 200] [-H 'Name: value']...
 *            [-f PATHS] URL
 *
 * The timetable is fixed in advance, as in wrk2's constant-throughput mode: request i is due at
 * t0 + i/R, whatever happened to the requests before it.  A due request goes out on a free
 * keep-alive connection (at most -c in flight); when none is free it waits in the queue, and is
 * never dropped.  Its latency runs from its *scheduled* time to the last byte of its answer, so
 * time spent queued behind a slow server counts, as it would for real clients.
 *
 * One thread, one epoll set: the non-blocking sockets and a timerfd armed at the next due time
 * (absolute CLOCK_MONOTONIC, so sub-millisecond), so the process sleeps between requests.  The
 * timer is set -s microseconds (default 200) after the due time, so that one wake-up sends every
 * request due by then: at 20,000 requests per second that takes about a quarter off the CPU
 * used (sleeping and waking are most of it).  Those microseconds count in the latency, measured
 * from the scheduled time as always, and in the send lag.  -s 0: a wake-up per request.
 *
 * Requests scheduled in the first -w seconds are a warm-up: sent like the others, not counted.
 * The measured ones are those of the -d seconds after it.  When the timetable ends, queued and
 * in-flight requests get -g more seconds; what is left then is "unfinished" (not ok) and enters
 * the latency histogram at its age then, a lower bound of its latency.  A request not answered
 * -t seconds after it was sent is a timeout (also in the histogram at its age; connection closed).
 *
 * URL is http://HOST[:PORT]/path?query.  With -f, each non-empty line of the file is a path (with
 * its query), taken in turn; the URL then gives only the host and port.  Answers: status line,
 * headers, then a Content-Length body, a chunked body, or (no length) a body up to the close.
 *
 * Output: a summary on stderr and one line on stdout, `OPENLOOP-JSON {...}`: scheduled, sent,
 * completed, statuses, errors, unfinished, achieved_rate (completed / -d), latency_ms and
 * send_lag_ms (how late requests went out: the generator's own lag plus waits for a free
 * connection) from log-linear histograms (1 us steps below 256 us, then 128 per power of two:
 * under 0.8% error; a percentile reports its bucket's upper bound), and the CPU seconds used.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000LL
#define TICK_NS (NS / 100)      /* housekeeping (timeouts, reconnects) every 10 ms */
#define MAX_RESPONSE (64 << 20) /* a larger answer is a parse error */

static void die(const char *msg) {
    fprintf(stderr, "openloop: %s\n", msg);
    exit(2);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * NS + ts.tv_nsec;
}

static int64_t ceil_pos(double x) { /* ceil(x) for x >= 0, without libm */
    int64_t n = (int64_t)x;
    return n + ((double)n < x);
}

/* -- latency histogram (microseconds) --------------------------------------------------------- */

#define SUB_BITS 7
#define SUB (1 << SUB_BITS)
#define MAX_EXP 40 /* values are clamped below 2^41 us (25 days) */
#define NBUCKETS (2 * SUB + (MAX_EXP - SUB_BITS) * SUB)

struct hist {
    uint64_t n[NBUCKETS], count, max;
};

static int bucket_of(uint64_t v) {
    if (v < 2 * SUB)
        return (int)v; /* exact */
    if (v >> (MAX_EXP + 1))
        v = (2ULL << MAX_EXP) - 1;
    int k = 63 - __builtin_clzll(v); /* floor(log2 v) >= SUB_BITS + 1 */
    int shift = k - SUB_BITS;        /* keep the top SUB_BITS + 1 bits */
    return 2 * SUB + (k - SUB_BITS - 1) * SUB + (int)((v >> shift) - SUB);
}

static uint64_t bucket_top(int b) { /* the largest value in bucket b */
    if (b < 2 * SUB)
        return (uint64_t)b;
    int j = b - 2 * SUB, shift = j / SUB + 1;
    return (((uint64_t)(j % SUB + SUB) + 1) << shift) - 1;
}

static void hist_add(struct hist *h, int64_t ns) {
    uint64_t v = ns < 0 ? 0 : (uint64_t)ns / 1000;
    h->n[bucket_of(v)]++;
    h->count++;
    h->max = v > h->max ? v : h->max;
}

static double hist_ms(const struct hist *h, double q) { /* the q-quantile in ms, 0 if empty */
    uint64_t rank = (uint64_t)ceil_pos(q * (double)h->count), seen = 0;
    for (int b = 0; b < NBUCKETS && h->count; b++)
        if ((seen += h->n[b]) >= rank && seen) {
            uint64_t v = bucket_top(b);
            return (double)(v < h->max ? v : h->max) / 1000.0;
        }
    return (double)h->max / 1000.0;
}

/* -- state ------------------------------------------------------------------------------------ */

enum { DOWN, CONNECTING, IDLE, BUSY };           /* connection states */
enum { BODY_LENGTH, BODY_CHUNKED, BODY_TO_CLOSE }; /* how an answer's body ends */

struct conn {
    int fd, state, in_ring, want_out; /* want_out: EPOLLOUT in the epoll set */
    int64_t retry_at, backoff;        /* DOWN: reconnect at retry_at */
    int64_t req, sent_at;             /* BUSY: timetable index of the request, when sent */
    size_t out_off;                   /* bytes of the request written */
    char *buf;                        /* the answer read so far */
    size_t len, cap;
    size_t head_len;  /* 0 until the status line and headers are in */
    size_t resp_len;  /* length of the whole answer, once known */
    size_t chunk_pos; /* chunked: where the next chunk-size (or trailer) line starts */
    size_t content_length;
    int status, body, close_after, in_trailers;
};

static struct {
    int conns, nheaders;
    double rate, duration, warmup, grace, timeout, slack;
    const char *headers[64], *paths_file;
} opt = {.conns = 64, .duration = 10, .grace = 2, .timeout = 10, .slack = 200};

static struct sockaddr_storage addr;
static socklen_t addrlen;
static char **reqs; /* the ready-made request of each path */
static size_t *reqlen, nreqs;

static int ep, tfd;
static struct conn *conns;
static int *ring, ring_head, ring_n; /* idle connections, longest idle first */
static int idle_count, busy_count, connect_failures;
static int64_t t0, armed_at, warm, total, next_req, measure_from = INT64_MAX;

static struct {
    int64_t sent, completed, connect, read, write, parse, timeout, reconnects, statuses[600];
    struct hist lat, lag;
} st;

static int64_t sched(int64_t i) { return t0 + (int64_t)((double)i * 1e9 / opt.rate); }
static int measured(int64_t i) { return i >= warm; }

/* -- connections ------------------------------------------------------------------------------ */

static void set_events(struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->want_out = (events & EPOLLOUT) != 0;
}

static void set_state(struct conn *c, int s) {
    idle_count += (s == IDLE) - (c->state == IDLE);
    busy_count += (s == BUSY) - (c->state == BUSY);
    c->state = s;
    if (s == IDLE && !c->in_ring) { /* every IDLE connection is in the ring (once) */
        ring[(ring_head + ring_n++) % opt.conns] = (int)(c - conns);
        c->in_ring = 1;
    }
}

static void connect_failed(struct conn *c, int64_t now) {
    connect_failures++;
    st.connect += now >= measure_from;
    c->backoff = c->backoff ? (c->backoff * 2 < NS ? c->backoff * 2 : NS) : NS / 100;
    c->retry_at = now + c->backoff;
    close(c->fd);
    set_state(c, DOWN);
}

static void conn_open(struct conn *c, int64_t now) {
    c->len = c->head_len = 0;
    if ((c->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c}; /* writable = connected */
    c->want_out = 1;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
    if (connect(c->fd, (struct sockaddr *)&addr, addrlen) == 0 || errno == EINPROGRESS)
        set_state(c, CONNECTING);
    else
        connect_failed(c, now);
}

/* Close the connection (and count its request, if any, under *error) and connect again. */
static void conn_reset(struct conn *c, int64_t now, int64_t *error) {
    if (error && c->state == BUSY && measured(c->req))
        (*error)++;
    close(c->fd); /* (this also takes it out of the epoll set) */
    set_state(c, DOWN);
    conn_open(c, now);
}

static void conn_write(struct conn *c, int64_t now) {
    const char *r = reqs[c->req % (int64_t)nreqs];
    size_t n = reqlen[c->req % (int64_t)nreqs];
    while (c->out_off < n) {
        ssize_t w = send(c->fd, r + c->out_off, n - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) { /* socket buffer full: the rest when writable */
            if (!c->want_out)
                set_events(c, EPOLLIN | EPOLLOUT);
            return;
        }
        if (w <= 0) {
            conn_reset(c, now, &st.write);
            return;
        }
        c->out_off += (size_t)w;
    }
    if (c->want_out)
        set_events(c, EPOLLIN);
}

static void conn_send(struct conn *c, int64_t i, int64_t now) {
    set_state(c, BUSY);
    c->req = i;
    c->sent_at = now;
    c->out_off = 0;
    if (measured(i)) {
        st.sent++;
        hist_add(&st.lag, now - sched(i));
    }
    conn_write(c, now);
}

/* -- HTTP/1.1 answers ------------------------------------------------------------------------- */

static int is_header(const char *line, size_t name_len, const char *name) {
    return name_len == strlen(name) && !strncasecmp(line, name, name_len);
}

/* Status line and headers: 1 when complete, 0 when more bytes are needed, -1 on a bad answer. */
static int parse_head(struct conn *c) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    c->head_len = (size_t)(end - c->buf) + 4;
    if (c->head_len < 16 || memcmp(c->buf, "HTTP/1.", 7) || c->buf[8] != ' ')
        return -1;
    c->status = atoi(c->buf + 9);
    if (c->status < 200 || c->status > 599)
        return -1; /* (1xx interim answers are not expected for GET: not supported) */
    c->close_after = c->buf[7] == '0'; /* HTTP/1.0 closes unless it says keep-alive */
    int chunked = 0, has_length = 0;
    for (char *line = (char *)memmem(c->buf, c->head_len, "\r\n", 2) + 2; line < end;) {
        char *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon) {
            size_t name_len = (size_t)(colon - line), vlen = (size_t)(eol - colon - 1);
            char value[256];
            vlen = vlen < sizeof value ? vlen : sizeof value - 1;
            memcpy(value, colon + 1, vlen);
            value[vlen] = 0;
            if (is_header(line, name_len, "content-length")) {
                c->content_length = strtoull(value, NULL, 10);
                has_length = 1;
            } else if (is_header(line, name_len, "transfer-encoding")) {
                chunked = strcasestr(value, "chunked") != NULL;
            } else if (is_header(line, name_len, "connection")) {
                c->close_after = strcasestr(value, "close")        ? 1
                                 : strcasestr(value, "keep-alive") ? 0
                                                                   : c->close_after;
            }
        }
        line = eol + 2;
    }
    if (c->status == 204 || c->status == 304) {
        c->body = BODY_LENGTH;
        c->content_length = 0;
    } else if (chunked) {
        c->body = BODY_CHUNKED;
        c->chunk_pos = c->head_len;
        c->in_trailers = 0;
    } else if (has_length) {
        c->body = BODY_LENGTH;
    } else {
        c->body = BODY_TO_CLOSE;
        c->close_after = 1;
    }
    return 1;
}

/* A chunked body, from chunk_pos on: 1 when the last chunk and the trailers are in, 0, -1. */
static int parse_chunks(struct conn *c) {
    for (;;) {
        size_t p = c->chunk_pos, size = 0, digits = 0;
        char *nl = memmem(c->buf + p, c->len - p, "\r\n", 2);
        if (!nl)
            return 0;
        size_t next = (size_t)(nl - c->buf) + 2;
        if (c->in_trailers) { /* trailer lines, up to an empty one */
            c->chunk_pos = next;
            if (next == p + 2) {
                c->resp_len = next;
                return 1;
            }
            continue;
        }
        for (const char *s = c->buf + p; s < nl && size <= MAX_RESPONSE; s++, digits++) {
            int d = *s >= '0' && *s <= '9'   ? *s - '0'
                    : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                    : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                             : -1;
            if (d < 0)
                break; /* end of the hex size (";extension" may follow) */
            size = size * 16 + (size_t)d;
        }
        if (!digits || size > MAX_RESPONSE)
            return -1;
        if (size == 0) {
            c->in_trailers = 1;
            c->chunk_pos = next;
            continue;
        }
        if (c->len < next + size + 2)
            return 0; /* wait for the whole chunk */
        if (memcmp(c->buf + next + size, "\r\n", 2))
            return -1;
        c->chunk_pos = next + size + 2;
    }
}

static int parse_response(struct conn *c) {
    if (!c->head_len) {
        int r = parse_head(c);
        if (r <= 0)
            return r;
    }
    if (c->body == BODY_CHUNKED)
        return parse_chunks(c);
    if (c->body == BODY_TO_CLOSE)
        return 0; /* complete when the server closes */
    c->resp_len = c->head_len + c->content_length;
    return c->len >= c->resp_len;
}

static void complete(struct conn *c, int64_t now) {
    if (measured(c->req)) {
        st.completed++;
        st.statuses[c->status]++;
        hist_add(&st.lat, now - sched(c->req));
    }
    if (c->close_after || c->len != c->resp_len) { /* (bytes after the answer: not ours) */
        st.reconnects++;
        conn_reset(c, now, NULL);
        return;
    }
    c->len = c->head_len = 0;
    set_state(c, IDLE);
}

static void conn_read(struct conn *c, int64_t now) {
    for (;;) {
        if (c->len == c->cap) {
            if (c->cap >= MAX_RESPONSE) {
                conn_reset(c, now, &st.parse);
                return;
            }
            c->cap = c->cap ? c->cap * 2 : 16384;
            if (!(c->buf = realloc(c->buf, c->cap)))
                die("out of memory");
        }
        size_t room = c->cap - c->len;
        ssize_t n = read(c->fd, c->buf + c->len, room);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) { /* the server closed (or reset) the connection */
            if (c->state == BUSY && c->head_len && c->body == BODY_TO_CLOSE) {
                c->resp_len = c->len;
                complete(c, now); /* (reconnects: close_after is set) */
            } else {
                st.reconnects += c->state != BUSY; /* an idle connection closed: no error */
                conn_reset(c, now, &st.read);
            }
            return;
        }
        c->len += (size_t)n;
        int r = c->state == BUSY ? parse_response(c) : -1; /* (bytes nobody asked for: -1) */
        if (r < 0) {
            conn_reset(c, now, &st.parse);
            return;
        }
        if (r == 1)
            complete(c, now);
        if (c->state != BUSY || (size_t)n < room)
            return; /* answered, or nothing more to read now */
    }
}

static void on_event(struct conn *c, uint32_t events, int64_t now) {
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            connect_failed(c, now);
        } else {
            c->backoff = 0;
            set_events(c, EPOLLIN);
            set_state(c, IDLE);
        }
        return;
    }
    if ((events & EPOLLOUT) && c->state == BUSY) {
        conn_write(c, now);
        if (c->state != BUSY)
            return; /* the write failed: a new connection is on its way */
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        conn_read(c, now);
}

/* -- the loop --------------------------------------------------------------------------------- */

/* Sleep until an event or `wake` (absolute ns).  The timer is only moved earlier: a wake-up
 * that comes too early costs one turn of the loop, fewer than re-arming on every turn. */
static void wait_events(int64_t wake) {
    struct epoll_event evs[256];
    int timeout = 0;
    if (wake > now_ns()) {
        timeout = -1;
        if (!armed_at || wake < armed_at) {
            struct itimerspec its = {.it_value = {.tv_sec = wake / NS, .tv_nsec = wake % NS}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            armed_at = wake;
        }
    }
    int n = epoll_wait(ep, evs, 256, timeout);
    if (n < 0 && errno != EINTR)
        die("epoll_wait");
    int64_t now = now_ns();
    for (int k = 0; k < n; k++) {
        if (evs[k].data.ptr == NULL) { /* the timer */
            uint64_t expirations;
            if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
                die("timerfd read");
            armed_at = 0;
        } else {
            on_event(evs[k].data.ptr, evs[k].events, now);
        }
    }
}

static void housekeeping(int64_t now) {
    for (int k = 0; k < opt.conns; k++) {
        struct conn *c = &conns[k];
        if (c->state == DOWN && c->retry_at <= now) {
            conn_open(c, now);
        } else if (c->state == BUSY && now - c->sent_at > (int64_t)(opt.timeout * NS)) {
            if (measured(c->req))
                hist_add(&st.lat, now - sched(c->req));
            conn_reset(c, now, &st.timeout);
        }
    }
}

/* Every due request, oldest first, each on the connection idle the longest (so the load is
 * spread over all connections, hence over all the server's worker processes). */
static void dispatch(int64_t now) {
    while (next_req < total && idle_count > 0 && sched(next_req) <= now) {
        struct conn *c = &conns[ring[ring_head]];
        ring_head = (ring_head + 1) % opt.conns;
        ring_n--;
        c->in_ring = 0;
        if (c->state == IDLE) /* (else it closed while in the ring) */
            conn_send(c, next_req++, now);
    }
}

/* -- setup ------------------------------------------------------------------------------------ */

static void build_requests(const char *url) {
    if (strncmp(url, "http://", 7))
        die("the URL must start with http://");
    const char *host = url + 7, *path = strchr(host, '/');
    char hostport[256], name[256], *colon;
    size_t hlen = path ? (size_t)(path - host) : strlen(host);
    if (!hlen || hlen >= sizeof hostport)
        die("bad host in the URL");
    memcpy(hostport, host, hlen);
    hostport[hlen] = 0;
    strcpy(name, hostport);
    if ((colon = strrchr(name, ':')))
        *colon = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(name, colon ? colon + 1 : "80", &hints, &ai))
        die("cannot resolve the URL's host");
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);

    size_t hdr_len = strlen(hostport) + 8; /* "Host: ...\r\n" plus the -H headers */
    for (int k = 0; k < opt.nheaders; k++)
        hdr_len += strlen(opt.headers[k]) + 2;
    char *headers = malloc(hdr_len + 1), *h = headers;
    h += sprintf(h, "Host: %s\r\n", hostport);
    for (int k = 0; k < opt.nheaders; k++)
        h += sprintf(h, "%s\r\n", opt.headers[k]);

    FILE *f = opt.paths_file ? fopen(opt.paths_file, "r") : NULL;
    if (opt.paths_file && !f)
        die("cannot open the -f file");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (f ? (n = getline(&line, &cap, f)) >= 0 : nreqs == 0) {
        const char *p = f ? line : path ? path : "/";
        if (f) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
                line[--n] = 0;
            if (n == 0)
                continue;
            if (line[0] != '/')
                die("each line of the -f file must be a path starting with /");
        }
        reqs = realloc(reqs, (nreqs + 1) * sizeof *reqs);
        reqlen = realloc(reqlen, (nreqs + 1) * sizeof *reqlen);
        int len = asprintf(&reqs[nreqs], "GET %s HTTP/1.1\r\n%s\r\n", p, headers);
        if (len < 0)
            die("out of memory");
        reqlen[nreqs++] = (size_t)len;
    }
    if (f)
        fclose(f);
    free(line);
    free(headers);
    if (!nreqs)
        die("no paths in the -f file");
}

static double number(const char *s, double lo, double hi, const char *what) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "openloop: bad %s %s (must be in [%g, %g])\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    for (int o; (o = getopt(argc, argv, "c:R:d:w:g:t:s:H:f:")) != -1;) {
        switch (o) {
        case 'c': opt.conns = (int)number(optarg, 1, 10000, "-c"); break;
        case 'R': opt.rate = number(optarg, 0.001, 1e7, "-R"); break;
        case 'd': opt.duration = number(optarg, 0.001, 86400, "-d"); break;
        case 'w': opt.warmup = number(optarg, 0, 86400, "-w"); break;
        case 'g': opt.grace = number(optarg, 0, 3600, "-g"); break;
        case 't': opt.timeout = number(optarg, 0.001, 3600, "-t"); break;
        case 's': opt.slack = number(optarg, 0, 1e6, "-s"); break;
        case 'f': opt.paths_file = optarg; break;
        case 'H':
            if (opt.nheaders == 64)
                die("at most 64 -H headers");
            opt.headers[opt.nheaders++] = optarg;
            break;
        default: optind = argc; /* usage */
        }
    }
    if (optind != argc - 1 || opt.rate <= 0)
        die("usage: openloop -R rate [-c conns=64] [-d seconds=10] [-w warmup=0] [-g grace=2] "
            "[-t timeout=10] [-s slack_us=200] [-H 'Name: value']... [-f paths_file] "
            "http://host:port/path");
    build_requests(argv[optind]);
    signal(SIGPIPE, SIG_IGN);
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
        die("epoll_create1 / timerfd_create");
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);
    conns = calloc((size_t)opt.conns, sizeof *conns);
    ring = calloc((size_t)opt.conns, sizeof *ring);

    /* Connect everything first: setting up connections is not what is measured. */
    int64_t start = now_ns(), now;
    for (int k = 0; k < opt.conns; k++)
        conn_open(&conns[k], start);
    while (idle_count < opt.conns && (now = now_ns()) - start < (int64_t)(opt.timeout * NS)) {
        if (idle_count == 0 && connect_failures >= opt.conns)
            break; /* every connection failed at least once, none succeeded */
        housekeeping(now);
        wait_events(now + TICK_NS);
    }
    if (idle_count == 0)
        die("could not connect to the server");

    t0 = now_ns() + NS / 1000; /* the timetable starts in 1 ms */
    warm = ceil_pos(opt.warmup * opt.rate - 1e-9);
    total = ceil_pos((opt.warmup + opt.duration) * opt.rate - 1e-9);
    measure_from = t0 + (int64_t)(opt.warmup * NS);
    int64_t hard_end = t0 + (int64_t)((opt.warmup + opt.duration + opt.grace) * NS);
    int64_t slack = (int64_t)(opt.slack * 1000);
    for (int64_t next_tick = t0;;) {
        if ((now = now_ns()) >= next_tick) {
            housekeeping(now);
            next_tick = now + TICK_NS;
        }
        if (now >= hard_end)
            break;
        dispatch(now);
        if (next_req == total && busy_count == 0)
            break;
        int64_t wake = next_tick < hard_end ? next_tick : hard_end;
        if (next_req < total && idle_count > 0 && sched(next_req) + slack < wake)
            wake = sched(next_req) + slack;
        wait_events(wake);
    }

    /* What is left is unfinished: in the histogram at its age now (a lower bound). */
    int64_t in_flight = 0, queued = 0;
    for (int k = 0; k < opt.conns; k++)
        if (conns[k].state == BUSY && measured(conns[k].req)) {
            in_flight++;
            hist_add(&st.lat, now - sched(conns[k].req));
        }
    for (int64_t i = next_req > warm ? next_req : warm; i < total; i++, queued++)
        hist_add(&st.lat, now - sched(i));

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    double wall = (double)(now - start) / 1e9, max_ms = (double)st.lat.max / 1000.0;
    long long scheduled = total - warm;
    fprintf(stderr,
            "openloop: %.0f req/s for %g s (+%g s warm-up), %d connections: %lld scheduled, "
            "%lld sent, %lld answered (%lld with 200), %lld unfinished; p50 %.2f ms, p99 %.2f "
            "ms, max %.2f ms; CPU %.2f s in %.2f s\n",
            opt.rate, opt.duration, opt.warmup, opt.conns, scheduled, (long long)st.sent,
            (long long)st.completed, (long long)st.statuses[200], (long long)(in_flight + queued),
            hist_ms(&st.lat, 0.5), hist_ms(&st.lat, 0.99), max_ms, user + sys, wall);

    printf("OPENLOOP-JSON {\"rate\":%.3f,\"connections\":%d,\"slack_us\":%g,\"scheduled\":%lld,"
           "\"sent\":%lld,\"completed\":%lld,\"statuses\":{",
           opt.rate, opt.conns, opt.slack, scheduled, (long long)st.sent, (long long)st.completed);
    for (int s = 0, first = 1; s < 600; s++)
        if (st.statuses[s]) {
            printf("%s\"%d\":%lld", first ? "" : ",", s, (long long)st.statuses[s]);
            first = 0;
        }
    printf("},\"errors\":{\"connect\":%lld,\"read\":%lld,\"write\":%lld,\"parse\":%lld,"
           "\"timeout\":%lld},\"unfinished\":{\"in_flight\":%lld,\"queued\":%lld},"
           "\"reconnects\":%lld,\"duration_s\":%g,\"warmup_s\":%g,\"wall_s\":%.3f,"
           "\"achieved_rate\":%.1f,",
           (long long)st.connect, (long long)st.read, (long long)st.write, (long long)st.parse,
           (long long)st.timeout, (long long)in_flight, (long long)queued,
           (long long)st.reconnects, opt.duration, opt.warmup, wall,
           (double)st.completed / opt.duration);
    printf("\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
           "\"send_lag_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
           "\"cpu_s\":{\"user\":%.3f,\"system\":%.3f,\"total\":%.3f}}\n",
           hist_ms(&st.lat, 0.5), hist_ms(&st.lat, 0.9), hist_ms(&st.lat, 0.99),
           hist_ms(&st.lat, 0.999), max_ms, hist_ms(&st.lag, 0.5), hist_ms(&st.lag, 0.99),
           (double)st.lag.max / 1000.0, user, sys, user + sys);
    return 0;
}
