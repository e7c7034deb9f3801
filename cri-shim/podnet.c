#include "podnet.h"

#include <stdlib.h>

#include "cri-shim/netns.h"
#include "cri-shim/wall.h"

#define LOOKUP_TIMEOUT_MS 5000

int shim_podnet_lookup(void *user, const char *sandbox_id, char ***ret_devices, char ***ret_dns,
                       moat_error *err)
{
    cri_sandbox_network net = {0};
    if (cri_sandbox_network_get(user, &net, sandbox_id, LOOKUP_TIMEOUT_MS, err) < 0)
        return -1;
    char **devices = NULL;
    if (iso_netns_host_peers(net.netns, &devices, err) < 0) {
        cri_sandbox_network_clear(&net);
        return moat_error_prefix(err, "pod sandbox %s", sandbox_id);
    }
    *ret_devices = devices;
    *ret_dns = net.dns; /* handed over, NULL-terminated */
    net.dns = NULL;
    net.n_dns = 0;
    cri_sandbox_network_clear(&net);
    return 0;
}
