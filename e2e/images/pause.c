/* The pod sandbox's pause process: holds the pod's namespaces, reaps orphans, and exits
 * on SIGINT or SIGTERM. Built statically into moat.local/pause because no registry can be
 * reached to pull registry.k8s.io/pause. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
    _exit(sig == SIGTERM ? 0 : 128 + sig);
}

static void on_child(int sig)
{
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

int main(void)
{
    struct sigaction stop = {.sa_handler = on_stop}, child = {.sa_handler = on_child};
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGCHLD, &child, NULL);
    for (;;)
        pause();
}
