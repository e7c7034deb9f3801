/* kubectl moat run IMAGE [flags] -- CMD... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "libmoat/kobj.h"
#include "libmoat/macro.h"
#include "session.h"
#include "view.h"

static const char usage[] =
    "Usage: kubectl moat run IMAGE [flags] -- COMMAND [ARG...]\n"
    "\n"
    "Creates a Sandbox running COMMAND in IMAGE, streams its output as it comes, exits with\n"
    "its exit code and deletes the Sandbox (unless --keep).\n"
    "\n"
    "  --isolation Auto|VM|GVisor   what must isolate it (default Auto: a VM where a node\n"
    "                               can run one, else gVisor; never less than asked)\n"
    "  --egress None|Internet       what it may reach (default None)\n"
    "  --timeout D                  how long it may run (\"30s\", \"10m\"; default: the\n"
    "                               operator's)\n"
    "  --session                    a Session: COMMAND runs through Moat's helper, stdout\n"
    "                               and stderr apart; with --keep it stays for exec and cp\n"
    "  -i, --stdin                  pass standard input (implies --session)\n"
    "  --keep                       do not delete the Sandbox at the end\n"
    "  --name NAME                  the Sandbox's name (default run-XXXXXXXX)\n"
    "  --cpu Q, --memory Q          its resources (e.g. 500m, 256Mi)\n"
    "  -n, --namespace NS, --context CTX, --kubeconfig FILE: as kubectl's\n"
    "\n"
    "Without --session the output is the container's log (stdout and stderr together).\n"
    "Exit: the program's own code; 125 when it did not run or its status was lost.\n";

enum {
    OPT_ISOLATION = 0x200,
    OPT_EGRESS,
    OPT_TIMEOUT,
    OPT_SESSION,
    OPT_KEEP,
    OPT_NAME,
    OPT_CPU,
    OPT_MEMORY
};

typedef struct {
    const char *image, *isolation, *egress, *timeout, *name, *cpu, *memory;
    bool session, keep, interactive;
    char **argv;
} run_options;

/* arg with every $ doubled: Kubernetes expands $(VAR) and $$ in a container's command, and
 * the program is to get exactly what was typed ("sh -c 'echo $$'"). Caller frees. */
static char *escape_dollars(const char *arg)
{
    size_t n = strlen(arg), extra = 0;
    for (const char *p = arg; *p; p++)
        extra += *p == '$';
    char *out = malloc(n + extra + 1), *q = out;
    if (!out)
        return NULL;
    for (const char *p = arg; *p; p++) {
        *q++ = *p;
        if (*p == '$')
            *q++ = '$';
    }
    *q = '\0';
    return out;
}

static json_t *sandbox_object(const run_options *o, const char *name)
{
    json_t *cmd = json_array();
    for (char **a = o->argv; *a; a++) {
        char *escaped = escape_dollars(*a);
        json_array_append_new(cmd, escaped ? json_string(escaped) : NULL);
        free(escaped);
    }
    json_t *spec = json_pack("{s:s, s:s, s:{s:s}}", "image", o->image, "isolation",
                             o->isolation ? o->isolation : "Auto", "network", "egress",
                             o->egress ? o->egress : "None");
    if (o->session)
        json_object_set_new(spec, "mode", json_string("Session"));
    else
        json_object_set_new(spec, "command", cmd), cmd = NULL;
    json_decref(cmd);
    if (o->timeout)
        json_object_set_new(spec, "timeout", json_string(o->timeout));
    if (o->cpu || o->memory) {
        json_t *res = json_object();
        if (o->cpu)
            json_object_set_new(res, "cpu", json_string(o->cpu));
        if (o->memory)
            json_object_set_new(res, "memory", json_string(o->memory));
        json_object_set_new(spec, "resources", res);
    }
    return json_pack("{s:s, s:s, s:{s:s}, s:o}", "apiVersion", "moat.dev/v1alpha1", "kind",
                     "Sandbox", "metadata", "name", name, "spec", spec);
}

/* A Run's program has started (or ended): its log can be followed. */
static bool program_started(moat_cli *c, const json_t *sb)
{
    sandbox_view v;
    json_t *pod = NULL;
    sandbox_view_read(&v, sb);
    if (!*v.pod)
        return false;
    if (kube_get(c->kube, &pod, &KUBE_PODS, c->ns, v.pod, NULL) < 0)
        return false;
    /* the one container's state (the helper's is a volume, not a container) */
    const json_t *state =
        kobj_get(json_array_get(kobj_get(pod, "status.containerStatuses"), 0), "state");
    bool started = kobj_get(state, "running") || kobj_get(state, "terminated");
    json_decref(pod);
    return started;
}

static bool ended(moat_cli *c, const json_t *sb)
{
    sandbox_view v;
    sandbox_view_read(&v, sb);
    return sandbox_view_final(&v);
}

