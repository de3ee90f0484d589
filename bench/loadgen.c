/*
 * loadgen: a single-threaded epoll load generator for ppy and its baselines.
 *
 * Why C: a Python load generator saturates its own core long before a fast
 * server does (the C epoll floor server answers >1M calls/s), so the numbers
 * would measure the client.  One thread on one pinned core is enough and
 * keeps the measurement simple to reason about.
 *
 * Dialects (docs/protocol.md, section 3):
 *   lines   persistent connections, `--pipeline P` JSON-RPC lines in flight each
 *   legacy  the seed's 11-byte header frame, one connection per call (connect,
 *           send, read the whole framed reply, close), as the seed's PHP client did
 *   http    HTTP/1.1 keep-alive `POST /rpc`, `--pipeline P` requests in flight each
 *
 * Latency is measured per call from the moment its request was queued to the
 * moment its reply was fully read.  Replies on one connection are matched in
 * order (every request of a run is the same call, so an out-of-order reply
 * only swaps two equal-cost samples).  A reply counts as an error unless it
 * carries a result (`"result"` for lines/http, an empty `"error": ""` for legacy).  "rps" counts only
 * replies that carry a result: an error reply (e.g. -32002 overloaded) is a failure, never a call.
 *
 * Output: one JSON object on stdout, e.g.
 *   {"calls":123,"errors":0,"seconds":5.0,"rps":24.6,"p50_us":..,"p90_us":..,"p99_us":..,"max_us":..}
 *
 * Build: cc -O2 -o loadgen loadgen.c   (make bench does it)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { LINES, LEGACY, HTTP };

/* Log-linear latency histogram: exact below 1024 us, then 512 sub-buckets per power of two (0.2 %). */
#define LINEAR 1024
#define SUB 512
#define NBUCKETS (LINEAR + 40 * SUB)
static uint64_t hist[NBUCKETS];
static uint64_t max_us;

static int bucket_of(uint64_t v) {
    if (v < LINEAR) return (int)v;
    int m = 63 - __builtin_clzll(v); /* m >= 10 */
    int b = LINEAR + (m - 10) * SUB + (int)((v >> (m - 9)) & (SUB - 1));
    return b < NBUCKETS ? b : NBUCKETS - 1;
}

static uint64_t value_of(int b) {
    if (b < LINEAR) return (uint64_t)b;
    int m = (b - LINEAR) / SUB + 10, s = (b - LINEAR) % SUB;
    return ((uint64_t)(SUB + s)) << (m - 9);
}

typedef struct {
    int fd;
    int state;         /* 0 idle/closed, 1 connecting, 2 open */
    char *in;          /* bytes read and not yet consumed */
    size_t in_len, in_cap;
    char *out;         /* bytes queued and not yet written */
    size_t out_off, out_len, out_cap;
    uint64_t *sent;    /* ring of send times (ns) of the calls in flight */
    int head, inflight;
    size_t want;       /* legacy/http: total bytes of the reply being read, 0 = unknown yet */
    int want_out;      /* EPOLLOUT registered */
} conn_t;

static struct sockaddr_in addr;
static int epfd, dialect, pipeline_n = 1;
static const char *request;
static size_t request_len;
static uint64_t calls, errors, conn_errors, measure_from_ns, stop_ns;
static int measuring;
static char first_error[256];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n *= 2;
    *buf = realloc(*buf, n);
    if (!*buf) die("realloc");
    *cap = n;
}

static void record(conn_t *c, int ok, const char *reply, size_t len) {
    uint64_t t = now_ns();
    uint64_t sent = c->sent[c->head];
    c->head = (c->head + 1) % pipeline_n;
    c->inflight--;
    if (!measuring) return;
    calls++;
    if (!ok) {
        errors++;
        if (!first_error[0] && reply) {
            size_t n = len < sizeof first_error - 1 ? len : sizeof first_error - 1;
            memcpy(first_error, reply, n);
            first_error[n] = 0;
        }
    }
    uint64_t us = (t - sent) / 1000;
    hist[bucket_of(us)]++;
    if (us > max_us) max_us = us;
}

static void queue_request(conn_t *c) {
    reserve(&c->out, &c->out_cap, c->out_len + request_len);
    memcpy(c->out + c->out_len, request, request_len);
    c->out_len += request_len;
    c->sent[(c->head + c->inflight) % pipeline_n] = now_ns();
    c->inflight++;
}

static void set_events(conn_t *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
    c->want_out = want_out;
}

static void flush(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            return; /* the read side will see the error */
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    set_events(c, c->out_len > 0);
}

