/* What every command of `kubectl moat` shares: kubectl's connection flags, the client they
 * make, and the Sandbox lookups (always through status.podName, never a guessed name). */
#ifndef MOAT_PLUGIN_CLI_H
#define MOAT_PLUGIN_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>

#include "libmoat/kube.h"

/* run and exec exit with the program's own code; this one when there is none because Moat
 * or Kubernetes failed (the error is printed), as `docker run` does. */
#define CLI_EXIT_NO_PROGRAM 125
#define CLI_EXIT_USAGE      2

enum { CLI_OPT_KUBECONFIG = 0x100, CLI_OPT_CONTEXT, CLI_OPT_HELP };

/* The connection flags, for each command's getopt_long table. */
#define CLI_GLOBAL_OPTIONS                                                                         \
    {"kubeconfig", required_argument, NULL, CLI_OPT_KUBECONFIG},                                   \
        {"context", required_argument, NULL, CLI_OPT_CONTEXT},                                     \
        {"namespace", required_argument, NULL, 'n'},                                               \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

typedef struct {
    const char *kubeconfig; /* --kubeconfig; else $KUBECONFIG's first file, ~/.kube/config */
    const char *context;    /* --context; else the current context */
    const char *namespace;  /* -n; else the context's namespace */
    kube_config *cfg;
    kube_client *kube;
    const char *ns; /* the namespace in use, once connected */
} moat_cli;

/* The signal that interrupted the command (see cli_catch_interrupt), else 0. */
extern volatile sig_atomic_t cli_interrupted;

/* Catches SIGINT, SIGTERM and SIGHUP into cli_interrupted (and wakes a running exec), for
 * commands that must clean up: run deletes what it made, cp removes its temporary file, a
 * terminal is restored. Such a command then exits 128 + the signal. */
void cli_catch_interrupt(void);

/* Takes one of the connection flags; false when opt is not one of them. */
bool cli_global_option(moat_cli *c, int opt, const char *arg);

/* Loads the kubeconfig as the flags say and makes the client. */
int cli_connect(moat_cli *c, moat_error *err);
void cli_close(moat_cli *c);

/* GET of a Sandbox; a missing one fails with MOAT_E_NOTFOUND: "sandbox ns/name not found". */
int cli_sandbox_get(moat_cli *c, const char *name, json_t **ret, moat_error *err);

/* Polls the Sandbox until ready(obj) says so (returns 0 with the object), the Sandbox ends
 * before that (MOAT_E_INVALID: "sandbox x ended (Failed): its message"), isolation VM
 * cannot be placed (MOAT_E_INVALID: "isolation VM: no node has a usable hypervisor: ..."),
 * timeout_s passes or the user interrupts (MOAT_E_CANCELED). */
typedef bool (*cli_ready_fn)(moat_cli *c, const json_t *sandbox);
int cli_sandbox_wait(moat_cli *c, const char *name, cli_ready_fn ready, double timeout_s,
                     json_t **ret, moat_error *err);

/* Ready for commands: its Ready condition is True and it has a pod (a Session, or a Run
 * whose program runs). */
bool cli_ready_for_exec(moat_cli *c, const json_t *sandbox);

/* A file argument of cp: NAME:/path in a Sandbox, or a local path. */
typedef struct {
    char *name;       /* the Sandbox's, or NULL for a local path */
    const char *path; /* in the Sandbox, or the local path */
} cli_file_arg;

/* Splits arg in place at its first ':' when what precedes it is a Sandbox name (lowercase
 * letters, digits, '-' and '.') and arg does not start as a local path does ('/', '.'). */
void cli_file_arg_parse(cli_file_arg *a, char *arg);

/* The command to run, from argv[first] on, past a "--" there; NULL when there is none. */
char **cli_command_argv(int argc, char **argv, int first);

/* A fresh name: prefix and 8 random hex digits. Caller frees. */
char *cli_random_name(const char *prefix);

/* Prints a command's usage (text) to stdout for --help, or to stderr after a usage error,
 * and returns the exit code for it. */
int cli_usage(const char *text, bool error, const char *fmt, ...) _printf_(3, 4);

#endif
