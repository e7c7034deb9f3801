#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "init/args.h"
#include "libmoat/macro.h"

#define ARGS_NSEC_PER_SEC 1000000000LL

int args_duration_parse(int64_t *ret_ns, const char *text, const char *op, init_error *err)
{
    const char *p = text;
    int64_t secs = 0, frac = 0, scale = ARGS_NSEC_PER_SEC;
    bool digits = false, round_up = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        digits = true;
        secs = secs * 10 + (*p - '0');
        if (secs > ARGS_TIMEOUT_MAX_S)
            return init_error_usage(err, op, "--timeout: %s is over %lld seconds", text,
                                    ARGS_TIMEOUT_MAX_S);
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            digits = true;
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            } else if (*p != '0') {
                round_up = true;
            }
        }
    }
    if (!digits || *p != '\0')
        return init_error_usage(err, op, "--timeout: not a number of seconds: \"%s\"", text);
    int64_t ns = secs * ARGS_NSEC_PER_SEC + frac + round_up;
    if (ns > ARGS_TIMEOUT_MAX_S * ARGS_NSEC_PER_SEC)
        return init_error_usage(err, op, "--timeout: %s is over %lld seconds", text,
                                ARGS_TIMEOUT_MAX_S);
    *ret_ns = ns;
    return 0;
}

void args_duration_format(char *buf, size_t size, int64_t ns)
{
    long long secs = ns / ARGS_NSEC_PER_SEC, frac = ns % ARGS_NSEC_PER_SEC;
    if (frac == 0) {
        snprintf(buf, size, "%llds", secs);
        return;
    }
    int width = 9;
    while (frac % 10 == 0) {
        frac /= 10;
        width--;
    }
    snprintf(buf, size, "%lld.%0*llds", secs, width, frac);
}

int args_mode_parse(mode_t *ret_mode, const char *text, const char *op, init_error *err)
{
    unsigned long mode = 0;
    const char *p = text;
    for (; *p >= '0' && *p <= '7'; p++) {
        mode = mode * 8 + (unsigned long)(*p - '0');
        if (mode > 07777)
            break;
    }
    if (p == text || *p != '\0' || mode > 07777)
        return init_error_usage(err, op, "--mode: not an octal mode up to 07777: \"%s\"", text);
    *ret_mode = (mode_t)mode;
    return 0;
}

/* The option getopt_long stopped at: argv[optind - 1] after an error. */
static const char *args_bad_option(int argc, char **argv)
{
    return optind > 0 && optind <= argc ? argv[optind - 1] : "?";
}

int args_exec_parse(args_exec *out, int argc, char **argv, init_error *err)
{
    enum { O_TIMEOUT = 256, O_CWD, O_ENV, O_FRAMED };
    static const struct option opts[] = {
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"cwd", required_argument, NULL, O_CWD},
        {"env", required_argument, NULL, O_ENV},
        {"framed-stdin", no_argument, NULL, O_FRAMED},
        {NULL, 0, NULL, 0},
    };
    args_exec a = {0};
    _cleanup_free_ char **env = calloc((size_t)argc + 1, sizeof(char *));
    if (!env)
        return init_error_errno(err, ENOMEM, "exec", NULL);
    size_t n_env = 0;
    optind = 0; /* glibc: start over, options parsed before included */
    opterr = 0;
    int o;
    /* "+": the first word that is no option is the command; what follows is its own. */
    while ((o = getopt_long(argc, argv, "+:", opts, NULL)) != -1) {
        switch (o) {
        case O_TIMEOUT:
            if (args_duration_parse(&a.timeout_ns, optarg, "exec", err) < 0)
                return -1;
            break;
        case O_FRAMED:
            a.framed_stdin = true;
            break;
        case O_CWD:
            if (optarg[0] == '\0')
                return init_error_usage(err, "exec", "--cwd: empty directory");
            a.cwd = optarg;
            break;
        case O_ENV: {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg)
                return init_error_usage(err, "exec", "--env: not NAME=VALUE: \"%s\"", optarg);
            env[n_env++] = optarg;
            break;
        }
        case ':':
            return init_error_usage(err, "exec", "option %s needs a value",
                                    args_bad_option(argc, argv));
        default:
            return init_error_usage(err, "exec", "unknown option %s", args_bad_option(argc, argv));
        }
    }
    if (optind >= argc)
        return init_error_usage(err, "exec", "no command to run");
    a.argv = argv + optind;
    a.env = TAKE_PTR(env);
    *out = a;
    return 0;
}

