/* The commands on Sandbox objects: ls, get NAME, logs NAME, delete NAME. */
#include <stdio.h>
#include <time.h>

#include "commands.h"
#include "libmoat/kobj.h"
#include "libmoat/macro.h"
#include "libmoat/strbuf.h"
#include "session.h"
#include "view.h"

static const char ls_usage[] =
    "Usage: kubectl moat ls [-n NS]\n"
    "\n"
    "Lists the namespace's Sandboxes: phase, mode, the isolation that really ran, node, age,\n"
    "and a Session's idle time (since its last command or CPU use).\n"
    "\n"
    "  -n, --namespace NS, --context CTX, --kubeconfig FILE: as kubectl's\n";

static const char get_usage[] =
    "Usage: kubectl moat get NAME [-n NS]\n"
    "\n"
    "Shows one Sandbox: phase, mode, the isolation asked and the one that really ran and\n"
    "why, node, pod, age, idle time, exit code, message.\n"
    "\n"
    "  -n, --namespace NS, --context CTX, --kubeconfig FILE: as kubectl's\n";

/* Options of a command that takes only the connection flags; -1 to go on, else the exit. */
static int only_global_options(moat_cli *c, int argc, char **argv, const char *usage)
{
    static const struct option opts[] = {CLI_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
        if (cli_global_option(c, opt, optarg))
            continue;
        return cli_usage(usage, opt != 'h', NULL);
    }
    return -1;
}

int cmd_ls(moat_cli *c, int argc, char **argv, moat_error *err)
{
    int r = only_global_options(c, argc, argv, ls_usage);
    if (r >= 0)
        return r;
    if (optind != argc)
        return cli_usage(ls_usage, true, "ls: unexpected \"%s\"", argv[optind]);
    json_t *list = NULL;
    if (cli_connect(c, err) < 0 || kube_list(c->kube, &list, &KUBE_SANDBOXES, c->ns, NULL, err) < 0)
        return -1;
    const json_t *items = kobj_get(list, "items");
    if (json_array_size(items) == 0)
        fprintf(stderr, "No sandboxes in namespace %s.\n", c->ns);
    else
        view_print_table(stdout, items, (int64_t)time(NULL));
    json_decref(list);
    return 0;
}

int cmd_get(moat_cli *c, int argc, char **argv, moat_error *err)
{
    int r = only_global_options(c, argc, argv, get_usage);
    if (r >= 0)
        return r;
    if (argc - optind != 1)
        return cli_usage(get_usage, true, "get: one sandbox name");
    json_t *sb = NULL;
    sandbox_view v;
    if (cli_connect(c, err) < 0 || cli_sandbox_get(c, argv[optind], &sb, err) < 0)
        return -1;
    sandbox_view_read(&v, sb);
    view_print_detail(stdout, &v, (int64_t)time(NULL));
    json_decref(sb);
    return 0;
}

static const char delete_usage[] =
    "Usage: kubectl moat delete NAME... [-n NS]\n"
    "\n"
    "Deletes Sandboxes (and so their pods).\n"
    "\n"
    "  -n, --namespace NS, --context CTX, --kubeconfig FILE: as kubectl's\n";

int cmd_delete(moat_cli *c, int argc, char **argv, moat_error *err)
{
    int r = only_global_options(c, argc, argv, delete_usage);
    if (r >= 0)
        return r;
    if (optind >= argc)
        return cli_usage(delete_usage, true, "delete: which sandbox?");
    if (cli_connect(c, err) < 0)
        return -1;
    /* as kubectl delete: every name is tried, and every failure said (in one error) */
    moat_strbuf failures = {0};
    moat_error_code code = MOAT_E_OK;
    for (int i = optind; i < argc; i++) {
        moat_error one = MOAT_ERROR_INIT;
        if (kube_delete(c->kube, NULL, &KUBE_SANDBOXES, c->ns, argv[i], NULL, &one) == 0) {
            printf("sandbox %s/%s deleted\n", c->ns, argv[i]);
            continue;
        }
        if (kube_error_is(&one, KUBE_REASON_NOT_FOUND))
            moat_error_set(&one, MOAT_E_NOTFOUND, "sandbox %s/%s not found", c->ns, argv[i]);
        moat_strbuf_appendf(&failures, "%s%s", code ? "; " : "", one.message);
        code = one.code;
        moat_error_clear(&one);
    }
    if (code) {
        _cleanup_free_ char *text = moat_strbuf_take(&failures);
        moat_error_set(err, code, "%s", text ? text : "delete failed");
    }
    moat_strbuf_free(&failures);
    return code ? -1 : 0;
}

static const char logs_usage[] =
    "Usage: kubectl moat logs NAME [-f] [-n NS]\n"
    "\n"
    "Prints the Sandbox's output (its pod's log); -f follows it until the program ends.\n"
    "\n"
    "  -f, --follow\n"
    "  -n, --namespace NS, --context CTX, --kubeconfig FILE: as kubectl's\n";

int cmd_logs(moat_cli *c, int argc, char **argv, moat_error *err)
{
    static const struct option opts[] = {
        {"follow", no_argument, NULL, 'f'}, CLI_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
    bool follow = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "fn:h", opts, NULL)) != -1) {
        if (cli_global_option(c, opt, optarg))
            continue;
        if (opt == 'f')
            follow = true;
        else
            return cli_usage(logs_usage, opt != 'h', NULL);
    }
    if (argc - optind != 1)
        return cli_usage(logs_usage, true, "logs: one sandbox name");
    json_t *sb = NULL;
    if (cli_connect(c, err) < 0 || cli_sandbox_get(c, argv[optind], &sb, err) < 0)
        return -1;
    cli_catch_interrupt(); /* Ctrl-C ends -f quietly */
    int r = session_logs(c, sb, follow, err);
    json_decref(sb);
    return r < 0 ? -1 : 0;
}