/* The Run's program: its log as it comes, then its exit code from the Sandbox's status. */
static int run_program(moat_cli *c, const char *name, int *ret_exit, moat_error *err)
{
    json_t *sb = NULL;
    sandbox_view v;
    int r = cli_sandbox_wait(c, name, program_started, 600, &sb, err);
    if (r < 0) {
        /* a program that ended before its log was reached: the Sandbox says how */
        if (err->code != MOAT_E_INVALID || cli_sandbox_get(c, name, &sb, NULL) < 0)
            return -1;
        sandbox_view_read(&v, sb);
        if (!v.has_exit_code || !*v.pod) {
            json_decref(sb);
            return -1;
        }
        moat_error_clear(err);
    }
    r = session_logs(c, sb, true, err);
    json_decref(sb);
    if (r < 0)
        return -1;
    if (cli_interrupted)
        return moat_error_set(err, MOAT_E_CANCELED, "interrupted");
    if (cli_sandbox_wait(c, name, ended, 120, &sb, err) < 0)
        return -1;
    sandbox_view_read(&v, sb);
    if (!v.has_exit_code) {
        moat_error_set(err, MOAT_E_INVALID, "sandbox %s ended (%s%s%s) without an exit code%s%s",
                       name, v.phase, *v.finished_reason ? ", " : "", v.finished_reason,
                       *v.message ? ": " : "", v.message);
        json_decref(sb);
        return -1;
    }
    *ret_exit = v.exit_code;
    json_decref(sb);
    return 0;
}

int cmd_run(moat_cli *c, int argc, char **argv, moat_error *err)
{
    static const struct option opts[] = {{"isolation", required_argument, NULL, OPT_ISOLATION},
                                         {"egress", required_argument, NULL, OPT_EGRESS},
                                         {"timeout", required_argument, NULL, OPT_TIMEOUT},
                                         {"session", no_argument, NULL, OPT_SESSION},
                                         {"keep", no_argument, NULL, OPT_KEEP},
                                         {"name", required_argument, NULL, OPT_NAME},
                                         {"cpu", required_argument, NULL, OPT_CPU},
                                         {"memory", required_argument, NULL, OPT_MEMORY},
                                         {"stdin", no_argument, NULL, 'i'},
                                         CLI_GLOBAL_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    run_options o = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, "in:h", opts, NULL)) != -1) {
        if (cli_global_option(c, opt, optarg))
            continue;
        switch (opt) {
        case OPT_ISOLATION:
            o.isolation = optarg;
            break;
        case OPT_EGRESS:
            o.egress = optarg;
            break;
        case OPT_TIMEOUT:
            o.timeout = optarg;
            break;
        case OPT_SESSION:
            o.session = true;
            break;
        case OPT_KEEP:
            o.keep = true;
            break;
        case OPT_NAME:
            o.name = optarg;
            break;
        case OPT_CPU:
            o.cpu = optarg;
            break;
        case OPT_MEMORY:
            o.memory = optarg;
            break;
        case 'i':
            o.interactive = o.session = true;
            break;
        case 'h':
            return cli_usage(usage, false, NULL);
        default:
            return cli_usage(usage, true, NULL);
        }
    }
    if (optind >= argc)
        return cli_usage(usage, true, "run: which image?");
    o.image = argv[optind];
    o.argv = cli_command_argv(argc, argv, optind + 1);
    if (!o.argv)
        return cli_usage(usage, true, "run: no command (kubectl moat run %s -- COMMAND)", o.image);

    _cleanup_free_ char *generated = o.name ? NULL : cli_random_name("run");
    const char *name = o.name ? o.name : generated;
    if (!name)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (cli_connect(c, err) < 0)
        return -1;
    json_t *obj = sandbox_object(&o, name), *made = NULL;
    if (!obj)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    int r = kube_create(c->kube, &made, &KUBE_SANDBOXES, c->ns, obj, err);
    json_decref(obj);
    json_decref(made);
    if (r < 0)
        return moat_error_prefix(err, "run");
    cli_catch_interrupt(); /* from here on, what was made is deleted on the way out */

    int code = -1;
    if (o.session) {
        json_t *sb = NULL;
        session_exec_options eo = {.interactive = o.interactive};
        r = cli_sandbox_wait(c, name, cli_ready_for_exec, 600, &sb, err);
        if (r == 0)
            r = session_exec(c, sb, o.argv, &eo, &code, err);
        json_decref(sb);
    } else {
        r = run_program(c, name, &code, err);
    }
    if (o.keep) {
        fprintf(stderr, "kubectl moat: kept sandbox %s/%s\n", c->ns, name);
    } else {
        moat_error derr = MOAT_ERROR_INIT;
        if (kube_delete(c->kube, NULL, &KUBE_SANDBOXES, c->ns, name, NULL, &derr) < 0 &&
            !kube_error_is(&derr, KUBE_REASON_NOT_FOUND))
            fprintf(stderr, "kubectl moat: could not delete sandbox %s/%s: %s\n", c->ns, name,
                    derr.message);
        moat_error_clear(&derr);
    }
    return r < 0 ? -1 : code; /* interrupted: main exits 128 + the signal */
}
