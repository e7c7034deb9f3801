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
#include "request.h"
#include "libmoat/fdio.h"
#include "libmoat/kube.h"
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
/* The context of the exec running now, for signal handlers to wake its loop. */
static _Atomic(struct lws_context *) running;

void wsexec_wake(void)
{
    struct lws_context *ctx = atomic_load(&running);
    if (ctx)
        lws_cancel_service(ctx); /* a write to lws's own pipe */
}

static void on_winch(int sig)
{
    winch = 1;
    wsexec_wake();
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

static int on_output(void *user, int channel, const unsigned char *data, size_t len,
                     moat_error *err)
{
    const wsexec_request *req = user;
    moat_strbuf *keep = channel == CHANNEL_STDERR ? req->err_buf : req->out_buf;
    if (keep)
        return moat_strbuf_append(keep, data, len) < 0
                   ? moat_error_set(err, MOAT_E_NOMEM, "the command's %s is too long",
                                    channel == CHANNEL_STDERR ? "stderr" : "stdout")
                   : 0;
    if (moat_write_all(channel == CHANNEL_STDERR ? req->err_fd : req->out_fd, data, len) < 0)
        return moat_error_set_errno(err, errno, "writing the command's output");
    return 0;
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
            if (n && lws_write(wsi, resize + LWS_PRE, n + 1, LWS_WRITE_BINARY) < (int)n + 1)
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
        snprintf(s->connect_error, sizeof(s->connect_error), "%.*s", in ? (int)len : 17,
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

/* A refused upgrade: libwebsockets hands over its HTTP status but not its body, so the
 * reason is the client library's from the status alone (kube_status_to_error, as for any
 * answer that is not a Status), with what a person can do about it. */
static int refused(wsexec *s, moat_error *err)
{
    const wsexec_request *req = s->req;
    _cleanup_free_ char *what = NULL;
    if (asprintf(&what, "exec in pod %s/%s", req->ns, req->pod) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    kube_status_to_error(err, s->http_status, "", 0, what);
    switch (s->http_status) {
    case 401:
        return moat_error_prefix(err, "the server did not accept the kubeconfig's credentials");
    case 403:
        return moat_error_prefix(err,
                                 "forbidden: you may not create pods/exec in namespace %s "
                                 "(kubectl auth can-i create pods/exec -n %s)",
                                 req->ns, req->ns);
    case 404:
        return moat_error_prefix(err, "not found: the pod is gone");
    default:
        return -1;
    }
}

/* Runs fn with every signal blocked in the thread it starts: they stay with the main thread,
 * whose handlers wake the service loop. */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

static bool interrupted(const wsexec_request *req)
{
    return req->interrupted && *req->interrupted;
}

int wsexec_run(kube_config *cfg, const wsexec_request *req, int *ret_exit, moat_error *err)
{
    server_address addr = {0};
    wsexec s = {.req = req, .stop_fd = -1};
    struct lws_context_creation_info info = {0};
    struct lws_client_connect_info cc = {0};
    _cleanup_free_ char *path = NULL;
    const exec_call call = {.ns = req->ns,
                            .pod = req->pod,
                            .container = req->container,
                            .argv = req->argv,
                            .with_stdin = req->stdin_mode != WSEXEC_STDIN_NONE,
                            .tty = req->tty};
    size_t len;
    int r = -1;
    bool loop_failed = false;

    if (server_address_parse(&addr, kube_config_server(cfg), err) < 0)
        return -1;
    if (!(path = exec_path_build(addr.prefix, &call))) {
        server_address_clear(&addr);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    if (kube_config_token(cfg, &s.token, err) < 0) {
        server_address_clear(&addr);
        return -1;
    }
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
    atomic_store(&running, s.ctx);

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
        if (start_thread(&s.reader, read_stdin, &s) != 0) {
            moat_error_set(err, MOAT_E_NOMEM, "cannot start the stdin reader");
            goto out;
        }
        s.reader_started = true;
    } else if (req->stdin_mode != WSEXEC_STDIN_NONE) {
        enqueue_end(&s); /* no input: the command reads its end at once */
    }
    if (req->tty)
        signal(SIGWINCH, on_winch);
    if (!lws_client_connect_via_info(&cc) && !s.done) {
        moat_error_set(err, MOAT_E_NETWORK, "exec: cannot connect to %s", kube_config_server(cfg));
        goto out;
    }
    /* a signal's handler (cli.c's, on_winch) wakes lws_service through wsexec_wake() */
    while (!s.done && !interrupted(req))
        if (lws_service(s.ctx, 0) < 0) {
            loop_failed = true;
            break;
        }

    if (!s.done && loop_failed) {
        moat_error_set(err, MOAT_E_NETWORK, "exec: the WebSocket's event loop failed");
    } else if (!s.done) {
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
    if (req->tty)
        signal(SIGWINCH, SIG_DFL);
    stop_reader(&s);
    atomic_store(&running, NULL);
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
    server_address_clear(&addr);
    return r;
}
