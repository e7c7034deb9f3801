/* kubectl-moat: `kubectl moat`, Moat's kubectl plugin. Dispatches to the commands
 * (commands.h) and is the one place their errors are printed. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static const char usage[] =
    "Usage: kubectl moat COMMAND [flags]\n"
    "\n"
    "Sandboxes for untrusted code, from the terminal.\n"
    "\n"
    "  run IMAGE [flags] -- CMD...   run CMD in a new Sandbox, stream its output, exit with\n"
    "                                its code, delete it (--session, --keep, -i)\n"
    "  exec NAME [-i] [-t] -- CMD... run CMD in a Sandbox (stdin, a terminal)\n"
    "  cp SRC DST                    copy a file into or out of a Session (NAME:/path)\n"
    "  ls                            list Sandboxes: phase, mode, isolation, node, age, idle\n"
    "  get NAME                      one Sandbox: the isolation that really ran and why\n"
    "  logs NAME [-f]                its output\n"
    "  delete NAME...                delete Sandboxes\n"
    "\n"
    "Flags of every command, before or after it: -n/--namespace NS, --context CTX,\n"
    "--kubeconfig FILE (else $KUBECONFIG's first file, else ~/.kube/config, else\n"
    "in-cluster), -h/--help.\n"
    "\n"
    "Exit codes: run and exec exit with the program's own code, or 125 when it did not run\n"
    "or its exit status was lost; other commands 0, or 1 on an error; 2 for a usage error.\n"
    "`kubectl moat COMMAND --help` says more.\n";

static const struct {
    const char *name;
    int (*run)(moat_cli *c, int argc, char **argv, moat_error *err);
    bool program; /* exits with a program's code: its own errors are CLI_EXIT_NO_PROGRAM */
} commands[] = {
    {"run", cmd_run, true},    {"exec", cmd_exec, true},      {"cp", cmd_cp, false},
    {"ls", cmd_ls, false},     {"list", cmd_ls, false},       {"get", cmd_get, false},
    {"logs", cmd_logs, false}, {"delete", cmd_delete, false},
};

int main(int argc, char **argv)
{
    moat_cli cli = {0};
    moat_error err = MOAT_ERROR_INIT;
    if (argc < 2)
        return cli_usage(usage, true, NULL);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0)
        return cli_usage(usage, false, NULL);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("kubectl-moat %s\n", MOAT_VERSION_STRING);
        return 0;
    }
    /* the connection flags may also come before the command (kubectl moat -n x ls) */
    int first = 1;
    while (first < argc && argv[first][0] == '-') {
        static const struct option opts[] = {CLI_GLOBAL_OPTIONS, {NULL, 0, NULL, 0}};
        optind = first;
        int opt = getopt_long(argc, argv, "+n:h", opts, NULL);
        if (opt == -1 || !cli_global_option(&cli, opt, optarg))
            return cli_usage(usage, opt != 'h', NULL);
        first = optind;
    }
    if (first >= argc)
        return cli_usage(usage, true, "which command?");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[first], commands[i].name) != 0)
            continue;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        /* a reader gone (| head) is an error to report, and run still deletes its Sandbox */
        signal(SIGPIPE, SIG_IGN);
        optind = 0; /* getopt starts over: not in the "+" mode of the flags above */
        int code = commands[i].run(&cli, argc - first, argv + first, &err);
        if (code < 0 && cli_interrupted) {
            code = 128 + cli_interrupted; /* as a shell reports a command killed by it */
        } else if (code < 0) {
            fprintf(stderr, "Error: %s\n", err.message ? err.message : "failed");
            code = commands[i].program ? CLI_EXIT_NO_PROGRAM : 1;
        }
        moat_error_clear(&err);
        cli_close(&cli);
        curl_global_cleanup();
        return code;
    }
    return cli_usage(usage, true, "unknown command \"%s\"", argv[first]);
}
