#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "libmoat/kobj.h"
#include "libmoat/macro.h"
#include "view.h"
#include "wsexec.h"

#define POLL_NS (200 * 1000000L)

volatile sig_atomic_t cli_interrupted;

static void on_interrupt(int sig)
{
    cli_interrupted = sig;
    wsexec_wake(); /* an exec's loop may be waiting in poll() */
}

void cli_catch_interrupt(void)
{
    struct sigaction sa = {.sa_handler = on_interrupt}; /* no SA_RESTART: waits wake up */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

bool cli_global_option(moat_cli *c, int opt, const char *arg)
{
    switch (opt) {
    case CLI_OPT_KUBECONFIG:
        c->kubeconfig = arg;
        return true;
    case CLI_OPT_CONTEXT:
        c->context = arg;
        return true;
    case 'n':
        c->namespace = arg;
        return true;
    default:
        return false;
    }
}

int cli_connect(moat_cli *c, moat_error *err)
{
    int r = c->kubeconfig ? kube_config_load_file(&c->cfg, c->kubeconfig, c->context, err)
                          : kube_config_load_default(&c->cfg, c->context, err);
    if (r < 0)
        return -1;
    kube_client_options opts = {.user_agent = "kubectl-moat/" MOAT_VERSION_STRING};
    if (kube_client_new(&c->kube, c->cfg, &opts, err) < 0)
        return -1;
    c->ns = c->namespace ? c->namespace : kube_config_namespace(c->cfg);
    return 0;
}

void cli_close(moat_cli *c)
{
    kube_client_free(c->kube);
    kube_config_free(c->cfg);
    c->kube = NULL;
    c->cfg = NULL;
}

int cli_sandbox_get(moat_cli *c, const char *name, json_t **ret, moat_error *err)
{
    if (kube_get(c->kube, ret, &KUBE_SANDBOXES, c->ns, name, err) == 0)
        return 0;
    if (kube_error_is(err, KUBE_REASON_NOT_FOUND))
        return moat_error_set(err, MOAT_E_NOTFOUND, "sandbox %s/%s not found", c->ns, name);
    return -1;
}

bool cli_ready_for_exec(moat_cli *c, const json_t *sandbox)
{
    sandbox_view v;
    sandbox_view_read(&v, sandbox);
    return v.ready && *v.pod;
}

int cli_sandbox_wait(moat_cli *c, const char *name, cli_ready_fn ready, double timeout_s,
                     json_t **ret, moat_error *err)
{
    struct timespec start, now, pause = {0, POLL_NS};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        json_t *sb = NULL;
        sandbox_view v;
        if (cli_sandbox_get(c, name, &sb, err) < 0)
            return -1;
        sandbox_view_read(&v, sb);
        if (ready(c, sb)) {
            *ret = sb;
            return 0;
        }
        if (v.no_hypervisor) {
            moat_error_set(err, MOAT_E_INVALID,
                           "sandbox %s: isolation VM: no node has a usable hypervisor (%s)", name,
                           v.scheduled_message);
            json_decref(sb);
            return -1;
        }
        if (sandbox_view_final(&v)) {
            moat_error_set(err, MOAT_E_INVALID, "sandbox %s ended (%s%s%s)%s%s", name, v.phase,
                           *v.finished_reason ? ", " : "", v.finished_reason,
                           *v.message ? ": " : "", v.message);
            json_decref(sb);
            return -1;
        }
        json_decref(sb);
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited =
            (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
        if (waited > timeout_s)
            return moat_error_set(err, MOAT_E_CANCELED,
                                  "sandbox %s: not ready after %.0f s (kubectl moat get %s)", name,
                                  timeout_s, name);
        if (cli_interrupted)
            return moat_error_set(err, MOAT_E_CANCELED, "interrupted");
        nanosleep(&pause, NULL);
    }
}

void cli_file_arg_parse(cli_file_arg *a, char *arg)
{
    char *colon = strchr(arg, ':');
    *a = (cli_file_arg){NULL, arg};
    if (!colon || colon == arg || arg[0] == '/' || arg[0] == '.')
        return;
    for (char *p = arg; p < colon; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            return;
    *colon = '\0';
    a->name = arg;
    a->path = colon + 1;
}

char **cli_command_argv(int argc, char **argv, int first)
{
    if (first < argc && strcmp(argv[first], "--") == 0)
        first++;
    return first < argc ? argv + first : NULL;
}

char *cli_random_name(const char *prefix)
{
    unsigned char b[4] = {0};
    char *name = NULL;
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)rand_r(&seed);
    }
    if (asprintf(&name, "%s-%02x%02x%02x%02x", prefix, b[0], b[1], b[2], b[3]) < 0)
        return NULL;
    return name;
}

int cli_usage(const char *text, bool error, const char *fmt, ...)
{
    if (fmt) {
        va_list ap;
        fputs("kubectl moat: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    fputs(text, error ? stderr : stdout);
    return error ? CLI_EXIT_USAGE : 0;
}
