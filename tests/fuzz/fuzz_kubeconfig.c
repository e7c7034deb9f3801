/* libFuzzer target: the kubeconfig parser, which reads a file a user or an installer hands
 * us. Any input must give a config or an error that says why, never a crash, a leak or a
 * hang. File references resolve under a directory that does not exist, so no real file is
 * read; they fail, which is fine. The first input byte picks the context argument, so both
 * current-context and an explicit context are exercised. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/kubeconfig.h"

#define BASE_DIR "/nonexistent/moat-fuzz-kubeconfig"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const contexts[] = {NULL, "dev", "prod", ""};
    const char *context = size > 0 ? contexts[data[0] % ELEMENTSOF(contexts)] : NULL;

    moat_error err = MOAT_ERROR_INIT;
    kube_config *c = NULL;
    if (kube_config_parse(&c, (const char *)data, size, "fuzz", BASE_DIR, context, &err) < 0) {
        if (!err.message || c)
            abort(); /* a failure must say why and leave the out-parameter alone */
        moat_error_clear(&err);
        return 0;
    }
    /* A config that loads must be complete. */
    const char *server = kube_config_server(c);
    if (!server || !kube_config_namespace(c) || !kube_config_context(c))
        abort();
    if (strncasecmp(server, "https://", 8) != 0 && strncasecmp(server, "http://", 7) != 0)
        abort();
    size_t n = strlen(server);
    if (server[n - 1] == '/')
        abort();
    size_t len;
    const unsigned char *ca = kube_config_ca(c, &len);
    if (ca && (len == 0 || ca[len] != '\0'))
        abort();
    char *token = NULL;
    if (kube_config_token(c, &token, &err) < 0)
        abort(); /* no token file can be read here, so only a static token can exist */
    if (token && (!*token || strchr(token, '\n')))
        abort();
    free(token);
    kube_config_free(c);
    return 0;
}
