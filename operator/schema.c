#include "schema.h"

#include <stdio.h>
#include <string.h>

#include "libmoat/kobj.h"
#include "libmoat/names.h"

/* Every field of the Sandbox API this operator reads or writes that an older CRD lacks:
 * under spec. and status., as dotted paths of the schema's properties. */
static const char *const used_fields[] = {
    "spec.mode",
    "spec.idleTimeout",
    "status.lastActivityTime",
    "status.limits",
};

bool sandbox_crd_missing_field(const json_t *crd, char *buf, size_t len)
{
    const json_t *versions = kobj_get(crd, "spec.versions"), *v, *served = NULL;
    size_t i;
    json_array_foreach ((json_t *)versions, i, v) {
        const char *name = kobj_str(v, "name");
        if (name && strcmp(name, MOAT_API_VERSION) == 0 && kobj_bool(v, "served", false))
            served = v;
    }
    if (!served) {
        snprintf(buf, len, "the served version %s", MOAT_API_VERSION);
        return true;
    }
    const json_t *props = kobj_get(served, "schema.openAPIV3Schema.properties");
    for (size_t k = 0; k < sizeof(used_fields) / sizeof(used_fields[0]); k++) {
        const char *dot = strchr(used_fields[k], '.');
        char top[16];
        snprintf(top, sizeof top, "%.*s", (int)(dot - used_fields[k]), used_fields[k]);
        const json_t *p =
            json_object_get(json_object_get(json_object_get(props, top), "properties"), dot + 1);
        if (!json_is_object(p)) {
            snprintf(buf, len, "%s", used_fields[k]);
            return true;
        }
    }
    return false;
}
