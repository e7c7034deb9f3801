/* kubectl moat exec NAME [-i] [-t] -- CMD... */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "session.h"

static const char usage[] =
    "Usage: kubectl moat exec NAME [-i] [-t] -- COMMAND [ARG...]\n"
    "\n"
    "Runs COMMAND in the Sandbox NAME and exits with its exit code. In a Session it runs\n"
    "under Moat's helper, in its own process group, which is killed when this command goes\n"
    "away (Ctrl-C, a lost connection).\n"
    "\n"
    "  -i, --stdin   pass standard input to the command\n"
    "  -t, --tty     a terminal: raw keys in, its size follows this one's\n"
    "  -n, --namespace NS, --context CTX, --kubeconfig FILE: as kubectl's\n"
    "\n"
    "Exit: the command's own code; 125 when it could not be run or its status was lost.\n";

int cmd_exec(moat_cli *c, int argc, char **argv, moat_error *err)
{
    static const struct option opts[] = {{"stdin", no_argument, NULL, 'i'},
                                         {"tty", no_argument, NULL, 't'},
                                         CLI_GLOBAL_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    session_exec_options o = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, "itn:h", opts, NULL)) != -1) {
        if (cli_global_option(c, opt, optarg))
            continue;
        switch (opt) {
        case 'i':
            o.interactive = true;
            break;
        case 't':
            o.tty = true;
            break;
        case 'h':
            return cli_usage(usage, false, NULL);
        default:
            return cli_usage(usage, true, NULL);
        }
    }
    if (optind >= argc)
        return cli_usage(usage, true, "exec: which sandbox?");
    const char *name = argv[optind];
    char **command = cli_command_argv(argc, argv, optind + 1);
    if (!command)
        return cli_usage(usage, true, "exec: no command (kubectl moat exec %s -- COMMAND)", name);
    if (o.tty && !o.interactive)
        o.interactive = true; /* a terminal is for typing into */
    if (cli_connect(c, err) < 0)
        return -1;
    cli_catch_interrupt(); /* the loop ends and a terminal is restored before the exit */
    json_t *sb = NULL;
    if (cli_sandbox_get(c, name, &sb, err) < 0)
        return -1;
    int code = -1;
    if (!cli_ready_for_exec(c, sb)) {
        json_decref(sb);
        /* a Session still starting: wait for it, as a person would */
        if (cli_sandbox_wait(c, name, cli_ready_for_exec, 120, &sb, err) < 0)
            return -1;
    }
    int r = session_exec(c, sb, command, &o, &code, err);
    json_decref(sb);
    return r < 0 ? -1 : code;
}