void args_exec_done(args_exec *a)
{
    free(a->env);
    a->env = NULL;
}

int args_init_parse(char ***ret_cmd, int argc, char **argv, init_error *err)
{
    int i = 1;
    if (i < argc && strcmp(argv[i], "--") == 0) {
        i++;
        if (i >= argc)
            return init_error_usage(err, "init", "no command after --");
    } else if (i < argc && argv[i][0] == '-') {
        return init_error_usage(err, "init", "unknown option %s", argv[i]);
    }
    *ret_cmd = i < argc ? argv + i : NULL;
    return 0;
}

static int args_file_path(args_file *a, const char *path, const char *op, init_error *err)
{
    if (a->path)
        return init_error_usage(err, op, "one path only: unexpected \"%s\"", path);
    if (path[0] == '\0')
        return init_error_usage(err, op, "empty path");
    a->path = path;
    return 0;
}

int args_file_parse(args_file *out, int argc, char **argv, unsigned allowed, init_error *err)
{
    enum { O_MODE = 256, O_PARENTS, O_RECURSIVE, O_DEPTH, O_FROM, O_SIZE };
    static const struct option opts[] = {
        {"mode", required_argument, NULL, O_MODE},
        {"parents", no_argument, NULL, O_PARENTS},
        {"recursive", no_argument, NULL, O_RECURSIVE},
        {"depth", required_argument, NULL, O_DEPTH},
        {"from", required_argument, NULL, O_FROM},
        {"size", required_argument, NULL, O_SIZE},
        {NULL, 0, NULL, 0},
    };
    static const unsigned flag_of[] = {
        [O_MODE - O_MODE] = ARGS_OPT_MODE,           [O_PARENTS - O_MODE] = ARGS_OPT_PARENTS,
        [O_RECURSIVE - O_MODE] = ARGS_OPT_RECURSIVE, [O_DEPTH - O_MODE] = ARGS_OPT_DEPTH,
        [O_FROM - O_MODE] = ARGS_OPT_FROM,           [O_SIZE - O_MODE] = ARGS_OPT_SIZE,
    };
    const char *op = argv[0];
    args_file a = {.depth = 1, .size = -1};
    optind = 0;
    opterr = 0;
    int o;
    /* "-": PATH comes back in order as option 1, whatever POSIXLY_CORRECT says, so options
     * may follow it; what is left after "--" is paths too. */
    while ((o = getopt_long(argc, argv, "-:", opts, NULL)) != -1) {
        if (o >= O_MODE && o <= O_SIZE && !(allowed & flag_of[o - O_MODE]))
            return init_error_usage(err, op, "option %s is not one of %s's",
                                    args_bad_option(argc, argv), op);
        switch (o) {
        case 1:
            if (args_file_path(&a, optarg, op, err) < 0)
                return -1;
            break;
        case O_MODE:
            if (args_mode_parse(&a.mode, optarg, op, err) < 0)
                return -1;
            a.has_mode = true;
            break;
        case O_PARENTS:
            a.parents = true;
            break;
        case O_SIZE: {
            char *end;
            errno = 0;
            long long n = strtoll(optarg, &end, 10);
            if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || errno != 0)
                return init_error_usage(err, op, "--size: not a number of bytes: \"%s\"", optarg);
            a.size = n;
            break;
        }
        case O_FROM:
            if (optarg[0] == '\0')
                return init_error_usage(err, op, "--from: empty path");
            a.from = optarg;
            break;
        case O_RECURSIVE:
            a.recursive = true;
            break;
        case O_DEPTH: {
            char *end;
            errno = 0;
            long depth = strtol(optarg, &end, 10);
            if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || errno != 0 || depth < 1 ||
                depth > ARGS_DEPTH_MAX)
                return init_error_usage(err, op, "--depth: not a number from 1 to %d: \"%s\"",
                                        ARGS_DEPTH_MAX, optarg);
            a.depth = (unsigned)depth;
            break;
        }
        case ':':
            return init_error_usage(err, op, "option %s needs a value",
                                    args_bad_option(argc, argv));
        default:
            return init_error_usage(err, op, "unknown option %s", args_bad_option(argc, argv));
        }
    }
    for (; optind < argc; optind++)
        if (args_file_path(&a, argv[optind], op, err) < 0)
            return -1;
    if (!a.path)
        return init_error_usage(err, op, "no path given");
    *out = a;
    return 0;
}
