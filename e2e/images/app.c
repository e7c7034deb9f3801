/* The only file of moat.local/noshell:1, an image with no shell and no libc: prints
 * "noshell app" and its arguments, and with `sleep` as its first argument then waits until SIGINT
 * or SIGTERM (exit 0). For the tests that Moat's helper, mounted into the container apart from the
 * image, can exec and move files where the image itself has nothing. Built statically. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void on_stop(int sig)
{
    (void)sig;
    _exit(0);
}

int main(int argc, char **argv)
{
    fputs("noshell app", stdout);
    for (int i = 1; i < argc; i++)
        printf(" %s", argv[i]);
    putchar('\n');
    fflush(stdout);
    if (argc > 1 && strcmp(argv[1], "sleep") == 0) {
        struct sigaction stop = {.sa_handler = on_stop};
        sigaction(SIGINT, &stop, NULL);
        sigaction(SIGTERM, &stop, NULL);
        for (;;)
            pause();
    }
    return 0;
}
