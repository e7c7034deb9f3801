/* The operator's small HTTP endpoint (libmicrohttpd, its own thread): /healthz (the
 * process answers), /readyz (the caches have synced) and /metrics (Prometheus text). */
#ifndef MOAT_OPERATOR_HTTP_H
#define MOAT_OPERATOR_HTTP_H

#include "controller.h"
#include "libmoat/error.h"

typedef struct operator_http operator_http;

/* Listens on addr ("host:port", "[v6]:port" or ":port" for every address). The controller
 * is borrowed. */
int operator_http_start(operator_http **out, const char *addr, operator_controller *c,
                        moat_error *err);

/* Stops the server; accepts NULL. */
void operator_http_stop(operator_http *h);

#endif
