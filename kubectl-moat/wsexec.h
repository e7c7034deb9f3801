/* A command in a pod through pods/exec: one WebSocket speaking v5.channel.k8s.io, over
 * libwebsockets (this module is the only one that uses it; channel.h is the protocol).
 *
 * Authentication is the kubeconfig's, as the Kubernetes client's (libmoat/kube.h): the
 * server's CA, a client certificate and key, or a bearer token, from memory. */
#ifndef MOAT_PLUGIN_WSEXEC_H
#define MOAT_PLUGIN_WSEXEC_H

#include <signal.h>
#include <stdbool.h>

#include "libmoat/kubeconfig.h"
#include "libmoat/strbuf.h"

typedef enum {
    WSEXEC_STDIN_NONE,   /* no stdin for the command */
    WSEXEC_STDIN_RAW,    /* in_fd's bytes, then v5's close of stdin (a TTY: until the end) */
    WSEXEC_STDIN_FRAMED, /* in_fd's bytes as Moat's helper frames them (4-byte big-endian
                          * length, bytes; a 0 length ends them), stdin kept open: the
                          * command's process group dies when this client goes away */
} wsexec_stdin;

typedef struct {
    const char *ns, *pod, *container; /* container NULL: the pod's only one */
    char *const *argv;                /* NULL-terminated */
    bool tty;                         /* a remote terminal; stdout and stderr are one */
    wsexec_stdin stdin_mode;
    int in_fd;                          /* read to its end (or, with framed stdin, none: -1) */
    int out_fd;                         /* stdout is written here, unless out_buf is set */
    moat_strbuf *out_buf;               /* stdout kept here (a helper's JSON answer) */
    int err_fd;                         /* stderr is written here, unless err_buf is set */
    moat_strbuf *err_buf;               /* stderr kept here (a helper's JSON error line) */
    int resize_fd;                      /* with tty: the terminal whose size follows SIGWINCH */
    volatile sig_atomic_t *interrupted; /* when it becomes non-zero, the exec is abandoned
                                         * (MOAT_E_CANCELED); signals must not restart */
} wsexec_request;

/* Runs the command to its end; *ret_exit is its exit code (0-255). Fails with
 * MOAT_E_KUBE when the API server refused the exec (http_status set: 403 is a missing
 * pods/exec permission, 404 a pod that is gone) or the command could not start (the
 * Status's message), MOAT_E_NETWORK when the connection failed or was lost before the
 * command's status (its output may be partial), MOAT_E_IO when the output could not be
 * written. */
int wsexec_run(kube_config *cfg, const wsexec_request *req, int *ret_exit, moat_error *err);

/* Wakes the loop of the exec running now (if any), so that it sees *interrupted: for
 * signal handlers (async-signal-safe). */
void wsexec_wake(void);

#endif
