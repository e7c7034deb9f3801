/* The benchmark's floor: a bare gRPC-core echo server, the least a gRPC server can do per
 * unary call (two batches: read the request, send it back with the status), on one thread
 * and one queue as moat-cri's relay has. It is a measuring instrument of bench/cri_bench.c,
 * run as a process of its own (like containerd), never part of Moat. */
#include "cri_echo.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ECHO_PENDING 64 /* calls the echo server is ready to take at once */

typedef struct {
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *msg;
    grpc_slice ok;
    int cancelled, stage; /* 0 waiting for a call, 1 reading its message, 2 answered */
} echo_call;

static void echo_take(grpc_server *s, grpc_completion_queue *cq)
{
    echo_call *e = calloc(1, sizeof(*e));
    if (!e)
        abort();
    grpc_call_details_init(&e->details);
    grpc_metadata_array_init(&e->md);
    e->ok = grpc_empty_slice();
    if (grpc_server_request_call(s, &e->call, &e->details, &e->md, cq, cq, e) != GRPC_CALL_OK)
        abort();
}

static void echo_free(echo_call *e)
{
    if (e->call)
        grpc_call_unref(e->call);
    if (e->msg)
        grpc_byte_buffer_destroy(e->msg);
    grpc_call_details_destroy(&e->details);
    grpc_metadata_array_destroy(&e->md);
    free(e);
}

/* The least a gRPC server can do per unary call: two batches, one to read the request and
 * one to send it back with the status. One thread and one queue, as the shim has. */
int cri_echo_serve(const char *path)
{
    grpc_init();
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server *s = grpc_server_create(NULL, NULL);
    grpc_server_register_completion_queue(s, cq, NULL);
    char uri[4096];
    snprintf(uri, sizeof(uri), "unix:%s", path);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(s, uri, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        fprintf(stderr, "cri_bench: echo server cannot listen on %s\n", path);
        return 1;
    }
    grpc_server_start(s);
    for (int i = 0; i < ECHO_PENDING; i++)
        echo_take(s, cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        echo_call *e = ev.tag;
        if (e->stage == 0) {
            if (!ev.success) {
                echo_free(e);
                continue;
            }
            echo_take(s, cq);
            grpc_op ops[2] = {{0}};
            ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
            ops[1].op = GRPC_OP_RECV_MESSAGE;
            ops[1].data.recv_message.recv_message = &e->msg;
            e->stage = 1;
            if (grpc_call_start_batch(e->call, ops, 2, e, NULL) != GRPC_CALL_OK)
                echo_free(e);
        } else if (e->stage == 1) {
            grpc_op ops[3] = {{0}};
            size_t n = 0;
            if (e->msg) {
                ops[n].op = GRPC_OP_SEND_MESSAGE;
                ops[n++].data.send_message.send_message = e->msg;
            }
            ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
            ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
            ops[n++].data.send_status_from_server.status_details = &e->ok;
            ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
            ops[n++].data.recv_close_on_server.cancelled = &e->cancelled;
            e->stage = 2;
            if (grpc_call_start_batch(e->call, ops, n, e, NULL) != GRPC_CALL_OK)
                echo_free(e);
        } else {
            echo_free(e);
        }
    }
}

pid_t cri_echo_spawn(const char *path)
{
    char *argv[] = {"cri_bench", "--echo-serve", (char *)path, NULL};
    pid_t pid;
    extern char **environ;
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) != 0)
        return -1;
    for (int i = 0; i < 200; i++) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        usleep(25000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

void cri_echo_stop(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}