static void open_conn(conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (dialect == LEGACY) { /* we close first after each call: skip TIME_WAIT so ports are not exhausted */
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    c->in_len = c->out_off = c->out_len = 0;
    c->head = c->inflight = 0;
    c->want = 0;
    c->want_out = 1;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) die("connect");
    c->state = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl add");
    int n = dialect == LEGACY ? 1 : pipeline_n;
    for (int i = 0; i < n; i++) queue_request(c);
}

static void close_conn(conn_t *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = 0;
}

/* A connection failed (refused, reset, closed early): count what was in flight as errors, reconnect. */
static void fail_conn(conn_t *c, const char *why) {
    while (c->inflight) record(c, 0, why, strlen(why));
    if (measuring) conn_errors++;
    close_conn(c);
    if (now_ns() < stop_ns) open_conn(c);
}

static const char *find(const char *hay, size_t n, const char *needle) {
    return memmem(hay, n, needle, strlen(needle));
}

/* Case-insensitive find, for HTTP header names. */
static const char *find_ci(const char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!strncasecmp(hay + i, needle, k)) return hay + i;
    return NULL;
}

/* Consume whole replies from c->in; return 0 if the connection must be dropped. */
static int parse(conn_t *c) {
    size_t off = 0;
    int keep = 1;
    while (c->inflight && off < c->in_len) {
        const char *p = c->in + off;
        size_t avail = c->in_len - off;
        if (dialect == LINES) {
            const char *nl = memchr(p, '\n', avail);
            if (!nl) break;
            size_t len = (size_t)(nl - p);
            size_t head = len < 64 ? len : 64;
            record(c, find(p, head, "\"result\"") != NULL, p, len);
            off += len + 1;
        } else if (dialect == LEGACY) {
            if (avail < 11) break;
            if (!c->want) c->want = 11 + (size_t)strtoul(p, NULL, 10);
            if (avail < c->want) break;
            size_t tail = c->want > 24 ? 24 : c->want;
            record(c, find(p + c->want - tail, tail, "\"error\": \"\"}") != NULL, p + 11, c->want - 11);
            off += c->want;
            c->want = 0;
            keep = 0; /* one call per connection */
        } else { /* HTTP/1.1 response with Content-Length */
            if (!c->want) {
                const char *end = find(p, avail, "\r\n\r\n");
                if (!end) break;
                const char *cl = find_ci(p, (size_t)(end - p), "\r\ncontent-length:");
                if (!cl) return 0;
                c->want = (size_t)(end - p) + 4 + strtoul(cl + 17, NULL, 10);
            }
            if (avail < c->want) break;
            const char *body = find(p, c->want, "\r\n\r\n") + 4;
            size_t blen = c->want - (size_t)(body - p);
            size_t head = blen < 64 ? blen : 64;
            int ok = strncmp(p + 9, "200", 3) == 0 && find(body, head, "\"result\"") != NULL;
            record(c, ok, body, blen);
            off += c->want;
            c->want = 0;
        }
        if (keep && now_ns() < stop_ns) queue_request(c);
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return keep;
}

static void on_event(conn_t *c, uint32_t events) {
    if (c->state == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail_conn(c, strerror(err));
            return;
        }
        c->state = 2;
    }
    if (events & EPOLLOUT) flush(c);
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        for (;;) {
            reserve(&c->in, &c->in_cap, c->in_len + 65536);
            ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
            if (n > 0) {
                c->in_len += (size_t)n;
                if (c->in_len < c->in_cap) break; /* a short read: the socket is drained */
                continue;
            }
            if (n < 0 && errno == EAGAIN) break;
            /* EOF or error: a legacy reply may still be complete in the buffer */
            if (parse(c) && c->inflight) {
                fail_conn(c, n == 0 ? "connection closed by server before its reply" : strerror(errno));
                return;
            }
            close_conn(c);
            if (now_ns() < stop_ns) open_conn(c);
            return;
        }
        if (!parse(c)) {
            close_conn(c);
            if (now_ns() < stop_ns) open_conn(c);
            return;
        }
        if (c->out_len) flush(c);
    }
}

