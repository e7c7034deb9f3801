#include "request.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/macro.h"
#include "libmoat/strbuf.h"

int server_address_parse(server_address *a, const char *url, moat_error *err)
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
        if (!(host_end = strchr(++p, ']')))
            return moat_error_set(err, MOAT_E_INVALID, "server %s: unclosed [", url);
        rest = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/?#");
        rest = host_end;
    }
    if (host_end == p)
        return moat_error_set(err, MOAT_E_INVALID, "server %s: no host", url);
    a->port = a->tls ? 443 : 80;
    if (*rest == ':') {
        char *end;
        long port = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || port <= 0 || port > 65535 || (*end && *end != '/'))
            return moat_error_set(err, MOAT_E_INVALID, "server %s: bad port", url);
        a->port = (int)port;
        rest = end;
    }
    if (*rest && *rest != '/')
        return moat_error_set(err, MOAT_E_INVALID, "server %s: unexpected \"%s\"", url, rest);
    size_t n = strlen(rest);
    while (n && rest[n - 1] == '/')
        n--;
    a->host = strndup(p, (size_t)(host_end - p));
    a->prefix = strndup(rest, n);
    if (!a->host || !a->prefix) {
        server_address_clear(a);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    return 0;
}

void server_address_clear(server_address *a)
{
    free(a->host);
    free(a->prefix);
    a->host = a->prefix = NULL;
}

/* Appends value percent-encoded; out of memory fails the buffer, as an append would. */
static void append_escaped(moat_strbuf *b, const char *value)
{
    char *v = curl_easy_escape(NULL, value, 0);
    if (!v || moat_strbuf_append(b, v, strlen(v)) < 0)
        b->truncated = true;
    curl_free(v);
}

char *exec_path_build(const char *prefix, const exec_call *call)
{
    moat_strbuf b = {0};
    moat_strbuf_appendf(&b, "%s/api/v1/namespaces/", prefix);
    append_escaped(&b, call->ns);
    moat_strbuf_appendf(&b, "/pods/");
    append_escaped(&b, call->pod);
    moat_strbuf_appendf(&b, "/exec?");
    for (char *const *arg = call->argv; *arg; arg++) {
        moat_strbuf_appendf(&b, "command=");
        append_escaped(&b, *arg);
        moat_strbuf_appendf(&b, "&");
    }
    if (call->container) {
        moat_strbuf_appendf(&b, "container=");
        append_escaped(&b, call->container);
        moat_strbuf_appendf(&b, "&");
    }
    moat_strbuf_appendf(&b, "stdin=%s&stdout=true&stderr=%s&tty=%s",
                        call->with_stdin ? "true" : "false", call->tty ? "false" : "true",
                        call->tty ? "true" : "false");
    return moat_strbuf_take(&b);
}
