#include "wsexec.h"

#include <curl/curl.h>
#include <errno.h>
#include <libwebsockets.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "channel.h"
#include "libmoat/macro.h"
#include "tty.h"

#define CHUNK       (64 * 1024) /* of stdin per message */
#define QUEUE_MAX   8           /* messages waiting to be sent: stdin is read no further ahead */
#define RX_BUFFER   (64 * 1024)
#define FRAME_BYTES 4 /* the helper's frame header: a big-endian length */

typedef struct {
    unsigned char *buf; /* LWS_PRE bytes of headroom, then the message */
    size_t len;         /* of the message: the channel byte and its data */
} message;

typedef struct {
    const wsexec_request *req;
    struct lws_context *ctx;
    struct lws *wsi;
    char *token; /* the bearer token, or NULL */
    channel_demux demux;
    moat_error fail; /* the first failure of the output (MOAT_E_IO) */
    bool established, done;
    unsigned http_status; /* of a refused upgrade */
    char connect_error[256];
    /* stdin, from the reader thread to the service loop */
    pthread_mutex_t lock;
    pthread_cond_t room;
    message queue[QUEUE_MAX];
    size_t head, count;
    bool stopping;
    int stop_fd; /* an eventfd that wakes the reader out of poll() */
    pthread_t reader;
    bool reader_started;
} wsexec;

static volatile sig_atomic_t winch;
static struct lws_context *winch_ctx;

static void on_winch(int sig)
{
    winch = 1;
    if (winch_ctx)
        lws_cancel_service(winch_ctx); /* a write to lws's own pipe */
}

/* ---- stdin: the reader thread queues messages, the service loop sends them ---- */

static bool enqueue(wsexec *s, unsigned char *buf, size_t len)
{
    pthread_mutex_lock(&s->lock);
    while (s->count == QUEUE_MAX && !s->stopping)
        pthread_cond_wait(&s->room, &s->lock);
    bool ok = !s->stopping;
    if (ok)
        s->queue[(s->head + s->count++) % QUEUE_MAX] = (message){buf, len};
    pthread_mutex_unlock(&s->lock);
    if (ok)
        lws_cancel_service(s->ctx);
    else
        free(buf);
    return ok;
}

/* A message for channel 0: data (n bytes) with the helper's frame header when framed. */
static unsigned char *stdin_message(const wsexec *s, size_t n, size_t *ret_len,
                                    unsigned char **ret_data)
{
    bool framed = s->req->stdin_mode == WSEXEC_STDIN_FRAMED;
    size_t len = 1 + (framed ? FRAME_BYTES : 0) + n;
    unsigned char *buf = malloc(LWS_PRE + len);
    if (!buf)
        return NULL;
    unsigned char *p = buf + LWS_PRE;
    *p++ = CHANNEL_STDIN;
    if (framed) {
        *p++ = (unsigned char)(n >> 24);
        *p++ = (unsigned char)(n >> 16);
        *p++ = (unsigned char)(n >> 8);
        *p++ = (unsigned char)n;
    }
    *ret_data = p;
    *ret_len = len;
    return buf;
}

/* The end of stdin: a 0-length frame for the helper; v5's close of channel 0 otherwise;
 * nothing for a terminal (the remote one ends the session). */
static void enqueue_end(wsexec *s)
{
    size_t len;
    unsigned char *data, *buf;
    if (s->req->tty)
        return;
    if (s->req->stdin_mode == WSEXEC_STDIN_FRAMED) {
        buf = stdin_message(s, 0, &len, &data);
    } else {
        len = 2;
        buf = malloc(LWS_PRE + len);
        if (buf) {
            buf[LWS_PRE] = CHANNEL_CLOSE;
            buf[LWS_PRE + 1] = CHANNEL_STDIN;
        }
    }
    if (buf)
        enqueue(s, buf, len);
}

