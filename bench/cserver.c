/*
 * cserver: the floor of this machine — a single-threaded epoll server that
 * answers every request with a precomputed reply, doing no JSON work at all.
 *
 * It tells the dialect from the first byte, as ppy does:
 *   digit   legacy: read the 11-byte header and that many payload bytes, send the
 *           framed reply `{"data": "hello, world.", "error": ""}`, close
 *   '{'/'[' lines: one precomputed JSON-RPC result line per received '\n'
 *   'P'     HTTP/1.1: one precomputed 200 response per request (headers + Content-Length body)
 *
 * No Python server can beat it; ppy's numbers are quoted as a fraction of it.
 * Build: cc -O2 -o cserver cserver.c   Run: cserver PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { UNKNOWN, LINES, LEGACY, HTTP };

typedef struct {
    int fd, dialect;
    char *in, *out;
    size_t in_len, in_cap, out_len, out_cap, out_off;
    size_t want; /* legacy/http: total bytes of the request being read, 0 = unknown yet */
    int closing, want_out;
} conn_t;

static int epfd;
#define RESULT "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"hello, world.\"}"
#define LEGACY_BODY "{\"data\": \"hello, world.\", \"error\": \"\"}"
static const char LINE_REPLY[] = RESULT "\n";
static char LEGACY_REPLY[128], HTTP_REPLY[256]; /* framed at start-up, so the lengths are right */
static size_t legacy_len, http_len;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n *= 2;
    *buf = realloc(*buf, n);
    if (!*buf) die("realloc");
    *cap = n;
}

static void append(conn_t *c, const char *data, size_t n) {
    reserve(&c->out, &c->out_cap, c->out_len + n);
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
}

static void drop(conn_t *c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c->in);
    free(c->out);
    free(c);
}

/* Turn whole requests in c->in into replies in c->out. */
static void parse(conn_t *c) {
    size_t off = 0;
    while (off < c->in_len && !c->closing) {
        const char *p = c->in + off;
        size_t avail = c->in_len - off;
        if (c->dialect == UNKNOWN) {
            c->dialect = (*p >= '0' && *p <= '9') ? LEGACY : *p == 'P' ? HTTP : LINES;
        }
        if (c->dialect == LINES) {
            const char *nl = memchr(p, '\n', avail);
            if (!nl) break;
            append(c, LINE_REPLY, sizeof LINE_REPLY - 1);
            off += (size_t)(nl - p) + 1;
        } else if (c->dialect == LEGACY) {
            if (avail < 11) break;
            if (!c->want) c->want = 11 + strtoul(p, NULL, 10);
            if (avail < c->want) break;
            append(c, LEGACY_REPLY, legacy_len);
            off = c->in_len;
            c->closing = 1;
        } else {
            if (!c->want) {
                const char *end = memmem(p, avail, "\r\n\r\n", 4);
                if (!end) break;
                size_t body = 0;
                for (const char *q = p; q + 16 < end; q++)
                    if (!strncasecmp(q, "\r\ncontent-length:", 17)) body = strtoul(q + 17, NULL, 10);
                c->want = (size_t)(end - p) + 4 + body;
            }
            if (avail < c->want) break;
            append(c, HTTP_REPLY, http_len);
            off += c->want;
            c->want = 0;
        }
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

/* Returns 0 when the connection was dropped. */
static int flush(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            drop(c);
            return 0;
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->closing) {
            drop(c);
            return 0;
        }
    }
    int want_out = c->out_len > 0;
    if (want_out != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want_out;
    }
    return 1;
}

static void on_readable(conn_t *c) {
    for (;;) {
        reserve(&c->in, &c->in_cap, c->in_len + 65536);
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            if (c->in_len < c->in_cap) break;
            continue;
        }
        if (n < 0 && errno == EAGAIN) break;
        drop(c);
        return;
    }
    parse(c);
    flush(c);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: cserver PORT\n");
        return 2;
    }
    char head[16];
    snprintf(head, sizeof head, "%zu.", sizeof LEGACY_BODY - 1);
    while (strlen(head) < 11) strcat(head, "0");
    legacy_len = (size_t)snprintf(LEGACY_REPLY, sizeof LEGACY_REPLY, "%s%s", head, LEGACY_BODY);
    http_len = (size_t)snprintf(HTTP_REPLY, sizeof HTTP_REPLY,
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n\r\n%s",
                                sizeof RESULT - 1, RESULT);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (!flush(c)) continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
        }
    }
}