static char *build_request(const char *method, const char *params, const char *path) {
    char *body = NULL, *req = NULL;
    const char *dot = strrchr(method, '.');
    if (dialect == LEGACY) {
        if (!dot) { fprintf(stderr, "loadgen: method must be entry.func\n"); exit(2); }
        if (asprintf(&body, "{\"entry\": \"%.*s\", \"func\": \"%s\", \"param\": %s}",
                     (int)(dot - method), method, dot + 1, params) < 0) die("asprintf");
        size_t n = strlen(body);
        char head[32];
        snprintf(head, sizeof head, "%zu.", n);
        while (strlen(head) < 11) strcat(head, "0");
        if (asprintf(&req, "%s%s", head, body) < 0) die("asprintf");
    } else {
        if (asprintf(&body, "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s,\"id\":1}", method, params) < 0)
            die("asprintf");
        if (dialect == LINES) {
            if (asprintf(&req, "%s\n", body) < 0) die("asprintf");
        } else if (asprintf(&req, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                  "Content-Length: %zu\r\n\r\n%s", path, strlen(body), body) < 0) {
            die("asprintf");
        }
    }
    free(body);
    return req;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port N [--host 127.0.0.1] [--dialect lines|legacy|http] [--connections 32]\n"
            "               [--pipeline 1] [--duration 5] [--warmup 0.5] [--method h.hello] [--params '[]']\n"
            "               [--params-file FILE] [--path /rpc]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *method = "h.hello", *params = "[]", *path = "/rpc";
    int port = 0, nconns = 32;
    double duration = 5, warmup = 0.5;
    char *params_buf = NULL;
    dialect = LINES;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--connections")) nconns = atoi(v);
        else if (!strcmp(a, "--pipeline")) pipeline_n = atoi(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--method")) method = v;
        else if (!strcmp(a, "--params")) params = v;
        else if (!strcmp(a, "--path")) path = v;
        else if (!strcmp(a, "--params-file")) {
            FILE *f = fopen(v, "rb");
            if (!f) die(v);
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            fseek(f, 0, SEEK_SET);
            params_buf = malloc((size_t)n + 1);
            if (fread(params_buf, 1, (size_t)n, f) != (size_t)n) die("fread");
            params_buf[n] = 0;
            fclose(f);
            params = params_buf;
        } else if (!strcmp(a, "--dialect")) {
            if (!strcmp(v, "lines")) dialect = LINES;
            else if (!strcmp(v, "legacy")) dialect = LEGACY;
            else if (!strcmp(v, "http")) dialect = HTTP;
            else usage();
        } else usage();
        i++;
    }
    if (port <= 0 || nconns <= 0 || pipeline_n <= 0 || duration <= 0 || warmup < 0) usage();
    if (dialect == LEGACY) pipeline_n = 1;
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) usage();
    request = build_request(method, params, path);
    request_len = strlen(request);

    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    conn_t *conns = calloc((size_t)nconns, sizeof *conns);
    uint64_t start = now_ns();
    measure_from_ns = start + (uint64_t)(warmup * 1e9);
    stop_ns = measure_from_ns + (uint64_t)(duration * 1e9);
    for (int i = 0; i < nconns; i++) {
        conns[i].sent = calloc((size_t)pipeline_n, sizeof(uint64_t));
        open_conn(&conns[i]);
    }
    struct epoll_event evs[256];
    uint64_t measured_start = 0, measured_end = 0;
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, 50);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
        uint64_t t = now_ns();
        if (!measuring && t >= measure_from_ns && t < stop_ns) {
            measuring = 1;
            measured_start = t;
        }
        if (t >= stop_ns) {
            measured_end = t;
            break;
        }
    }
    double seconds = measuring ? (double)(measured_end - measured_start) / 1e9 : 0.0;
    uint64_t total = 0, p50 = 0, p90 = 0, p99 = 0;
    for (int b = 0; b < NBUCKETS; b++) total += hist[b];
    uint64_t acc = 0;
    for (int b = 0; b < NBUCKETS && total; b++) {
        acc += hist[b];
        if (!p50 && acc * 100 >= total * 50) p50 = value_of(b);
        if (!p90 && acc * 100 >= total * 90) p90 = value_of(b);
        if (!p99 && acc * 100 >= total * 99) { p99 = value_of(b); break; }
    }
    for (char *q = first_error; *q; q++)
        if (*q == '"' || *q == '\\' || (unsigned char)*q < 32) *q = '\'';
    printf("{\"calls\":%llu,\"errors\":%llu,\"conn_errors\":%llu,\"seconds\":%.3f,\"rps\":%.1f,"
           "\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,\"max_us\":%llu,\"first_error\":\"%s\"}\n",
           (unsigned long long)calls, (unsigned long long)errors, (unsigned long long)conn_errors, seconds,
           seconds > 0 ? (double)(calls - errors) / seconds : 0.0, (unsigned long long)p50, (unsigned long long)p90,
           (unsigned long long)p99, (unsigned long long)max_us, first_error);
    return 0;
}