static void *read_stdin(void *user)
{
    wsexec *s = user;
    int fd = s->req->in_fd;
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = s->stop_fd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents)
            return NULL;
        size_t len;
        unsigned char *data, *buf = stdin_message(s, CHUNK, &len, &data);
        if (!buf)
            break;
        ssize_t n = read(fd, data, CHUNK);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            free(buf);
            continue;
        }
        if (n <= 0) { /* the end, or an error reading: the command's stdin ends here too */
            free(buf);
            break;
        }
        if (s->req->stdin_mode == WSEXEC_STDIN_FRAMED) { /* the header said CHUNK */
            data[-4] = (unsigned char)(n >> 24);
            data[-3] = (unsigned char)(n >> 16);
            data[-2] = (unsigned char)(n >> 8);
            data[-1] = (unsigned char)n;
        }
        if (!enqueue(s, buf, len - CHUNK + (size_t)n))
            return NULL;
    }
    enqueue_end(s);
    return NULL;
}

static void stop_reader(wsexec *s)
{
    uint64_t one = 1;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->lock);
    if (s->reader_started) {
        if (write(s->stop_fd, &one, sizeof(one)) < 0) {
            /* an eventfd write fails only on overflow: the reader is woken anyway */
        }
        pthread_join(s->reader, NULL);
        s->reader_started = false;
    }
    for (; s->count; s->count--, s->head = (s->head + 1) % QUEUE_MAX)
        free(s->queue[s->head].buf);
}

/* ---- the service loop's side ---- */

static int write_all(int fd, const unsigned char *data, size_t len, moat_error *err)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return moat_error_set_errno(err, errno, "writing the command's output");
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int on_output(void *user, int channel, const unsigned char *data, size_t len,
                     moat_error *err)
{
    const wsexec_request *req = user;
    if (channel == CHANNEL_STDERR && req->err_buf)
        return moat_strbuf_append(req->err_buf, data, len) < 0
                   ? moat_error_set(err, MOAT_E_NOMEM, "the command's stderr is too long")
                   : 0;
    return write_all(channel == CHANNEL_STDERR ? req->err_fd : req->out_fd, data, len, err);
}

