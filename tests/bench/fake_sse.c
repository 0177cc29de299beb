/* fake_sse.c - the scripted SSE server; see fake_sse.h. */
#include "tests/bench/fake_sse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

static const char sse_head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

static void sleep_until(double t)
{
    double d = t - dsa_time_now();
    if (d <= 0)
        return;
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void put(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Writes piece `step` at t_request + ms; as one HTTP chunk when chunked. */
static void step_at(fake_conn *c, int step, double ms, const char *s, int chunked)
{
    sleep_until(c->t_request + ms / 1000);
    /* taken before the write: the client cannot see the piece earlier */
    c->sent_at[step] = dsa_time_now();
    if (chunked) {
        char head[32];
        int n = snprintf(head, sizeof head, "%zx\r\n", strlen(s));
        size_t len = strlen(s);
        char *buf = malloc((size_t)n + len + 3);
        memcpy(buf, head, (size_t)n);
        memcpy(buf + n, s, len);
        memcpy(buf + n + len, "\r\n", 2);
        put(c->fd, buf, (size_t)n + len + 2);
        free(buf);
    } else {
        put(c->fd, s, strlen(s));
    }
    if (step + 1 > c->n_steps)
        c->n_steps = step + 1;
}

static void end_chunks(fake_conn *c)
{
    put(c->fd, "0\r\n\r\n", 5);
}

#define TEXT_CHUNK(t) \
    "data: {\"choices\":[{\"index\":0,\"text\":\"" t "\",\"finish_reason\":null}],\"usage\":null}\n\n"
#define DELTA_CHUNK(d) \
    "data: {\"choices\":[{\"index\":0,\"delta\":" d ",\"finish_reason\":null}],\"usage\":null}\n\n"

static void run_script(fake_conn *c)
{
    const char *s = c->script;
    if (strcmp(s, "ok") == 0) {
        step_at(c, 0, 0, sse_head, 0);
        static const char *const t[] = {TEXT_CHUNK("t1"), TEXT_CHUNK("t2"), TEXT_CHUNK("t3"),
                                        TEXT_CHUNK("t4"), TEXT_CHUNK("t5")};
        for (int k = 0; k < 5; k++)
            step_at(c, 1 + k, 30 + 20 * k, t[k], 1);
        step_at(c, 6, 120, "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":"
                           "\"length\"}],\"usage\":null}\n\n", 1);
        step_at(c, 7, 140, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
                           "\"completion_tokens\":5,\"total_tokens\":9}}\n\ndata: [DONE]\n\n", 1);
        end_chunks(c);
    } else if (strcmp(s, "chat") == 0) {
        step_at(c, 0, 0, sse_head, 0);
        step_at(c, 1, 0, DELTA_CHUNK("{\"role\":\"assistant\",\"content\":\"\"}"), 1);
        step_at(c, 2, 30, DELTA_CHUNK("{\"reasoning_content\":\"think\"}"), 1);
        step_at(c, 3, 50, DELTA_CHUNK("{\"reasoning_content\":\"more\"}"), 1);
        step_at(c, 4, 70, DELTA_CHUNK("{\"content\":\"A\"}"), 1);
        step_at(c, 5, 90, DELTA_CHUNK("{\"content\":\"B\"}"), 1);
        step_at(c, 6, 95, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
                          "\"stop\"}],\"usage\":null}\n\n", 1);
        step_at(c, 7, 100, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
                           "\"completion_tokens\":4,\"total_tokens\":8}}\n\ndata: [DONE]\n\n", 1);
        end_chunks(c);
    } else if (strcmp(s, "500") == 0) {
        step_at(c, 0, 0, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json"
                         "\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
                         "{\"error\":\"internal\"}", 0);
    } else if (strcmp(s, "reset") == 0) {
        step_at(c, 0, 0, sse_head, 0);
        step_at(c, 1, 5, TEXT_CHUNK("t1"), 1);
        sleep_until(c->t_request + 0.015);
        struct linger l = {1, 0}; /* close with RST */
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    } else if (strcmp(s, "malformed") == 0) {
        step_at(c, 0, 0, sse_head, 0);
        step_at(c, 1, 5, TEXT_CHUNK("t1"), 1);
        step_at(c, 2, 10, "data: {\"choices\": [\n\n", 1);
        end_chunks(c);
    } else if (strcmp(s, "garbage") == 0) {
        step_at(c, 0, 0, "NOT HTTP AT ALL\r\n\r\n", 0);
    } else if (strcmp(s, "truncated") == 0) {
        step_at(c, 0, 0, sse_head, 0);
        step_at(c, 1, 5, TEXT_CHUNK("t1"), 1);
    } else if (strcmp(s, "error_event") == 0) {
        step_at(c, 0, 0, sse_head, 0);
        step_at(c, 1, 5, "data: {\"error\":{\"message\":\"overloaded\",\"type\":"
                         "\"server_error\",\"code\":503}}\n\ndata: [DONE]\n\n", 1);
        end_chunks(c);
    } else if (strcmp(s, "no_tokens") == 0) {
        step_at(c, 0, 0, sse_head, 0);
        step_at(c, 1, 5, "data: [DONE]\n\n", 1);
        end_chunks(c);
    } else if (strcmp(s, "silent") == 0) {
        sleep_until(c->t_request + 1.2); /* past the client's timeout */
    }
}

/* Reads headers and a Content-Length body (5 s at most). */
static int read_request(fake_conn *c, char *buf, size_t cap)
{
    size_t n = 0;
    double deadline = dsa_time_now() + 5;
    for (;;) {
        buf[n] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = strcasestr(buf, "Content-Length:");
            size_t want = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 15, NULL, 10) : 0);
            if (n >= want)
                return 0;
        }
        struct pollfd p = {c->fd, POLLIN, 0};
        if (n + 1 >= cap || dsa_time_now() > deadline || poll(&p, 1, 100) < 0)
            return -1;
        if (!(p.revents & (POLLIN | POLLHUP)))
            continue;
        ssize_t r = recv(c->fd, buf + n, cap - n - 1, 0);
        if (r <= 0)
            return -1;
        n += (size_t)r;
    }
}

