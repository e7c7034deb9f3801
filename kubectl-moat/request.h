/* The exec request, without the socket: where the API server is (its URL from the kubeconfig,
 * taken apart for libwebsockets) and the path of a pods/exec call. */
#ifndef MOAT_PLUGIN_REQUEST_H
#define MOAT_PLUGIN_REQUEST_H

#include <stdbool.h>

#include "libmoat/error.h"

typedef struct {
    char *host;   /* owned; an IPv6 address without its brackets */
    int port;     /* 443 or 80 unless the URL names one */
    bool tls;     /* https */
    char *prefix; /* owned: a path the URL carries ("" or "/k8s"), no trailing slash */
} server_address;

/* Takes "https://host[:port][/prefix]" apart. -1 with MOAT_E_INVALID naming the URL. */
int server_address_parse(server_address *a, const char *url, moat_error *err);
void server_address_clear(server_address *a);

typedef struct {
    const char *ns, *pod, *container; /* container NULL: the pod's only one */
    char *const *argv;                /* NULL-terminated, at least one */
    bool with_stdin, tty;
} exec_call;

/* prefix + "/api/v1/namespaces/NS/pods/POD/exec?command=...": each command word its own
 * `command` parameter, every part percent-encoded; stderr is not asked for with a tty (the
 * terminal carries both). Caller frees; NULL when out of memory. */
char *exec_path_build(const char *prefix, const exec_call *call);

#endif