/* Sends one waiting message (a resize first); asks to be called again while more wait. */
static int send_next(wsexec *s, struct lws *wsi)
{
    unsigned char resize[LWS_PRE + 64];
    unsigned cols, rows;
    if (winch && s->req->tty) {
        winch = 0;
        if (tty_size(s->req->resize_fd, &cols, &rows)) {
            resize[LWS_PRE] = CHANNEL_RESIZE;
            size_t n = channel_resize_message((char *)resize + LWS_PRE + 1,
                                              sizeof(resize) - LWS_PRE - 1, cols, rows);
            if (lws_write(wsi, resize + LWS_PRE, n + 1, LWS_WRITE_BINARY) < (int)n + 1)
                return -1;
        }
        lws_callback_on_writable(wsi);
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    message m = {NULL, 0};
    if (s->count) {
        m = s->queue[s->head];
        s->head = (s->head + 1) % QUEUE_MAX;
        s->count--;
        pthread_cond_signal(&s->room);
    }
    bool more = s->count > 0;
    pthread_mutex_unlock(&s->lock);
    if (m.buf) {
        int n = lws_write(wsi, m.buf + LWS_PRE, m.len, LWS_WRITE_BINARY);
        free(m.buf);
        if (n < (int)m.len)
            return -1;
    }
    if (more)
        lws_callback_on_writable(wsi);
    return 0;
}

static bool wants_to_send(wsexec *s)
{
    pthread_mutex_lock(&s->lock);
    bool any = s->count > 0;
    pthread_mutex_unlock(&s->lock);
    return any || (winch && s->req->tty);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    wsexec *s = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (s->token) {
            unsigned char **p = in, *end = *p + len;
            _cleanup_free_ char *value = NULL;
            if (asprintf(&value, "Bearer %s", s->token) < 0)
                return -1;
            int r = lws_add_http_header_by_name(wsi, (const unsigned char *)"authorization:",
                                                (unsigned char *)value, (int)strlen(value), p, end);
            explicit_bzero(value, strlen(value));
            if (r)
                return -1;
        }
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        s->established = true;
        if (s->req->tty)
            winch = 1; /* the remote terminal starts at this one's size */
        if (wants_to_send(s))
            lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (s->established && !s->done && s->wsi && wants_to_send(s))
            lws_callback_on_writable(s->wsi);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (send_next(s, wsi) < 0)
            return -1;
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        bool last = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
        if (channel_demux_feed(&s->demux, in, len, last, on_output, (void *)s->req, &s->fail) < 0)
            return -1; /* closes the connection: the output cannot be delivered */
        break;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        s->http_status = wsi ? lws_http_client_http_response(wsi) : 0;
        snprintf(s->connect_error, sizeof(s->connect_error), "%s",
                 in ? (const char *)in : "connection failed");
        s->done = true;
        s->wsi = NULL;
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
        s->done = true;
        s->wsi = NULL;
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {CHANNEL_PROTOCOL, callback, 0, RX_BUFFER, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- the request ---- */

typedef struct {
    char host[256];
    int port;
    bool tls;
    char prefix[256]; /* a path the server URL carries, without its trailing slash */
} server_address;

static int parse_server(server_address *a, const char *url, moat_error *err)
{
    const char *p = url;
    *a = (server_address){0};
    if (strncmp(p, "https://", 8) == 0) {
        a->tls = true;
        p += 8;
    } else if (strncmp(p, "http://", 7) == 0) {
        p += 7;
    } else {
        return moat_error_set(err, MOAT_E_INVALID, "server %s: not an http(s) URL", url);
    }
    const char *host_end, *rest;
    if (*p == '[') { /* an IPv6 address */
        host_end = strchr(p, ']');
        if (!host_end)
            return moat_error_set(err, MOAT_E_INVALID, "server %s: unclosed [", url);
        p++;
        rest = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        rest = host_end;
    }
    if (host_end == p || (size_t)(host_end - p) >= sizeof(a->host))
        return moat_error_set(err, MOAT_E_INVALID, "server %s: no host", url);
    memcpy(a->host, p, (size_t)(host_end - p));
    a->port = a->tls ? 443 : 80;
    if (*rest == ':') {
        char *end;
        long port = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || port <= 0 || port > 65535 || (*end && *end != '/'))
            return moat_error_set(err, MOAT_E_INVALID, "server %s: bad port", url);
        a->port = (int)port;
        rest = end;
    }
    snprintf(a->prefix, sizeof(a->prefix), "%s", rest);
    size_t n = strlen(a->prefix);
    while (n && a->prefix[n - 1] == '/')
        a->prefix[--n] = '\0';
    return 0;
}

static int query_add(moat_strbuf *q, const char *key, const char *value)
{
    char *v = curl_easy_escape(NULL, value, 0);
    if (!v)
        return -1;
    moat_strbuf_appendf(q, "%s%s=%s", q->len ? "&" : "?", key, v);
    curl_free(v);
    return 0;
}

static char *exec_path(const server_address *a, const wsexec_request *req)
{
    moat_strbuf q = {0};
    for (char *const *arg = req->argv; *arg; arg++)
        if (query_add(&q, "command", *arg) < 0)
            q.truncated = true;
    if (req->container)
        query_add(&q, "container", req->container);
    moat_strbuf_appendf(&q, "&stdin=%s&stdout=true&stderr=%s&tty=%s",
                        req->stdin_mode == WSEXEC_STDIN_NONE ? "false" : "true",
                        req->tty ? "false" : "true", req->tty ? "true" : "false");
    _cleanup_free_ char *query = moat_strbuf_take(&q);
    char *path = NULL;
    if (!query || asprintf(&path, "%s/api/v1/namespaces/%s/pods/%s/exec%s", a->prefix, req->ns,
                           req->pod, query) < 0)
        return NULL;
    return path;
}

static int refused(wsexec *s, moat_error *err)
{
    const wsexec_request *req = s->req;
    const char *why;
    switch (s->http_status) {
    case 401:
        why = "Unauthorized: the server did not accept the kubeconfig's credentials";
        break;
    case 403:
        why = "forbidden: you may not create pods/exec in this namespace (kubectl auth can-i "
              "create pods/exec)";
        break;
    case 404:
        why = "not found: the pod is gone";
        break;
    default:
        why = "the server refused the exec";
        break;
    }
    moat_error_set(err, MOAT_E_KUBE, "exec in pod %s/%s: %s (HTTP %u)", req->ns, req->pod, why,
                   s->http_status);
    err->http_status = s->http_status;
    return -1;
}

int wsexec_run(kube_config *cfg, const wsexec_request *req, int *ret_exit, moat_error *err)
{
    server_address addr;
    wsexec s = {.req = req, .stop_fd = -1};
    struct lws_context_creation_info info = {0};
    struct lws_client_connect_info cc = {0};
    _cleanup_free_ char *path = NULL;
    size_t len;
    int r = -1;

    if (parse_server(&addr, kube_config_server(cfg), err) < 0)
        return -1;
    if (!(path = exec_path(&addr, req)))
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (kube_config_token(cfg, &s.token, err) < 0)
        return -1;
    channel_demux_init(&s.demux);
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.room, NULL);

    lws_set_log_level(0, NULL); /* its failures come back through the callback */
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.user = &s;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_mem = kube_config_ca(cfg, &len);
    info.client_ssl_ca_mem_len = (unsigned)len;
    info.client_ssl_cert_mem = kube_config_client_cert(cfg, &len);
    info.client_ssl_cert_mem_len = (unsigned)len;
    info.client_ssl_key_mem = kube_config_client_key(cfg, &len);
    info.client_ssl_key_mem_len = (unsigned)len;
    if (!(s.ctx = lws_create_context(&info))) {
        moat_error_set(err, MOAT_E_NETWORK, "exec: cannot set up TLS from the kubeconfig");
        goto out;
    }

    cc.context = s.ctx;
    cc.address = addr.host;
    cc.port = addr.port;
    cc.path = path;
    cc.host = kube_config_tls_server_name(cfg) ? kube_config_tls_server_name(cfg) : addr.host;
    cc.origin = cc.host;
    cc.protocol = CHANNEL_PROTOCOL;
    cc.local_protocol_name = CHANNEL_PROTOCOL;
    cc.pwsi = &s.wsi;
    if (addr.tls)
        cc.ssl_connection =
            LCCSCF_USE_SSL | (kube_config_insecure(cfg)
                                  ? LCCSCF_ALLOW_INSECURE | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK
                                  : 0);
    if (req->stdin_mode != WSEXEC_STDIN_NONE && req->in_fd >= 0) {
        if ((s.stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
            moat_error_set_errno(err, errno, "eventfd");
            goto out;
        }
        if (pthread_create(&s.reader, NULL, read_stdin, &s) != 0) {
            moat_error_set(err, MOAT_E_NOMEM, "cannot start the stdin reader");
            goto out;
        }
        s.reader_started = true;
    } else if (req->stdin_mode != WSEXEC_STDIN_NONE) {
        enqueue_end(&s); /* no input: the command reads its end at once */
    }
    if (req->tty) {
        winch_ctx = s.ctx;
        signal(SIGWINCH, on_winch);
    }
    if (!lws_client_connect_via_info(&cc) && !s.done) {
        moat_error_set(err, MOAT_E_NETWORK, "exec: cannot connect to %s", kube_config_server(cfg));
        goto out;
    }
    while (!s.done && !(req->interrupted && *req->interrupted))
        if (lws_service(s.ctx, 0) < 0)
            break;

    if (!s.done) {
        moat_error_set(err, MOAT_E_CANCELED, "exec: interrupted");
    } else if (s.fail.code) {
        *err = s.fail;
        s.fail = (moat_error)MOAT_ERROR_INIT;
    } else if (s.demux.has_status) {
        char *json = s.demux.status.buf;
        if (channel_status_exit_code(json ? json : "", s.demux.status.len, ret_exit, err) == 0)
            r = 0;
    } else if (!s.established && s.http_status) {
        refused(&s, err);
    } else if (!s.established) {
        moat_error_set(err, MOAT_E_NETWORK, "exec: connecting to %s: %s", kube_config_server(cfg),
                       s.connect_error);
    } else {
        moat_error_set(err, MOAT_E_NETWORK,
                       "exec: the connection ended before the command's exit status; its "
                       "output may be incomplete");
    }
out:
    if (req->tty) {
        signal(SIGWINCH, SIG_DFL);
        winch_ctx = NULL;
    }
    stop_reader(&s);
    if (s.ctx)
        lws_context_destroy(s.ctx);
    if (s.stop_fd >= 0)
        close(s.stop_fd);
    if (s.token) {
        explicit_bzero(s.token, strlen(s.token));
        free(s.token);
    }
    moat_error_clear(&s.fail);
    channel_demux_clear(&s.demux);
    pthread_cond_destroy(&s.room);
    pthread_mutex_destroy(&s.lock);
    return r;
}