static void *conn_main(void *arg)
{
    fake_conn *c = arg;
    char buf[16384];
    if (read_request(c, buf, sizeof buf) == 0) {
        c->t_request = dsa_time_now();
        const char *m = strstr(buf, "case:");
        if (m)
            sscanf(m + 5, "%31[a-z_0-9]", c->script);
        run_script(c);
    }
    close(c->fd);
    return NULL;
}

static void *accept_main(void *arg)
{
    fake_sse *s = arg;
    double deadline = dsa_time_now() + 20;
    while (s->n_conns < s->n_expected && !s->stop && dsa_time_now() < deadline) {
        struct pollfd p = {s->listen_fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        fake_conn *c = &s->conns[s->n_conns];
        c->fd = fd;
        if (pthread_create(&c->th, NULL, conn_main, c) != 0) {
            close(fd);
            continue;
        }
        c->started = 1;
        s->n_conns++;
    }
    return NULL;
}

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

int fake_sse_start(fake_sse *s, int n_conns)
{
    memset(s, 0, sizeof *s);
    if (n_conns > FAKE_MAX_CONNS)
        return -1;
    s->n_expected = n_conns;
    if ((s->listen_fd = listen_loopback(&s->port)) < 0)
        return -1;
    if (pthread_create(&s->acceptor, NULL, accept_main, s) != 0) {
        close(s->listen_fd);
        return -1;
    }
    return 0;
}

void fake_sse_stop(fake_sse *s)
{
    s->stop = 1;
    pthread_join(s->acceptor, NULL);
    for (int i = 0; i < s->n_conns; i++)
        if (s->conns[i].started)
            pthread_join(s->conns[i].th, NULL);
    close(s->listen_fd);
}

int fake_sse_conn_of(const fake_sse *s, int i)
{
    (void)s;
    return i;
}

int fake_sse_free_port(void)
{
    int port = 0, fd = listen_loopback(&port);
    if (fd < 0)
        return 0;
    close(fd);
    return port;
}
