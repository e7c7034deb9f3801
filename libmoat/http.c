#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "macro.h"

struct moat_http {
    struct MHD_Daemon *daemon;
    moat_http_handlers handlers;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body, bool owned,
                             const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    moat_http *h = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", false,
                     "text/plain");
    if (strcmp(url, "/healthz") == 0)
        return reply(conn, MHD_HTTP_OK, "ok\n", false, "text/plain");
    if (strcmp(url, "/readyz") == 0 && h->handlers.unready) {
        char *why = h->handlers.unready(h->handlers.user);
        return why ? reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why, true, "text/plain")
                   : reply(conn, MHD_HTTP_OK, "ok\n", false, "text/plain");
    }
    if (strcmp(url, "/readyz") == 0)
        return !h->handlers.ready || h->handlers.ready(h->handlers.user)
                   ? reply(conn, MHD_HTTP_OK, "ok\n", false, "text/plain")
                   : reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n", false, "text/plain");
    if (strcmp(url, "/metrics") == 0) {
        char *text = h->handlers.metrics ? h->handlers.metrics(h->handlers.user) : strdup("");
        if (!text)
            return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", false,
                         "text/plain");
        return reply(conn, MHD_HTTP_OK, text, true, "text/plain; version=0.0.4");
    }
    return reply(conn, MHD_HTTP_NOT_FOUND, "not found\n", false, "text/plain");
}

static int parse_addr(struct sockaddr_storage *ss, const char *addr, moat_error *err)
{
    _cleanup_free_ char *copy = strdup(addr);
    if (!copy)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    char *host = copy, *colon = strrchr(copy, ':');
    if (!colon)
        return moat_error_set(err, MOAT_E_INVALID, "metrics address %s: no port", addr);
    *colon = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return moat_error_set(err, MOAT_E_INVALID, "metrics address %s: bad port", addr);
    memset(ss, 0, sizeof(*ss));
    if (*host == '[') {
        host++;
        char *close = strchr(host, ']');
        if (close)
            *close = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return moat_error_set(err, MOAT_E_INVALID, "metrics address %s: bad IPv6 host", addr);
        return 0;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    if (!*host)
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
        return moat_error_set(err, MOAT_E_INVALID, "metrics address %s: host must be an IP", addr);
    return 0;
}

int moat_http_start(moat_http **out, const char *addr, const moat_http_handlers *handlers,
                    moat_error *err)
{
    struct sockaddr_storage ss;
    if (parse_addr(&ss, addr, err) < 0)
        return -1;
    moat_http *h = calloc(1, sizeof(*h));
    if (!h)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    h->handlers = *handlers;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    uint16_t port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    h->daemon = MHD_start_daemon(flags, port, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, &ss,
                                 MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT,
                                 10u, MHD_OPTION_END);
    if (!h->daemon) {
        free(h);
        return moat_error_set(err, MOAT_E_IO, "cannot listen on %s", addr);
    }
    *out = h;
    return 0;
}

void moat_http_stop(moat_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
