/* Shared between the files of the Kubernetes client module (kube.c, informer.c); not part
 * of its contract. */
#ifndef MOAT_KUBE_INTERNAL_H
#define MOAT_KUBE_INTERNAL_H

#include <curl/curl.h>

#include "kube.h"

/* Largest answer the client accepts (a List of many objects); more is an error. */
#define KUBE_MAX_RESPONSE_BYTES ((size_t)1 << 30)

/* Prepares h for a request to path on the client's server: URL, TLS material from the
 * config, authentication, impersonation, user agent, no signals. *ret_headers receives the
 * header list the caller must free with curl_slist_free_all after the transfer. */
int kube_client_setup_easy(kube_client *c, CURL *h, const char *path,
                           struct curl_slist **ret_headers, moat_error *err);

void kube_sleep_ns(int64_t ns);

#endif
