/* The commands of `kubectl moat`. Each takes the arguments after its name (argv[0] is the
 * command's name) and returns the process's exit code, or -1 with err set (main prints it
 * and exits 1, or CLI_EXIT_NO_PROGRAM for run and exec). */
#ifndef MOAT_PLUGIN_COMMANDS_H
#define MOAT_PLUGIN_COMMANDS_H

#include "cli.h"

int cmd_run(moat_cli *c, int argc, char **argv, moat_error *err);
int cmd_exec(moat_cli *c, int argc, char **argv, moat_error *err);
int cmd_cp(moat_cli *c, int argc, char **argv, moat_error *err);
int cmd_ls(moat_cli *c, int argc, char **argv, moat_error *err);
int cmd_get(moat_cli *c, int argc, char **argv, moat_error *err);
int cmd_logs(moat_cli *c, int argc, char **argv, moat_error *err);
int cmd_delete(moat_cli *c, int argc, char **argv, moat_error *err);

#endif
