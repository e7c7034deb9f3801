/* The small HTTP endpoint every Moat daemon serves (libmicrohttpd, a thread of its own):
 * /healthz (the process answers), /readyz (the daemon says it is ready) and /metrics
 * (Prometheus text the daemon renders). */
#ifndef MOAT_HTTP_H
#define MOAT_HTTP_H

#include <stdbool.h>

#include "error.h"

typedef struct {
    bool (*ready)(void *user); /* NULL: always ready */
    /* When set, used instead of ready: NULL when ready, else why not, malloc'd (the server
     * frees it and answers 503 with it). */
    char *(*unready)(void *user);
    char *(*metrics)(void *user); /* the exposition text, malloc'd (the server frees it) */
    void *user;
} moat_http_handlers;

typedef struct moat_http moat_http;

/* Listens on addr ("host:port", "[v6]:port" or ":port" for every address). */
int moat_http_start(moat_http **out, const char *addr, const moat_http_handlers *handlers,
                    moat_error *err);

/* Stops the server; accepts NULL. */
void moat_http_stop(moat_http *h);

#endif
